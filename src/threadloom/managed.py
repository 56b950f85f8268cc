"""Managed tasks: names, retries, deadlines, cooperative cancellation, status.

``ThreadPoolExecutor.options(...)`` and ``ThreadPoolManager`` submit through
here.  The task itself (its status machine, its attempts, its deadline and
retry timers) lives in the core (``ManagedTask`` in ``_core_managed.pxi`` and
its twin); this module holds the Python-facing pieces: the options view and
the task future.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from ._errors import TaskCancelled
from ._map import TypedMap
from ._types import TaskStatus
from ._validate import check_name, check_priority, check_retry, check_timeout
from .core import Future, core

if TYPE_CHECKING:
    from .executor import ThreadPoolExecutor
    from .retry import RetryPolicy

__all__ = [
    "ManagedOptions",
    "SubmitOptions",
    "TaskCancelled",
    "TaskContext",
    "TaskFuture",
    "current_task",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")

#: What ``current_task()`` returns: the running task itself.
TaskContext = core.ManagedTask


def current_task() -> TaskContext:
    """The context of the managed task running on this thread.

    Raises:
        RuntimeError: not called from inside a managed task (one submitted
            through ``ThreadPoolExecutor.options()`` or ``ThreadPoolManager``).
    """
    task: TaskContext = core.current_task()
    return task


class TaskFuture(Future[_T]):
    """The future of a managed task: a ``concurrent.futures.Future`` that also
    knows its task id, name, priority, attempts and status."""

    _task: TaskContext

    @property
    def task(self) -> TaskContext:
        """The task record (status, attempts, times)."""
        return self._task

    @property
    def task_id(self) -> str:
        return self._task.task_id

    @property
    def name(self) -> str | None:
        return self._task.name

    @property
    def priority(self) -> int:
        return self._task.priority

    @property
    def attempts(self) -> int:
        return self._task.attempts

    @property
    def status(self) -> TaskStatus:
        return self._task.status

    def cancel(self) -> bool:
        """Cancel the task: at once if queued or waiting to retry; if running,
        request cooperative cancellation and return False (as the stdlib does
        for a running future)."""
        return bool(self._task.cancel(self))


core.set_task_future_type(TaskFuture)


class SubmitOptions(TypedMap, core.SubmitView):
    """A view of a pool that submits with priority, name, retry policy and deadline.

    Obtained from :meth:`ThreadPoolExecutor.options`; immutable and cheap.
    The options are checked once, here, not at every submit; ``submit`` is
    the core's.
    """

    __slots__ = ("_executor",)

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        priority: int,
        name: str | None,
        retry: RetryPolicy | None,
        timeout: float | None,
    ) -> None:
        self._executor = executor

    def __new__(
        cls,
        executor: ThreadPoolExecutor,
        priority: int,
        name: str | None,
        retry: RetryPolicy | None,
        timeout: float | None,
    ) -> SubmitOptions:
        # Checked in this order so that the first bad argument is the one named.
        priority = check_priority(priority)
        name = check_name(name)
        retry = check_retry(retry)
        timeout = check_timeout(timeout)
        if name is not None or retry is not None or timeout is not None:
            # The same object; its class tells a type checker that submit
            # returns a TaskFuture.
            cls = ManagedOptions
        return super().__new__(
            cls,
            executor.dispatcher,
            priority,
            name,
            retry,
            timeout,
        )

    if TYPE_CHECKING:
        # The core's submit, as type checkers should see it: a TaskFuture
        # when the view has a name, retry policy or timeout, else a Future.
        def submit(
            self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
        ) -> Future[_T]: ...

    def _map_on(self) -> tuple[ThreadPoolExecutor, int]:
        if self.managed:
            raise ValueError("options(...).map supports priority only, not name/retry/timeout")
        return self._executor, self.priority

    def __repr__(self) -> str:
        return (
            f"<SubmitOptions priority={self.priority} name={self.name!r} retry={self.retry!r} "
            f"timeout={self.timeout!r}>"
        )


class ManagedOptions(SubmitOptions):
    """The :class:`SubmitOptions` of ``options()`` given a name, retry policy or
    timeout: the tasks it submits are managed, and their futures are
    :class:`TaskFuture` (status, attempts, task id).
    """

    __slots__ = ()

    if TYPE_CHECKING:

        def submit(
            self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
        ) -> TaskFuture[_T]: ...
