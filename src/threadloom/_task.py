"""Managed tasks: names, retries, deadlines, cooperative cancellation, status.

``ThreadPoolExecutor.options(...)`` and ``ThreadPoolManager`` submit through
here.  A managed task is queued as a call without a future: the worker runs
:meth:`ManagedTask.__call__`, which runs one attempt and decides what happens
next (complete, fail, or re-queue after a delay through the timer thread).
The task's future resolves exactly once, after the last attempt.

Every state change happens under the task's lock; the future is completed
after the lock is released (callbacks run user code).  The status moves
QUEUED -> RUNNING -> (RETRYING -> QUEUED -> RUNNING)* -> a terminal status,
and a terminal status never changes, so whoever sets it owns the completion.
"""

from __future__ import annotations

import itertools
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import TimeoutError as FutureTimeoutError
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    LOGGER,
)
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from ._future import Future
from ._impl import core
from ._types import TaskStatus, check_priority
from .retry import NO_RETRY, TIMERS, RetryPolicy, TimerHandle, _check_seconds

if TYPE_CHECKING:
    from .executor import ThreadPoolExecutor

__all__ = [
    "ManagedTask",
    "SubmitOptions",
    "TaskCancelled",
    "TaskContext",
    "TaskFuture",
    "current_task",
]

_T = TypeVar("_T")

_task_ids = itertools.count(1)
_local = threading.local()

_EMPTY_MAPPING: Mapping[str, Any] = types.MappingProxyType({})
_EVENT_LOCK = threading.Lock()


class TaskCancelled(Exception):
    """Raised by ``current_task().check_cancelled()`` once cancellation was requested."""


