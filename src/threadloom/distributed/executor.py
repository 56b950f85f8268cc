"""DaskExecutor: a :class:`concurrent.futures.Executor` over ``Client.submit``,
with threadloom's ``options(...)`` view (:class:`DaskSubmitView`)."""

from __future__ import annotations

import concurrent.futures as cf
import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from distributed import Client

from .._types import TaskPriority
from .._validate import check_priority
from ..core import core
from ..retry import RetryPolicy
from .cluster import FIFO_TIMEOUT, connect, dask_priority
from .shared import Helper, should_retry, task_key, valid_delay
from .worker import run_on_worker


class _Call:
    __slots__ = (
        "args",
        "attempts",
        "dask_future",
        "deadline",
        "ended",
        "fn",
        "future",
        "kwargs",
        "opts",
        "retry_timer",
    )

    def __init__(
        self,
        future: cf.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        opts: _Options,
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.opts = opts
        self.attempts = 0
        self.dask_future: Any = None
        self.deadline: Any = None
        self.retry_timer: Any = None
        self.ended = False


@dataclass(frozen=True)
class _Options:
    priority: int = TaskPriority.NORMAL
    retry: RetryPolicy | None = None
    timeout: float | None = None
    name: str | None = None
    resources: Mapping[str, float] | None = None
    pure: bool = False
    workers: tuple[str, ...] | None = None


class DaskSubmitView:
    """``DaskExecutor.options(...)``: submits with those options."""

    def __init__(self, executor: DaskExecutor, opts: _Options) -> None:
        self._executor = executor
        self._opts = opts

    @property
    def priority(self) -> int:
        return self._opts.priority

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Submit ``fn(*args, **kwargs)`` with this view's options; every keyword goes to *fn*."""
        return self._executor._submit(fn, args, kwargs, self._opts)  # noqa: SLF001 (its own executor)

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None
    ) -> Iterable[Any]:
        """:meth:`concurrent.futures.Executor.map` with this view's options."""
        futures = [self.submit(fn, *items) for items in zip(*iterables, strict=False)]
        return _results(futures, timeout)


def _results(futures: list[cf.Future[Any]], timeout: float | None) -> Iterable[Any]:
    end = None if timeout is None else time.monotonic() + timeout

    def generate() -> Iterable[Any]:
        try:
            futures.reverse()
            while futures:
                left = None if end is None else end - time.monotonic()
                yield futures.pop().result(left)
        finally:
            for future in futures:
                future.cancel()

    return generate()


