"""DaskGraphRunner: one execution of a task graph on a Dask cluster, on the
pure-Python core's graph bookkeeping."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from distributed import Client

from .._types import TaskStatus
from ..core import PyGraphRunner, core
from .cluster import FIFO_TIMEOUT, dask_priority
from .shared import Starts, should_retry, task_key, valid_delay
from .worker import run_on_worker

logger = logging.getLogger("threadloom.distributed")

# The runner's node codes (see GraphRunner.node_status_code).
_WAITING, _LAUNCHED, _COMPLETED, _FAILED, _CANCELLED, _TIMED_OUT, _SKIPPED = range(7)


class GraphHost(Protocol):
    """What a runner needs of its backend (:class:`~threadloom.distributed.DaskBackend`)."""

    @property
    def client(self) -> Client: ...

    @property
    def helper(self) -> Callable[..., None]: ...

    @property
    def starts(self) -> Starts: ...


class DaskGraphRunner(PyGraphRunner):
    """One execution of a task graph on a Dask cluster; the core GraphRunner's interface.

    The client decides what runs (trigger rules need every upstream's end):
    that bookkeeping (trigger rules, priority inheritance, cancellation, when
    the execution is finished) is the pure-Python core's ``GraphRunner``,
    which this class extends with where a ready node goes.  Dask moves the
    data: a node is submitted with the futures of its completed upstreams as
    inputs, so their results go worker to worker.  The futures of completed
    nodes are held for as long as the runner lives, which is what keeps
    their results on the cluster for dependents and for :meth:`result`.
    """

    def __init__(self, backend: GraphHost, tasks: list[Any]) -> None:
        super().__init__(None, tasks)
        n = self.size
        self._backend = backend
        self._client = backend.client
        self._kept: list[Any] = [None] * n
        self._fetched = [False] * n
        self._submits = [0] * n
        self._starts = [0] * n
        self._running = [False] * n
        self._retry_timer: list[Any] = [None] * n
        self._deadline: list[Any] = [None] * n
        self._queued_at: list[float | None] = [None] * n
        self._started_at: list[float | None] = [None] * n

    # -- moving the graph ---------------------------------------------------------
    def _report(self, ended: list[int]) -> None:
        # At once, not batched on the core's timer: the node-end hook is the
        # task manager's, and a Dask callback thread may call it.
        for i in ended:
            self._release_timers(i)
        hook = self.on_nodes_end
        if hook is not None and ended:
            try:
                hook(self, list(ended))
            except BaseException:
                logger.exception("graph node-end hook failed")
        with self._lock:
            self._unreported -= len(ended)

    def _release_timers(self, i: int) -> None:
        for handles in (self._retry_timer, self._deadline):
            handle = handles[i]
            if handle is not None:
                handles[i] = None
                handle.cancel()

    def _launch(self, i: int, ready: list[int], ended: list[int]) -> None:
        task = self._tasks[i]
        with self._lock:
            if self._state[i] != _LAUNCHED:
                return  # a cancel ended it after it became ready
            code = _WAITING
            if self._cancel_all or self._cancel[i]:
                code = _CANCELLED
            elif not task.enabled:
                code = _SKIPPED
            if code != _WAITING:
                self._end(i, code, ready, ended)
                return
        self._queued_at[i] = time.time()
        if task.timeout is not None:
            self._deadline[i] = core.TIMERS.call_later(
                task.timeout, functools.partial(self._backend.helper, self._expire, i)
            )
        error = self._submit(i)
        if error is not None:
            with self._lock:
                if self._state[i] == _LAUNCHED:
                    self._errors[i] = error
                    self._end(i, _FAILED, ready, ended)

    def _submit(self, i: int) -> BaseException | None:
        """Submit node *i* (again, for a retry); an error if Dask refused it."""
        task = self._tasks[i]
        with self._lock:
            upstream = [j for j in self._deps[i] if self._state[j] == _COMPLETED]
            names = tuple(self._tasks[j].name for j in upstream)
            inputs = [self._kept[j] for j in upstream]
            self._submits[i] += 1
            attempt = max(self._submits[i], self._starts[i] + 1)
        key = task_key(task.name)
        self._backend.starts.watch(key, functools.partial(self._started_on_worker, i, key))
        try:
            future = self._client.submit(
                run_on_worker,
                task.name,
                task.func,
                tuple(task.args),
                dict(task.kwargs) if task.kwargs else None,
                task.results_param,
                names,
                attempt,
                *inputs,
                key=key,
                pure=False,
                priority=dask_priority(self._priority[i]),
                fifo_timeout=FIFO_TIMEOUT,
            )
        except BaseException as exc:
            self._backend.starts.unwatch(key)
            return exc
        with self._lock:
            live = self._state[i] == _LAUNCHED
            if live:
                self._futures[i] = future
            cancel_now = live and (self._cancel_all or self._cancel[i])
        if not live or cancel_now:
            self._backend.helper(future.cancel)
        future.add_done_callback(functools.partial(self._done, i))
        return None

    def _started_on_worker(self, i: int, key: str, started: float, pid: int) -> None:
        # On the client's event loop.
        with self._lock:
            self._starts[i] += 1
            future = self._futures[i]
            if future is not None and future.key == key:
                self._running[i] = True
            if self._started_at[i] is None:
                self._started_at[i] = started

    def _done(self, i: int, future: Any) -> None:
        """A node's Dask future ended (on Dask's callback thread)."""
        self._backend.starts.unwatch(future.key)
        status = future.status
        error: BaseException | None = None
        if status == "error":
            try:
                error = future.exception()
            except BaseException as exc:
                error = exc
        task = self._tasks[i]
        ready: list[int] = []
        ended: list[int] = []
        with self._lock:
            if self._futures[i] is not future or self._state[i] != _LAUNCHED:
                return  # ended meanwhile (a deadline, a cancel): this end is late
            self._futures[i] = None
            self._running[i] = False
            if status == "finished":
                self._kept[i] = future
                code = _COMPLETED
            elif status == "error":
                assert error is not None
                attempts = max(self._submits[i], self._starts[i])
                retry = task.retry if task.max_retries else None
                if (
                    retry is not None
                    and not (self._cancel_all or self._cancel[i])
                    and should_retry(retry, error, attempts, task.name)
                ):
                    delay = valid_delay(retry, attempts, task.name)
                    self._retry_timer[i] = core.TIMERS.call_later(
                        delay, functools.partial(self._backend.helper, self._retry, i)
                    )
                    return
                self._errors[i] = error
                code = _FAILED
            else:
                code = _CANCELLED
            self._end(i, code, ready, ended)
        self._advance(ready, ended)

    def _retry(self, i: int) -> None:
        with self._lock:
            self._retry_timer[i] = None
            live = self._state[i] == _LAUNCHED and self._futures[i] is None
        if not live:
            return
        error = self._submit(i)
        if error is not None:
            ready: list[int] = []
            ended: list[int] = []
            with self._lock:
                if self._state[i] == _LAUNCHED:
                    self._errors[i] = error
                    self._end(i, _FAILED, ready, ended)
            self._advance(ready, ended)

    def _expire(self, i: int) -> None:
        task = self._tasks[i]
        ready: list[int] = []
        ended: list[int] = []
        with self._lock:
            self._deadline[i] = None
            if self._state[i] != _LAUNCHED:
                return
            future, self._futures[i] = self._futures[i], None
            self._running[i] = False
            self._errors[i] = TimeoutError(
                f"task {task.name} did not finish within {task.timeout} s"
            )
            self._end(i, _TIMED_OUT, ready, ended)
        if future is not None:
            # The worker sees its key cancelled and asks the task to stop.
            future.cancel()
        self._advance(ready, ended)

    def _cancel_launched(
        self, i: int, in_flight: list[Callable[[], object]], ready: list[int], ended: list[int]
    ) -> None:
        # Unlike a local task, the node ends CANCELLED at once: Dask releases
        # the key (a running task is asked to stop) and drops a late result.
        future, self._futures[i] = self._futures[i], None
        self._running[i] = False
        if future is not None:
            in_flight.append(functools.partial(self._backend.helper, future.cancel))
        self._end(i, _CANCELLED, ready, ended)

    # -- what the task manager reads ------------------------------------------------
    def node_state(self, i: int) -> TaskStatus:
        """PENDING, a live QUEUED / RUNNING / RETRYING, or the node's end."""
        if self._state[i] == _LAUNCHED:
            if self._retry_timer[i] is not None:
                return TaskStatus.RETRYING
            return TaskStatus.RUNNING if self._running[i] else TaskStatus.QUEUED
        return super().node_state(i)

    def node_record(self, i: int) -> tuple[Any, ...]:
        """``(status, priority, attempts, queued_at, started_at, finished_at, duration, error)``."""
        started = self._started_at[i]
        finished = None
        if self._state[i] >= _COMPLETED:
            # The bookkeeping stamps an end on the monotonic clock; the
            # worker's start is wall-clock time.
            finished = time.time() - (time.monotonic_ns() - self._finished_ns[i]) / 1e9
        duration = None
        if started is not None and finished is not None:
            duration = max(0.0, finished - started)
        attempts = max(self._submits[i], self._starts[i]) if self._submits[i] else 0
        return (
            self.node_state(i),
            self._priority[i],
            attempts,
            self._queued_at[i],
            started,
            finished,
            duration,
            self._errors[i],
        )

    def result(self, i: int) -> Any:
        """Node *i*'s result, fetched from the cluster the first time it is asked for."""
        if not self._fetched[i]:
            future = self._kept[i]
            if future is None:
                return None
            self._results[i] = future.result()
            self._fetched[i] = True
        return self._results[i]

    def fetch_results(self) -> None:
        """Bring every completed node's result to the client (before it disconnects)."""
        pending = [
            i for i in range(self.size) if self._kept[i] is not None and not self._fetched[i]
        ]
        if not pending:
            return
        values = self._client.gather([self._kept[i] for i in pending], errors="skip")
        for i, value in zip(pending, values, strict=True):
            self._results[i] = value
            self._fetched[i] = True
            self._kept[i] = None