class TaskContext:
    """What a running managed task can know about itself (``current_task()``).

    Python cannot stop a thread from outside: cancelling a running task, or
    its deadline passing, sets :attr:`cancelled`; the task is expected to
    look at it (or call :meth:`check_cancelled`, or wait with
    :meth:`wait_cancelled` instead of sleeping) and stop.
    """

    __slots__ = (
        "_cancel_event",
        "_cancelled",
        "attempt",
        "deadline",
        "name",
        "priority",
        "task_id",
        "upstream_results",
    )

    def __init__(
        self, task_id: str, name: str | None, priority: int, deadline: float | None
    ) -> None:
        self.task_id = task_id
        self.name = name
        self.priority = priority
        self.deadline = deadline
        self.attempt = 0
        #: Results of the task's dependencies (set by the TaskManager).
        self.upstream_results: Mapping[str, Any] = _EMPTY_MAPPING
        self._cancelled = False
        # Made only if the task waits on it: an Event costs more than the rest
        # of a task's bookkeeping.
        self._cancel_event: threading.Event | None = None

    @property
    def cancelled(self) -> bool:
        """True once cancellation was requested (cancel, deadline, shutdown)."""
        return self._cancelled

    def check_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` if cancellation was requested."""
        if self._cancelled:
            raise TaskCancelled(f"task {self.name or self.task_id} was cancelled")

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Sleep up to *timeout* seconds, waking early if cancelled; return :attr:`cancelled`."""
        event = self._cancel_event
        if event is None:
            with _EVENT_LOCK:
                event = self._cancel_event
                if event is None:
                    event = self._cancel_event = threading.Event()
            # Ordering: _request_cancel sets the flag, then reads the event;
            # here the event is installed, then the flag read.  One of the two
            # sees the other, so a request is never missed.
            if self._cancelled:
                event.set()
        return event.wait(timeout)

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None without one."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def _request_cancel(self) -> None:
        self._cancelled = True
        event = self._cancel_event
        if event is not None:
            event.set()

    def __repr__(self) -> str:
        return (
            f"<TaskContext {self.task_id} name={self.name!r} attempt={self.attempt} "
            f"cancelled={self.cancelled}>"
        )


def current_task() -> TaskContext:
    """The context of the managed task running on this thread.

    Raises:
        RuntimeError: not called from inside a managed task (one submitted
            through ``ThreadPoolExecutor.options()`` or ``ThreadPoolManager``).
    """
    context: TaskContext | None = getattr(_local, "context", None)
    if context is None:
        raise RuntimeError(
            "current_task() called outside a managed threadloom task "
            "(submit through ThreadPoolExecutor.options() or ThreadPoolManager)"
        )
    return context


class TaskFuture(Future[_T]):
    """The future of a managed task: a ``concurrent.futures.Future`` that also
    knows its task id, name, priority, attempts and status."""

    # The task is referenced only until it ends: then its final attempt count
    # and status are copied here and the future <-> task cycle is broken, so
    # that finished tasks are freed by reference counting, not by the GC.
    _task: ManagedTask | None = None
    _final_attempts = 0
    _final_status = TaskStatus.QUEUED
    task_id: str = ""
    name: str | None = None
    priority: int = 0

    @property
    def attempts(self) -> int:
        task = self._task
        return task.attempts if task is not None else self._final_attempts

    @property
    def status(self) -> TaskStatus:
        task = self._task
        return task.status if task is not None else self._final_status

    def cancel(self) -> bool:
        """Cancel the task: at once if queued or waiting to retry; if running,
        request cooperative cancellation and return False (as the stdlib does
        for a running future)."""
        task = self._task
        if task is None:
            return bool(core.future_cancel(self))
        return task.cancel()


def _force_cancel(future: Future[Any]) -> None:
    # Used only when the task owns the completion (its status was just made
    # terminal under the task lock), for a future that is RUNNING between
    # attempts or that a task ended by honouring cancellation.  Same ordering
    # as the core: write the state, then read the condition.
    state = future._state
    if state in (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED):
        return
    future._state = CANCELLED_AND_NOTIFIED
    condition = future._tl_condition
    callbacks = future._tl_callbacks
    if condition is not None:
        with condition:
            for waiter in future._tl_waiters or ():
                waiter.add_cancelled(future)
            condition.notify_all()
    for callback in callbacks or ():
        try:
            callback(future)
        except Exception:
            LOGGER.exception("exception calling callback for %r", future)


_TERMINAL = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT}
)


class ManagedTask:
    """One submitted managed task and its attempts (internal)."""

    __slots__ = (
        "__weakref__",
        "_deadline_timer",
        "_lock",
        "_owner",
        "_retry_timer",
        "args",
        "attempts",
        "context",
        "finished_at",
        "fn",
        "future",
        "kwargs",
        "name",
        "on_done",
        "on_start",
        "priority",
        "retry",
        "started_at",
        "status",
        "submitted_at",
        "task_id",
        "timeout",
    )

    def __init__(
        self,
        owner: ThreadPoolExecutor,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int,
        name: str | None,
        retry: RetryPolicy | None,
        timeout: float | None,
        on_done: Callable[[ManagedTask], None] | None = None,
        on_start: Callable[[ManagedTask], None] | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, not {type(retry).__name__}")
        if timeout is not None:
            timeout = _check_seconds("timeout", timeout, allow_zero=False)
        self._owner = owner
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.priority = priority
        self.name = name
        self.retry = retry or NO_RETRY
        self.timeout = timeout
        self.on_done = on_done
        self.on_start = on_start
        self.task_id = f"task-{next(_task_ids)}"
        self.attempts = 0
        self.status = TaskStatus.QUEUED
        self.submitted_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._lock = threading.Lock()
        self._retry_timer: TimerHandle | None = None
        self._deadline_timer: TimerHandle | None = None
        deadline = None if timeout is None else time.monotonic() + timeout
        self.context = TaskContext(self.task_id, name, priority, deadline)
        future: TaskFuture[Any] = TaskFuture()
        future._task = self
        future.task_id = self.task_id
        future.name = name
        future.priority = priority
        self.future = future

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        """Queue the first attempt and arm the deadline (called by the owner)."""
        self._owner._enqueue_managed(self, count_submitted=True)
        self._arm_deadline()

    def run_in_caller(self) -> None:
        """Run the first attempt on the calling thread (backpressure policy
        ``caller_runs``); retries, if any, go through the pool as usual."""
        self._owner._dispatch.counters.add(core.COUNT_SUBMITTED)
        self._arm_deadline()
        self()

    def _arm_deadline(self) -> None:
        if self.timeout is not None:
            self._deadline_timer = TIMERS.call_later(self.timeout, self._on_deadline)

    def __call__(self) -> None:
        """Run attempts on this (worker) thread until one ends the task or a retry is queued."""
        owner = self._owner
        counters = owner._dispatch.counters
        while True:
            with self._lock:
                if self.status is not TaskStatus.QUEUED:
                    # Cancelled or timed out while queued: the entry is dead.
                    owner._dead_entry_popped(self.priority)
                    return
                self.status = TaskStatus.RUNNING
                self.attempts += 1
                self.context.attempt = self.attempts
                first = self.attempts == 1
                if first:
                    self.started_at = time.time()
            if first:
                # Not the strict variant: a deadline firing right after the
                # status change above may already have finished the future.
                core.future_set_running_or_notify_cancel_safe(self.future)
                counters.add(core.COUNT_STARTED)
                if self.on_start is not None:
                    try:
                        self.on_start(self)
                    except Exception:
                        LOGGER.exception("task-start hook failed for %s", self.task_id)
            outcome, failed = self._run_attempt()
            retry_inline = False
            requeue_now = False
            complete: Callable[[], None] | None = None
            with self._lock:
                if self.status is not TaskStatus.RUNNING:
                    return  # the deadline (or a cancel) ended the task meanwhile
                if not failed:
                    self.status = TaskStatus.COMPLETED
                    counters.add(core.COUNT_COMPLETED)
                    complete = partial(self.future.set_result, outcome)
                elif isinstance(outcome, TaskCancelled) and self.context.cancelled:
                    self.status = TaskStatus.CANCELLED
                    counters.add(core.COUNT_CANCELLED)
                    complete = partial(_force_cancel, self.future)
                elif self.retry.should_retry(outcome, self.attempts):
                    counters.add(core.COUNT_RETRIED)
                    delay = self.retry.delay_for(self.attempts)
                    if owner._accepting_retries(self):
                        self.status = TaskStatus.RETRYING
                        if delay > 0:
                            self._retry_timer = TIMERS.call_later(delay, self._requeue)
                            return
                        requeue_now = True
                    else:
                        # Shutting down: no timer will fire later; retry now, here.
                        self.status = TaskStatus.QUEUED
                        retry_inline = True
                else:
                    self.status = TaskStatus.FAILED
                    counters.add(core.COUNT_FAILED)
                    complete = partial(self.future.set_exception, outcome)
            if requeue_now:
                # Outside the lock, and through _requeue, which fails the
                # task (never loses it) if the pool closed meanwhile.
                self._requeue()
                return
            if retry_inline:
                continue
            self._finish(complete)
            return

    def _run_attempt(self) -> tuple[Any, bool]:
        previous = getattr(_local, "context", None)
        _local.context = self.context
        try:
            result = self.fn(*self.args, **self.kwargs)
            if type(result) is types.CoroutineType:
                from .executor import _run_coroutine

                result = _run_coroutine(result)
            return result, False
        except BaseException as exc:
            return exc, True
        finally:
            _local.context = previous

    def _finish(self, complete: Callable[[], None] | None) -> None:
        self.finished_at = time.time()
        deadline = self._deadline_timer
        if deadline is not None:
            deadline.cancel()
            self._deadline_timer = None
        future = self.future
        future._final_attempts = self.attempts
        future._final_status = self.status
        future._task = None
        if complete is not None:
            try:
                complete()
            except Exception:
                LOGGER.exception("could not complete the future of %s", self.task_id)
        on_done = self.on_done
        if on_done is not None:
            try:
                on_done(self)
            except Exception:
                LOGGER.exception("task-done hook failed for %s", self.task_id)

    def _requeue(self) -> None:
        # On the timer thread: the retry delay is over.
        with self._lock:
            if self.status is not TaskStatus.RETRYING:
                return
            self._retry_timer = None
            self.status = TaskStatus.QUEUED
        try:
            self._owner._enqueue_managed(self)
        except RuntimeError as exc:
            # The pool closed between the check and now: fail, never vanish.
            with self._lock:
                if self.status is not TaskStatus.QUEUED:
                    return
                self.status = TaskStatus.FAILED
            self._owner._dispatch.counters.add(core.COUNT_FAILED)
            self._finish(partial(self.future.set_exception, exc))

    def fire_retry_now(self) -> bool:
        """Re-queue a task waiting for its retry delay at once (used at shutdown)."""
        with self._lock:
            timer = self._retry_timer
            if self.status is not TaskStatus.RETRYING or timer is None:
                return False
            timer.cancel()
        self._requeue()
        return True

    def _on_deadline(self) -> None:
        # On the timer thread.
        with self._lock:
            if self.status in _TERMINAL:
                return
            was = self.status
            self.status = TaskStatus.TIMED_OUT
            retry_timer = self._retry_timer
            self._retry_timer = None
        error = FutureTimeoutError(
            f"task {self.name or self.task_id} did not finish within {self.timeout} s"
        )
        self._end_now(
            was,
            retry_timer,
            core.COUNT_TIMED_OUT,
            partial(core.future_set_exception, self.future, error),
        )

    def cancel(self) -> bool:
        """Cancel: at once if queued or waiting to retry; cooperatively if running."""
        with self._lock:
            status = self.status
            if status is TaskStatus.RUNNING:
                self.context._request_cancel()
                return False
            if status in _TERMINAL:
                return status is TaskStatus.CANCELLED
            self.status = TaskStatus.CANCELLED
            retry_timer = self._retry_timer
            self._retry_timer = None
        self._end_now(
            status, retry_timer, core.COUNT_CANCELLED, partial(_force_cancel, self.future)
        )
        return True

    def _end_now(
        self,
        was: TaskStatus,
        retry_timer: TimerHandle | None,
        counter: int,
        complete: Callable[[], None],
    ) -> None:
        # After a cancel or the deadline made the status terminal (so this
        # thread owns the completion): stop a pending retry, account for a
        # queue entry left behind, ask a running attempt to stop, complete.
        if retry_timer is not None:
            retry_timer.cancel()
        if was is TaskStatus.QUEUED:
            self._owner._dead_entry_added(self.priority)
        self.context._request_cancel()
        self._owner._dispatch.counters.add(counter)
        self._finish(complete)

    def cancel_from_queue(self) -> None:
        """The queue was drained (shutdown with cancel_futures): cancel."""
        if self._end_from_queue(TaskStatus.CANCELLED, core.COUNT_CANCELLED):
            self.context._request_cancel()
            self._finish(partial(_force_cancel, self.future))

    def fail_from_queue(self, error: BaseException) -> None:
        """The pool broke with this task queued: fail it."""
        if self._end_from_queue(TaskStatus.FAILED, core.COUNT_FAILED):
            self._finish(partial(core.future_set_exception, self.future, error))

    def _end_from_queue(self, status: TaskStatus, counter: int) -> bool:
        # The task's entry was taken out of the queue without being run.
        with self._lock:
            if self.status is not TaskStatus.QUEUED:
                # Cancelled or timed out while queued: its dead entry is gone now.
                self._owner._dead_entry_popped(self.priority)
                return False
            self.status = status
        self._owner._dispatch.counters.add(counter)
        return True

    def __repr__(self) -> str:
        return f"<ManagedTask {self.task_id} name={self.name!r} status={self.status.value}>"


class SubmitOptions:
    """A view of a pool that submits with priority, name, retry policy and deadline.

    Obtained from :meth:`ThreadPoolExecutor.options`; immutable and cheap.
    """

    __slots__ = ("_executor", "name", "priority", "retry", "timeout")

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        priority: int,
        name: str | None,
        retry: RetryPolicy | None,
        timeout: float | None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, not {type(retry).__name__}")
        if timeout is not None:
            timeout = _check_seconds("timeout", timeout, allow_zero=False)
        self._executor = executor
        self.priority = check_priority(priority)
        self.name = name
        self.retry = retry
        self.timeout = timeout

    @property
    def managed(self) -> bool:
        return self.name is not None or self.retry is not None or self.timeout is not None

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        """Like ``ThreadPoolExecutor.submit``, with this view's options.

        With a name, retry policy or timeout the future is a :class:`TaskFuture`
        and the function can call ``threadloom.current_task()``.
        """
        executor = self._executor
        if not self.managed:
            try:
                return executor._dispatch.submit(  # type: ignore[no-any-return]
                    self.priority, fn, args, kwargs
                )
            except core.QueueClosed:
                raise executor._rejection() from None
        return executor._submit_managed(
            fn, args, kwargs, self.priority, self.name, self.retry, self.timeout
        ).future

    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[_T]:
        """Like ``ThreadPoolExecutor.map`` at this view's priority.

        Raises:
            ValueError: the view has a name, retry policy or timeout (per-task
                options do not apply to chunks of a map).
        """
        if self.managed:
            raise ValueError("options(...).map supports priority only, not name/retry/timeout")
        return self._executor._map_at(
            self.priority,
            fn,
            iterables,
            timeout=timeout,
            chunksize=chunksize,
            buffersize=buffersize,
        )

    def __repr__(self) -> str:
        return (
            f"<SubmitOptions priority={self.priority} name={self.name!r} retry={self.retry!r} "
            f"timeout={self.timeout!r}>"
        )
