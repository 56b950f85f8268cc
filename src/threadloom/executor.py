"""``ThreadPoolExecutor``: a drop-in for the stdlib's, on threadloom's core.

Everything the stdlib class does, this one does the same way: the constructor,
``submit``, ``map``, ``shutdown``, the context manager, initializers and
``BrokenThreadPool``, thread names, the default worker count, joining workers
at interpreter exit.  On top of it: priorities (``options(priority=...)``),
coroutine functions run on a per-worker event loop, ``statistics()``, and
chunked ``map``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor as _StdThreadPoolExecutor
from concurrent.futures._base import LOGGER
from concurrent.futures.thread import BrokenThreadPool
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar, overload

from ._map import TypedMap
from ._types import TaskPriority
from ._validate import check_priority
from .core import Future, after_fork_in_child, core

if TYPE_CHECKING:
    import asyncio

    from .managed import ManagedOptions, SubmitOptions, TaskContext, TaskFuture
    from .retry import RetryPolicy

__all__ = [
    "BrokenThreadPool",
    "ExecutorStatistics",
    "Percentiles",
    "ThreadPoolExecutor",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")

_NORMAL = int(TaskPriority.NORMAL)
_USER_PRIORITY_MAX = 2**31 - 1
_INT32_MIN = -(2**31)

# --------------------------------------------------------------------------
# Process-wide state: interpreter exit and fork.
# --------------------------------------------------------------------------

_live_executors: weakref.WeakSet[ThreadPoolExecutor] = weakref.WeakSet()
_global_lock = threading.Lock()
_interpreter_shutdown = False


def _python_exit() -> None:
    """Close every pool and join its workers before the interpreter goes away.

    Registered with ``threading._register_atexit`` as the stdlib does, so it
    runs before non-daemon threads are joined and while they can still run.
    """
    global _interpreter_shutdown
    with _global_lock:
        _interpreter_shutdown = True
        executors = list(_live_executors)
    for executor in executors:
        # A task waiting for its retry delay is queued work: it runs now,
        # as everything else queued does, before the workers are joined.
        executor._close_for_exit()  # noqa: SLF001 (same module)
    for executor in executors:
        for thread in list(executor._threads):  # noqa: SLF001 (same module)
            thread.join()


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]  # noqa: SLF001 (the stdlib executor's hook too: workers joined before interpreter teardown)


def _after_fork_in_child() -> None:
    # Only the forking thread survives a fork: the workers are gone, and a
    # lock one of them held would stay held.  Reset both; queued work stays
    # and is run by workers the child starts on its next submit.
    global _global_lock
    _global_lock = threading.Lock()
    executors = list(_live_executors)
    for executor in executors:
        executor._after_fork_in_child()  # noqa: SLF001 (same module)
    # The timer thread is gone too; pending deadlines and retries stay armed
    # and a new thread serves them.
    after_fork_in_child(executor.dispatcher for executor in executors)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------
# Coroutine functions: one event loop per worker thread, for its whole life.
# --------------------------------------------------------------------------

_worker_local = threading.local()


def _run_coroutine(coroutine: Any) -> Any:
    loop: asyncio.AbstractEventLoop | None = getattr(_worker_local, "loop", None)
    if loop is None:
        # Imported on the first coroutine: asyncio is a third of the cost of
        # importing threadloom, and most pools never see a coroutine.
        import asyncio

        loop = asyncio.new_event_loop()
        _worker_local.loop = loop
    return loop.run_until_complete(coroutine)


def _close_worker_loop() -> None:
    loop: asyncio.AbstractEventLoop | None = getattr(_worker_local, "loop", None)
    if loop is None:
        return
    _worker_local.loop = None
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def current_worker_executor() -> ThreadPoolExecutor | None:
    """The executor whose worker is the calling thread, or None."""
    ref: weakref.ref[ThreadPoolExecutor] | None = getattr(_worker_local, "executor_ref", None)
    return ref() if ref is not None else None


def _worker_main(
    executor_ref: weakref.ref[ThreadPoolExecutor],
    dispatch: Any,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
) -> None:
    # The worker holds only a weak reference to its executor, so that an
    # executor nobody references can be collected (its finalizer closes the
    # queue and the workers drain it and exit), as in the stdlib.
    _worker_local.executor_ref = executor_ref
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException:
            LOGGER.critical("Exception in initializer:", exc_info=True)
            dispatch.release_worker()
            executor = executor_ref()
            if executor is not None:
                executor._initializer_failed()  # noqa: SLF001 (same module)
            return
    try:
        dispatch.run_worker(_run_coroutine)
    finally:
        _close_worker_loop()


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


class Percentiles(NamedTuple):
    """Percentiles (seconds) over the most recent samples."""

    count: int  # type: ignore[assignment]  # shadows tuple.count, as the field is meant to
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: list[float]) -> Percentiles:
        if not samples:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        ordered = sorted(samples)
        last = len(ordered) - 1

        def at(q: float) -> float:
            return ordered[min(last, round(q * last))]

        return cls(len(ordered), at(0.50), at(0.90), at(0.99), ordered[-1])


# Immutable records (named tuples, not dataclasses: importing dataclasses
# costs a sixth of the import of threadloom).
class ExecutorStatistics(NamedTuple):
    """A consistent-enough snapshot of a pool, taken without stopping it.

    Counters only grow.  At any instant ``submitted == completed + failed +
    cancelled + running + queued`` holds for the tasks of ``submit``/``map``
    (a snapshot taken under load may be off by the tasks in flight between
    two reads).
    """

    workers_total: int
    workers_busy: int
    workers_idle: int
    max_workers: int
    queue_depth: int
    queue_depth_by_priority: Mapping[int, int]
    submitted: int
    started: int
    completed: int
    failed: int
    cancelled: int
    retried: int
    timed_out: int
    rejected: int
    wait_time: Percentiles
    run_time: Percentiles
    native: bool


# --------------------------------------------------------------------------
# The executor
# --------------------------------------------------------------------------


def _default_max_workers() -> int:
    from ._limits import usable_cpu_count

    # The stdlib's rule, min(32, cpus + 4), with the container-aware CPU count.
    return min(32, usable_cpu_count().count + 4)


_EXECUTOR_COUNTER = itertools.count().__next__


# TypedMap's map is narrower than the stdlib stub's (it checks each iterable
# against fn); at run time it is the only map.
class ThreadPoolExecutor(TypedMap, _StdThreadPoolExecutor):  # type: ignore[misc]
    """A thread pool that is a drop-in replacement for the stdlib's.

    It is an instance of ``concurrent.futures.ThreadPoolExecutor`` (asyncio's
    ``set_default_executor`` and user code check that) but shares none of its
    machinery: the stdlib's ``__init__`` is never called, and every method the
    stdlib class defines (``submit``, ``map``, ``shutdown``,
    ``_adjust_thread_count``, ``_initializer_failed``) is defined here, so
    none of the stdlib's internals (``_work_queue``, ``_idle_semaphore``, ...)
    is ever reached.  ``__enter__``/``__exit__`` come from ``Executor`` and
    only call ``shutdown``.  tests/test_executor.py checks this on the running
    Python.

    Done callbacks: an ``Exception`` from one is logged, as in the stdlib.  A
    ``SystemExit`` or ``KeyboardInterrupt`` from one is logged at CRITICAL
    ("Exception in worker") and the worker goes on to its next task; the
    stdlib's worker thread dies of it instead, leaving the pool a thread
    short for good.  Callbacks after the raising one still run.

    Args:
        max_workers: the most threads it runs at once.  Default: ``min(32,
            usable CPUs + 4)``, where usable CPUs honours the CPU affinity, a
            cgroup CPU quota and ``PYTHON_CPU_COUNT``.
        thread_name_prefix: names the worker threads ``{prefix}_{n}``.
        initializer: called with *initargs* at the start of each worker; if
            it raises, the pool becomes broken (``BrokenThreadPool``).
        initargs: arguments for *initializer*.

    Raises:
        ValueError: *max_workers* is not positive.
        TypeError: *initializer* is not callable.
    """

    _counter = staticmethod(_EXECUTOR_COUNTER)
    # Wider than typeshed's declarations on the stdlib class (whose own
    # _broken also holds the message): these are ours, not the stdlib's.
    _initializer: Callable[..., object] | None  # type: ignore[assignment]
    _broken: str | bool  # type: ignore[assignment]
    _shutdown_lock: threading.RLock  # type: ignore[assignment]

    def _adjust_thread_count(self) -> None:
        # The stdlib's hook, for code that calls it: start a worker if queued
        # work outnumbers the idle ones (what every submit does here).
        if self._dispatch.reserve_worker():
            self._start_worker(weakref.ref(self))

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if max_workers is None:
            max_workers = _default_max_workers()
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers
        self._thread_name_prefix = thread_name_prefix or f"ThreadPoolExecutor-{self._counter()}"
        self._initializer = initializer
        self._initargs = initargs
        self._threads: set[threading.Thread] = set()
        self._thread_index = 0
        self._shutdown = False
        self._broken = False
        # Re-entrant: shutdown() re-queues tasks waiting to retry while holding
        # it, and a push may start a worker, which takes it again.
        self._shutdown_lock = threading.RLock()
        self._dispatch = core.Dispatcher(max_workers)
        self._dispatch.spawn = self._make_spawner()
        self._dispatch.reject = self._make_rejecter()
        dispatch = self._dispatch
        # Closing the queue when the executor is collected lets its workers
        # drain what is queued and exit.
        self._finalizer = weakref.finalize(self, dispatch.close)
        with _global_lock:
            _live_executors.add(self)

    def _make_spawner(self) -> Callable[[], None]:
        # A closure over a weak reference: the dispatcher (held by the
        # workers) must not keep the executor alive.
        executor_ref = weakref.ref(self)

        def spawn() -> None:
            executor = executor_ref()
            if executor is None:
                return
            executor._start_worker(executor_ref)  # noqa: SLF001 (same module)

        return spawn

    def _make_rejecter(self) -> Callable[[], BaseException]:
        executor_ref = weakref.ref(self)

        def reject() -> BaseException:
            executor = executor_ref()
            if executor is None:
                return RuntimeError("cannot schedule new futures after shutdown")
            return executor.rejection()

        return reject

    def _start_worker(self, executor_ref: weakref.ref[ThreadPoolExecutor]) -> None:
        # Called with a worker slot already reserved in the dispatcher.
        with self._shutdown_lock:
            index = self._thread_index
            self._thread_index += 1
            thread = threading.Thread(
                name=f"{self._thread_name_prefix}_{index}",
                target=_worker_main,
                args=(executor_ref, self._dispatch, self._initializer, self._initargs),
            )
            try:
                thread.start()
            except BaseException:
                self._dispatch.release_worker()
                raise
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)

    # -- submission -------------------------------------------------------
    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        """Schedule ``fn(*args, **kwargs)``; return a future for its result.

        Every keyword is passed to *fn*: threadloom's own options are reached
        through :meth:`options`.

        Raises:
            RuntimeError: the pool was shut down (or the interpreter is exiting).
            BrokenThreadPool: an initializer failed.
        """
        try:
            return self._dispatch.submit(_NORMAL, fn, args, kwargs)  # type: ignore[no-any-return]
        except core.QueueClosed:
            raise self.rejection() from None

    # The overloads tell a type checker which futures a view's submit returns:
    # a TaskFuture once a name, retry policy or timeout is given.
    @overload
    def options(
        self,
        *,
        priority: int | str = ...,
        name: None = None,
        retry: None = None,
        timeout: None = None,
    ) -> SubmitOptions: ...
    @overload
    def options(
        self,
        *,
        priority: int | str = ...,
        name: str,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> ManagedOptions: ...
    @overload
    def options(
        self,
        *,
        priority: int | str = ...,
        name: str | None = None,
        retry: RetryPolicy,
        timeout: float | None = None,
    ) -> ManagedOptions: ...
    @overload
    def options(
        self,
        *,
        priority: int | str = ...,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float,
    ) -> ManagedOptions: ...
    @overload
    def options(
        self,
        *,
        priority: int | str = ...,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> SubmitOptions: ...
    def options(
        self,
        *,
        priority: int | str = TaskPriority.NORMAL,
        name: str | None = None,
        retry: Any = None,
        timeout: float | None = None,
    ) -> SubmitOptions:
        """A view of this pool that submits with threadloom's options.

        ``ex.options(priority=TaskPriority.HIGH).submit(fn, *args, **kwargs)``
        queues *fn* ahead of lower priorities (FIFO within a priority); no
        keyword of *fn*'s is taken for it.

        Args:
            priority: any int, higher runs first, or a ``TaskPriority`` name in
                any case (``"high"``).
            name: a name for the task, seen by ``threadloom.current_task()``.
            retry: a ``RetryPolicy`` for failed attempts.
            timeout: seconds from submission after which the future fails with
                ``TimeoutError`` (the thread itself cannot be killed; the task
                is asked to stop through ``current_task().cancelled``).

        Raises:
            TypeError: *priority* is neither an int nor a str.
            ValueError: *priority* is an unknown name or out of the 32-bit range.
        """
        from .managed import SubmitOptions

        return SubmitOptions(self, check_priority(priority), name, retry, timeout)

    def count_rejected(self) -> None:
        """Count a task refused above the pool (a full queue) in ``statistics().rejected``."""
        self._dispatch.counters.add(core.COUNT_REJECTED)

    @property
    def dispatcher(self) -> core.Dispatcher:
        """The core dispatcher this pool runs on (its queue, workers and counters).

        The protocol of the layers above (``options()``, ``ThreadPoolManager``):
        they submit through it.  User code should submit through the executor.
        """
        return self._dispatch

    def rejection(self) -> BaseException:
        """The error for a submission refused because the pool is closed; counts it.

        ``BrokenThreadPool`` if an initializer failed, else ``RuntimeError``
        ("cannot schedule new futures after shutdown"), as ``submit`` raises,
        and the refusal is counted in ``statistics().rejected``.  The layers
        above raise it so that every layer says the same.
        """
        self._dispatch.counters.add(core.COUNT_REJECTED)
        if self._broken:
            return BrokenThreadPool(self._broken)
        if self._shutdown:
            return RuntimeError("cannot schedule new futures after shutdown")
        if _interpreter_shutdown:
            return RuntimeError("cannot schedule new futures after interpreter shutdown")
        return RuntimeError("cannot schedule new futures after shutdown")

    # -- managed tasks: the protocol of the layers above ------------------
    def submit_managed(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        priority: int = TaskPriority.NORMAL,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        on_done: Callable[[TaskContext, TaskFuture[Any]], object] | None = None,
        on_start: Callable[[TaskContext, TaskFuture[Any]], object] | None = None,
        tag: Any = None,
        run_in_caller: bool = False,
    ) -> TaskFuture[Any]:
        """Queue a managed task with explicit hooks; return its :class:`TaskFuture`.

        This is how ``ThreadPoolManager`` and ``TaskManager`` submit; users
        normally call ``options(...).submit``.  *priority* is checked as
        everywhere (:func:`~threadloom._validate.check_priority`: an int that
        fits in 32 bits, or a :class:`TaskPriority` name); the other arguments
        are not (the caller did): *retry* a ``RetryPolicy`` or None, *timeout*
        float seconds or None.

        Args:
            on_done: ``on_done(task, future)`` once, after the future resolved,
                on the thread that ended the task (a worker, a canceller, or a
                worker the timer thread handed a deadline's end to).  It must
                not block.
            on_start: ``on_start(task, future)`` as each attempt starts.
            tag: anything the caller wants to find on the task (``task.tag``),
                until its end hooks have run (then it is dropped, as are the
                hooks: a finished task keeps nothing that leads to its owner).
            run_in_caller: run the first attempt on this thread (the
                ``caller_runs`` backpressure policy).

        Raises:
            TypeError: *priority* is neither an int nor a str.
            ValueError: *priority* is an unknown name or out of the 32-bit range.
            RuntimeError: the pool was shut down.
            BrokenThreadPool: an initializer failed.
        """
        if type(priority) is not int or not _INT32_MIN <= priority <= _USER_PRIORITY_MAX:
            # The common case costs one type test; everything else is checked
            # (and a name or an IntEnum normalised) the one way.
            priority = check_priority(priority)
        try:
            return self._dispatch.submit_managed(  # type: ignore[no-any-return]
                fn,
                args,
                kwargs,
                priority,
                name,
                retry,
                timeout,
                on_done,
                on_start,
                tag,
                run_in_caller,
                _run_coroutine if run_in_caller else None,
            )
        except core.QueueClosed:
            raise self.rejection() from None

    def graph_runner(self, tasks: list[Any]) -> Any:
        """A runner of one execution of a task graph on this pool (``TaskManager``'s engine).

        *tasks* are the nodes, dependencies first, each with the fields of a
        ``TaskManager`` task (``task_id``, ``dependencies``, ``func``, ...).
        Nothing runs before the runner's ``start()``.
        """
        return core.GraphRunner(self._dispatch, tasks)

    def join_workers(self, timeout: float | None = None) -> bool:
        """Wait for the worker threads to exit (after a shutdown); True if they all did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in list(self._threads))

    def _close_for_exit(self) -> None:
        for future in self._dispatch.begin_close():
            future.task.requeue_now(future)
        self._dispatch.close()

    # -- map --------------------------------------------------------------
    def _map_on(self) -> tuple[ThreadPoolExecutor, int]:
        return self, _NORMAL

    def map_at(
        self,
        priority: int,
        fn: Callable[..., _T],
        iterables: tuple[Iterable[Any], ...],
        *,
        timeout: float | None,
        chunksize: int,
        buffersize: int | None,
    ) -> Iterator[_T]:
        """``map`` at *priority*: the engine of ``map`` and ``options(priority=...).map``.

        *iterables* is the tuple ``map`` was given; the other arguments and the
        errors are ``map``'s (see :meth:`TypedMap.map <threadloom._map.TypedMap.map>`).
        """
        if buffersize is not None and (
            isinstance(buffersize, bool) or not isinstance(buffersize, int)
        ):
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end_time = None if timeout is None else timeout + time.monotonic()
        star = len(iterables) != 1
        # zip() stops at the shortest iterable, as the stdlib's map does.
        source: Iterator[Any] = zip(*iterables) if star else iter(iterables[0])  # noqa: B905
        dispatch = self._dispatch
        workers = max(1, self._max_workers)

        if buffersize is None:
            items = list(source)
            size = chunksize if chunksize > 1 else _auto_chunksize(len(items), workers)
            chunks: deque[Future[Any]] = deque()
            try:
                for start in range(0, len(items), size):
                    chunks.append(
                        self._submit_chunk(priority, fn, items, start, start + size, star)
                    )
            except BaseException:
                for chunk in chunks:
                    chunk.cancel()
                raise
            return _map_results(chunks, end_time, None)

        size = min(chunksize if chunksize > 1 else max(1, buffersize // (4 * workers)), buffersize)
        in_flight = max(1, buffersize // size)
        refill = _ChunkRefill(weakref.ref(self), priority, fn, source, size, star)
        chunks = deque()
        for _ in range(in_flight):
            following = refill.next_chunk()
            if following is None:
                break
            chunks.append(following)
        del dispatch
        return _map_results(chunks, end_time, refill)

    def _submit_chunk(
        self,
        priority: int,
        fn: Callable[..., Any],
        items: list[Any],
        start: int,
        stop: int,
        star: bool,
    ) -> Future[Any]:
        try:
            return self._dispatch.submit(  # type: ignore[no-any-return]
                priority, core.run_chunk, (fn, items, start, stop, star, _run_coroutine), None
            )
        except core.QueueClosed:
            raise self.rejection() from None

    # -- shutdown ---------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; by default wait for queued and running tasks.

        Args:
            wait: join the worker threads before returning.
            cancel_futures: cancel every task that has not started.
        """
        with self._shutdown_lock:
            self._shutdown = True
            # Tasks waiting out a retry delay: cancelled with the queue, or
            # re-queued now so that they finish before the workers exit.
            for future in self._dispatch.begin_close():
                if cancel_futures:
                    future.cancel()
                else:
                    future.task.requeue_now(future)
            # Closing before draining means no submit can slip in after it.
            self._dispatch.close()
            if cancel_futures:
                self._cancel_queued()
        if wait:
            self._join_workers()

    def _join_workers(self) -> None:
        # A submit that raced this shutdown may have queued its task before
        # the close and still be about to start the worker for it.  Keep
        # joining until no worker is left and nothing is queued; if a task is
        # queued with no worker reserved for it, start one here.
        dispatch = self._dispatch
        executor_ref = weakref.ref(self)
        while True:
            for thread in list(self._threads):
                thread.join()
            if dispatch.threads == 0:
                if len(dispatch.queue) == 0:
                    return
                if dispatch.reserve_worker_unconditionally():
                    self._start_worker(executor_ref)
                    continue
            time.sleep(0.001)

    def _cancel_queued(self) -> int:
        cancelled = 0
        for entry in self._dispatch.queue.drain():
            future = entry[5]
            fn = entry[2]
            if type(fn) is core.ManagedTask:
                fn.cancel_from_queue(future)
            elif future is not None:
                if future.cancel():
                    core.future_set_running_or_notify_cancel_safe(future)
                    cancelled += 1
            elif entry[0] > _USER_PRIORITY_MAX:
                # A completion a timer handed over: it must still run.
                fn(*entry[3])
        if cancelled:
            self._dispatch.counters.add(core.COUNT_CANCELLED, cancelled)
        return cancelled

    def _initializer_failed(self) -> None:
        with self._shutdown_lock:
            self._broken = "A thread initializer failed, the thread pool is not usable anymore"
            self._dispatch.close()
            failed = 0
            for entry in self._dispatch.queue.drain():
                future = entry[5]
                fn = entry[2]
                if type(fn) is core.ManagedTask:
                    fn.fail_from_queue(future, BrokenThreadPool(self._broken))
                elif future is not None:
                    try:
                        future.set_exception(BrokenThreadPool(self._broken))
                        failed += 1
                    except Exception:  # already cancelled
                        pass
                elif entry[0] > _USER_PRIORITY_MAX:
                    fn(*entry[3])
            if failed:
                self._dispatch.counters.add(core.COUNT_FAILED, failed)

    def _after_fork_in_child(self) -> None:
        # Its dispatcher is reset by the core (after_fork_in_child above).
        self._shutdown_lock = threading.RLock()
        self._threads = set()

    # -- sizing -----------------------------------------------------------
    def resize(self, max_workers: int, min_workers: int | None = None) -> None:
        """Change how many workers may run (and how many are kept when idle).

        Growing takes effect as work arrives; shrinking lets surplus workers
        exit after their current task.  Not in the stdlib API.

        Raises:
            ValueError: *max_workers* < 1, or *min_workers* outside [0, max_workers].
        """
        self._dispatch.set_limits(max_workers, min_workers)
        self._max_workers = max_workers
        self._ensure_min_workers()

    @property
    def idle_timeout(self) -> float | None:
        """Seconds an idle worker above ``min_workers`` waits before exiting
        (None: workers never exit while the pool is open, as in the stdlib)."""
        return self._dispatch.idle_timeout

    @idle_timeout.setter
    def idle_timeout(self, value: float | None) -> None:
        self._dispatch.idle_timeout = value

    def _ensure_min_workers(self) -> None:
        executor_ref = weakref.ref(self)
        while self._dispatch.threads < self._dispatch.min_workers:
            if self._shutdown or not self._dispatch.reserve_worker_unconditionally():
                return
            self._start_worker(executor_ref)

    # -- introspection ----------------------------------------------------
    def statistics(self) -> ExecutorStatistics:
        """A frozen snapshot of workers, queue depth, counters and latencies."""
        dispatch = self._dispatch
        counters = dict(zip(core.COUNTER_NAMES, dispatch.counters.snapshot(), strict=True))
        total = dispatch.threads
        busy = min(dispatch.busy, total)
        depth = dispatch.queue.depth_by_priority()
        for priority in [p for p in depth if p > _USER_PRIORITY_MAX]:
            del depth[priority]  # completions handed over by timers are not tasks
        for priority, dead in dispatch.dead_entries().items():
            left = depth.get(priority, 0) - dead
            if left > 0:
                depth[priority] = left
            else:
                depth.pop(priority, None)
        return ExecutorStatistics(
            workers_total=total,
            workers_busy=busy,
            workers_idle=total - busy,
            max_workers=dispatch.max_workers,
            queue_depth=sum(depth.values()),
            queue_depth_by_priority=types.MappingProxyType(depth),
            wait_time=Percentiles.of(dispatch.wait_samples()),
            run_time=Percentiles.of(dispatch.run_samples()),
            native=core.NATIVE,
            **counters,
        )


def _auto_chunksize(n: int, workers: int) -> int:
    # Four chunks per worker keeps the load balanced when items differ in
    # cost; the cap keeps the first result from waiting on a huge chunk.
    if n <= 0:
        return 1
    return max(1, min(1024, -(-n // (4 * workers))))


class _ChunkRefill:
    """Submits the next chunk of a ``map`` with a *buffersize* as results are taken."""

    __slots__ = ("_executor_ref", "_fn", "_priority", "_size", "_source", "_star")

    def __init__(
        self,
        executor_ref: weakref.ref[ThreadPoolExecutor],
        priority: int,
        fn: Callable[..., Any],
        source: Iterator[Any],
        size: int,
        star: bool,
    ) -> None:
        self._executor_ref = executor_ref
        self._priority = priority
        self._fn = fn
        self._source = source
        self._size = size
        self._star = star

    def next_chunk(self) -> Future[Any] | None:
        executor = self._executor_ref()
        if executor is None:
            return None
        items = list(itertools.islice(self._source, self._size))
        if not items:
            return None
        return executor._submit_chunk(self._priority, self._fn, items, 0, len(items), self._star)  # noqa: SLF001 (same module)


def _map_results(
    chunks: deque[Future[Any]], end_time: float | None, refill: _ChunkRefill | None
) -> Iterator[Any]:
    # A generator function separate from map() so that map() submits eagerly.
    try:
        while chunks:
            chunk = chunks.popleft()
            if refill is not None:
                following = refill.next_chunk()
                if following is not None:
                    chunks.append(following)
            try:
                if end_time is None:
                    results, error = chunk.result()
                else:
                    results, error = chunk.result(end_time - time.monotonic())
            except BaseException:
                chunk.cancel()
                raise
            # Hand each result over without keeping it (bpo-14406): the
            # consumer may be the last holder of a large result.  The list is
            # shared with the chunk's future, so emptying it frees both.
            yield from core.ResultDrain(results)
            if error is not None:
                # Raised from here, the error's traceback holds this frame:
                # it must not hold the chunk's future, which holds the error
                # (a cycle that would keep fn's arguments until the GC runs).
                del chunk
                try:
                    raise error
                finally:
                    error = None
    finally:
        for chunk in chunks:
            chunk.cancel()