class DaskExecutor(cf.Executor):
    """A :class:`concurrent.futures.Executor` that runs tasks on a Dask cluster.

    Built on ``Client.submit`` (not Dask's ``ClientExecutor``, which takes a
    user's ``priority=``/``key=`` keywords for its own): every keyword of
    :meth:`submit` goes to the function; threadloom's and Dask's options go
    through :meth:`options`.  Tasks are submitted ``pure=False`` (each call
    runs) unless a view says ``pure=True``.

    Args:
        client_or_address: A ``distributed.Client`` (left open at shutdown), or
            a spec for :func:`connect` (``"local:N"`` or ``"tcp://HOST:PORT"``),
            whose client and cluster the executor owns and closes.
        connect_timeout: Seconds to wait for a scheduler address to answer
            (None: Dask's ``distributed.comm.timeouts.connect``).

    Raises:
        ClusterUnreachableError: the scheduler did not answer.
    """

    def __init__(
        self,
        client_or_address: Client | str,
        *,
        connect_timeout: float | None = None,
    ) -> None:
        self._owns = not isinstance(client_or_address, Client)
        self._connection = connect(client_or_address, timeout=connect_timeout)
        self._client = self._connection.client
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        self._shutdown = False
        self._helper = Helper()

    @property
    def client(self) -> Client:
        """The Dask client the tasks go through."""
        return self._client

    def options(
        self,
        *,
        priority: int = TaskPriority.NORMAL,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        resources: Mapping[str, float] | None = None,
        pure: bool = False,
        workers: Iterable[str] | str | None = None,
    ) -> DaskSubmitView:
        """A view that submits with these options.

        Args:
            priority: any int, higher first (see :func:`dask_priority`).
            retry: a :class:`~threadloom.retry.RetryPolicy`; the client waits
                its delays on threadloom's timer and submits again.
            timeout: seconds from submission after which the future fails with
                ``TimeoutError`` and the task is cancelled on the cluster (a
                running task is asked to stop, ``current_task().cancelled``).
            name: the task's name (its Dask key starts with it).
            resources: Dask worker resources the task needs, e.g. ``{"GPU": 1}``.
            pure: let Dask reuse the result of an identical earlier call.
            workers: run only on these workers (addresses or names).

        Raises:
            TypeError: a bad type (priority not an int, retry not a RetryPolicy).
            ValueError: a negative timeout.
        """
        priority = check_priority(priority)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {retry!r}")
        if timeout is not None:
            timeout = core.check_seconds("timeout", timeout)
        if resources is not None and not isinstance(resources, Mapping):
            raise TypeError(f"resources must be a mapping such as {{'GPU': 1}}, not {resources!r}")
        if isinstance(workers, str):
            workers = (workers,)
        return DaskSubmitView(
            self,
            _Options(
                priority,
                retry,
                timeout,
                name,
                dict(resources) if resources else None,
                pure,
                tuple(workers) if workers is not None else None,
            ),
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the cluster; every keyword goes to *fn*."""
        return self._submit(fn, args, kwargs, _DEFAULT_OPTIONS)

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        opts: _Options,
    ) -> cf.Future[Any]:
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        future: cf.Future[Any] = cf.Future()
        call = _Call(future, fn, args, kwargs, opts)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._calls.add(call)
        future.add_done_callback(functools.partial(self._future_done, call))
        if opts.timeout is not None:
            call.deadline = core.TIMERS.call_later(
                opts.timeout, functools.partial(self._helper, self._expire, call)
            )
        self._launch(call)
        return future

    def _launch(self, call: _Call) -> None:
        opts = call.opts
        call.attempts += 1
        try:
            dask_future = self._client.submit(
                run_on_worker,
                opts.name,
                call.fn,
                call.args,
                call.kwargs or None,
                None,
                None,
                call.attempts,
                key=task_key(opts.name or getattr(call.fn, "__name__", None)),
                pure=opts.pure,
                priority=dask_priority(opts.priority),
                fifo_timeout=FIFO_TIMEOUT,
                resources=opts.resources,
                workers=list(opts.workers) if opts.workers is not None else None,
            )
        except BaseException as exc:
            self._settle(call, exc, True)
            return
        with self._lock:
            call.dask_future = dask_future
            ended = call.ended
        if ended:
            # Cancelled or expired while being submitted.
            self._helper(dask_future.cancel)
            return
        dask_future.add_done_callback(functools.partial(self._dask_done, call))

    def _dask_done(self, call: _Call, dask_future: Any) -> None:
        # On Dask's callback thread.
        status = dask_future.status
        if status == "finished":
            try:
                value = dask_future.result()
            except BaseException as exc:
                self._settle(call, exc, True)
            else:
                self._settle(call, value, False)
        elif status == "error":
            error = dask_future.exception()
            policy = call.opts.retry
            label = call.opts.name or repr(call.fn)
            if (
                policy is not None
                and not call.ended
                and should_retry(policy, error, call.attempts, label)
            ):
                delay = valid_delay(policy, call.attempts, label)
                call.retry_timer = core.TIMERS.call_later(
                    delay, functools.partial(self._helper, self._retry, call)
                )
                return
            self._settle(call, error, True)
        else:
            # Cancelled on the cluster (by us, or by someone with the client).
            with self._lock:
                ended, call.ended = call.ended, True
            if not ended:
                call.future.cancel()
                self._forget(call)

    def _retry(self, call: _Call) -> None:
        if not call.ended:
            self._launch(call)

    def _expire(self, call: _Call) -> None:
        error = TimeoutError(
            f"task {call.opts.name or call.fn!r} did not finish within {call.opts.timeout} s"
        )
        if self._settle(call, error, True):
            self._cancel_remote(call)

    def _settle(self, call: _Call, value: Any, is_error: bool) -> bool:
        with self._lock:
            if call.ended:
                return False
            call.ended = True
        future = call.future
        if future.set_running_or_notify_cancel():
            if is_error:
                future.set_exception(value)
            else:
                future.set_result(value)
        self._forget(call)
        return True

    def _forget(self, call: _Call) -> None:
        for handle in (call.deadline, call.retry_timer):
            if handle is not None:
                handle.cancel()
        with self._lock:
            self._calls.discard(call)
        call.fn = call.args = call.kwargs = None  # type: ignore[assignment]

    def _future_done(self, call: _Call, future: cf.Future[Any]) -> None:
        # The caller cancelled the future (it was still pending here): cancel
        # it on the cluster too.
        if future.cancelled():
            with self._lock:
                ended, call.ended = call.ended, True
            if not ended:
                self._forget(call)
            self._cancel_remote(call)

    def _cancel_remote(self, call: _Call) -> None:
        dask_future = call.dask_future
        if dask_future is not None and not dask_future.done():
            self._helper(dask_future.cancel)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; optionally cancel those not done; optionally wait.

        Closes the client and cluster only if the executor opened them (once
        the last task has ended, if *wait* is False).
        """
        with self._lock:
            self._shutdown = True
            calls = list(self._calls)
        if cancel_futures:
            for call in calls:
                call.future.cancel()
        if wait:
            self._finish(calls)
        else:
            # Closed once the last task ends, off the caller's thread.
            threading.Thread(
                target=self._finish, args=(calls,), name="threadloom-dask-shutdown", daemon=True
            ).start()

    def _finish(self, calls: list[_Call]) -> None:
        cf.wait([call.future for call in calls])
        self._helper.close()
        if self._owns:
            self._connection.close()


_DEFAULT_OPTIONS = _Options()
