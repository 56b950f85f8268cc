"""``ThreadPoolManager``: the original id-based pool API, a thin layer over ``ThreadPoolExecutor``.

One engine: tasks run on the executor's core; the counters are the core's.
This layer adds task ids and records, backpressure, and the elastic sizing
loop that follows queue wait times and the resource monitor's advice.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from . import events as tl_events
from . import profiling as tl_profiling
from ._errors import QueueFull, TaskNotFinished, UnknownTaskError
from ._types import TaskPriority, TaskStatus
from ._validate import (
    check_count,
    check_name,
    check_priority,
    check_retry,
    check_seconds,
    check_timeout,
)
from .core import core
from .executor import ThreadPoolExecutor, current_worker_executor
from .managed import TaskContext, TaskFuture, current_task
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .monitor import ResourceMonitor

# A task's tag: flags of what this layer owes it.
_HOLDS_SLOT = 1  # a queue slot, until its attempt starts (or it ends unstarted)
_OBSERVED = 2  # its events go to the subscribers (sampled when they were submitted)

__all__ = [
    "QueueFull",
    "TaskInfo",
    "TaskNotFinished",
    "TaskPriority",
    "TaskStatus",
    "ThreadPoolManager",
    "UnknownTaskError",
    "current_task",
]

LOGGER = logging.getLogger("threadloom")

QueueFullPolicy = Literal["block", "raise", "caller_runs"]
_T = TypeVar("_T")
_POLICIES = ("block", "raise", "caller_runs")


_TERMINAL = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT}
)


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of one task submitted to a :class:`ThreadPoolManager`.

    A :class:`~threadloom.TaskManager`'s task (a definition run by many
    executions) is a :class:`~threadloom.RegisteredTask`.
    """

    task_id: str
    name: str | None
    status: TaskStatus
    priority: int
    attempts: int
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    error: BaseException | None


class ThreadPoolManager(core.PoolBase):
    """A priority thread pool addressed by task ids, with retries, deadlines,
    cancellation, backpressure, metrics, and a worker count that follows load.

    Args:
        min_workers: workers kept alive even when idle.
        max_workers: the most workers at once.
        resource_monitor: a ``ResourceMonitor`` whose advice (optimal thread
            count, memory pressure) bounds the worker count; tasks' CPU and
            wall times are reported to it.
        adjust_interval: seconds between sizing decisions.
        idle_timeout: seconds an idle worker above *min_workers* lives.
        max_queue_size: the most tasks waiting to start (None: unbounded).
        queue_full_policy: when the queue is full, ``"block"`` (up to
            *queue_full_timeout*, then :class:`QueueFull`), ``"raise"``
            (:class:`QueueFull` at once) or ``"caller_runs"`` (run the task on
            the submitting thread).
        queue_full_timeout: seconds ``"block"`` waits (None: forever).
        default_retry: the retry policy of tasks submitted without one.
        keep_finished: how many finished task records are kept.
        keep_finished_seconds: how long a finished record is kept.
        thread_name_prefix: names of the worker threads.
        profile: True (or a :class:`~threadloom.profiling.Profiler`) to profile
            every task (see :attr:`profiler`); off, it costs nothing.

    Raises:
        ValueError, TypeError: an argument is out of range; the message names it.
    """

    def __init__(
        self,
        min_workers: int = 2,
        max_workers: int = 10,
        resource_monitor: ResourceMonitor | None = None,
        *,
        adjust_interval: float = 1.0,
        idle_timeout: float = 30.0,
        max_queue_size: int | None = None,
        queue_full_policy: QueueFullPolicy = "block",
        queue_full_timeout: float | None = None,
        default_retry: RetryPolicy | None = None,
        keep_finished: int = 10_000,
        keep_finished_seconds: float = 3600.0,
        thread_name_prefix: str = "threadloom-pool",
        profile: bool | tl_profiling.Profiler = False,
    ) -> None:
        for label, value in (("min_workers", min_workers), ("max_workers", max_workers)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{label} must be an int, not {type(value).__name__}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, not {max_workers}")
        if not 0 <= min_workers <= max_workers:
            raise ValueError(
                f"min_workers must be between 0 and max_workers ({max_workers}), not {min_workers}"
            )
        if max_queue_size is not None:
            check_count("max_queue_size", max_queue_size, minimum=1)
        if queue_full_policy not in _POLICIES:
            raise ValueError(
                f"queue_full_policy must be one of {', '.join(_POLICIES)}, "
                f"not {queue_full_policy!r}"
            )
        if default_retry is not None and not isinstance(default_retry, RetryPolicy):
            raise TypeError("default_retry must be a RetryPolicy or None")
        check_count("keep_finished", keep_finished)
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.resource_monitor = resource_monitor
        self.adjust_interval = check_seconds("adjust_interval", adjust_interval, allow_zero=False)
        self.idle_timeout = check_seconds("idle_timeout", idle_timeout, allow_zero=False)
        if queue_full_timeout is not None:
            queue_full_timeout = check_seconds("queue_full_timeout", queue_full_timeout)
        self.max_queue_size = max_queue_size
        self.queue_full_policy: QueueFullPolicy = queue_full_policy
        self.queue_full_timeout = queue_full_timeout
        self.default_retry = default_retry
        self.keep_finished = keep_finished
        self.keep_finished_seconds = check_seconds("keep_finished_seconds", keep_finished_seconds)
        self.thread_name_prefix = thread_name_prefix
        self._profiler = tl_profiling.profiler_from(profile)

        self._lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        # Task futures by id, finished ones pruned by count and age; counts
        # unfinished tasks.  Native: it is every task's done-hook.
        self._registry = core.TaskRegistry(keep_finished, self.keep_finished_seconds)
        # The executor's dispatcher while running with no queue limit and no
        # resource monitor (see PoolBase.submit).
        self._fast_dispatch = None
        self._slots = threading.Semaphore(max_queue_size) if max_queue_size else None
        self._events = tl_events.EventBus(thread_name_prefix)
        # Retries due while the queue is full wait here for a slot (oldest first).
        self._parked: deque[TaskFuture[Any]] = deque()
        # The attempt observer of each observed task (events on), which its end
        # announces if its submitter has not yet (TaskQueued comes first).
        self._observers: weakref.WeakKeyDictionary[TaskFuture[Any], Any] = (
            weakref.WeakKeyDictionary()
        )
        self._admission = threading.Lock()
        if self._slots is not None:
            self._registry.on_task_done = self._task_ended
            self._registry.on_requeue = self._admit_retry
        self._started_at: float | None = None
        self._target_workers = max_workers
        self._adjuster: threading.Thread | None = None
        self._stop_adjusting = threading.Event()
        self._executors_seen: list[ThreadPoolExecutor] = []

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> ThreadPoolManager:
        """Start the workers (``min_workers`` at once) and the sizing loop.

        Calling it on a running pool does nothing; after ``stop()`` it starts
        a fresh pool (old workers have exited or are finishing).
        """
        with self._lock:
            if self._executor is not None:
                return self
            executor = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix=self.thread_name_prefix
            )
            executor.idle_timeout = self.idle_timeout
            executor.resize(self.max_workers, self.min_workers)
            self._executor = executor
            self._executors_seen.append(executor)
            if self._slots is None and self.resource_monitor is None and self._profiler is None:
                self._fast_dispatch = executor.dispatcher
            if self._profiler is not None:
                self._profiler.attach(
                    self._submitted_count,
                    self._profile_window,
                    lambda: self.max_workers,
                    self._events,
                )
                self._profiler.start()
            self._started_at = time.monotonic()
            self._target_workers = self.max_workers
            self._stop_adjusting = threading.Event()
            self._adjuster = threading.Thread(
                target=self._adjust_loop,
                args=(executor, self._stop_adjusting),
                name=f"{self.thread_name_prefix}-sizer",
                daemon=True,
            )
            self._adjuster.start()
        return self

    def stop(self, wait_for_tasks: bool = True, timeout: float | None = None) -> bool:
        """Stop accepting tasks and shut the workers down.

        Args:
            wait_for_tasks: let queued and running tasks finish (tasks waiting
                for a retry are re-queued at once); if False, cancel queued
                tasks and ask running ones to stop (cooperatively: a Python
                thread cannot be killed).
            timeout: seconds to wait for the workers (None: as long as it takes).

        Returns:
            True if every worker exited within *timeout*.
        """
        with self._lock:
            executor = self._executor
            self._executor = None
            self._fast_dispatch = None
            adjuster = self._adjuster
            self._adjuster = None
            self._stop_adjusting.set()
        if executor is None:
            return True
        # Drain the queue first: a running task that stops when asked must not
        # leave its worker free to start queued work that is being cancelled.
        executor.shutdown(wait=False, cancel_futures=not wait_for_tasks)
        if not wait_for_tasks:
            for future in self._registry.futures():
                if not future.done():
                    future.cancel()
        deadline = None if timeout is None else time.monotonic() + timeout
        all_exited = executor.join_workers(timeout)
        if adjuster is not None:
            adjuster.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self._profiler is not None:
            self._profiler.detach(self._profile_window)
            self._profiler.stop()
        if not all_exited:
            LOGGER.warning("ThreadPoolManager.stop(): workers still running after %s s", timeout)
        return all_exited

    def __enter__(self) -> ThreadPoolManager:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._executor is not None

    # -- events -------------------------------------------------------------
    @property
    def events(self) -> tl_events.EventBus:
        """The pool's event bus (a ``TaskManager`` on this pool emits on it too)."""
        return self._events

    def subscribe(
        self,
        callback: Callable[[tl_events.Event], object],
        kinds: Iterable[str | type[tl_events.Event]] | None = None,
    ) -> tl_events.Subscription:
        """Call ``callback(event)`` for the pool's events; see :mod:`threadloom.events`."""
        return self._events.subscribe(callback, kinds)

    @property
    def profiler(self) -> tl_profiling.Profiler | None:
        """The pool's profiler (``profile=``), or None; ``profiler.report()`` says what it saw."""
        return self._profiler

    def _submitted_count(self) -> int:
        return sum(executor.statistics().submitted for executor in self._executors_seen)

    def _profile_window(self) -> None:
        # A new timing window of the profiler: submit() leaves the core's
        # fast path again so that _submit can time tasks.
        with self._lock:
            if self._executor is not None:
                self._fast_dispatch = None

    # -- submission ---------------------------------------------------------
    # submit() is the core's (PoolBase): its fast path never leaves C.
    def _submit_slow(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int | str,
        max_retries: int,
        retry_delay: float,
        observed: bool,
    ) -> str:
        # Checked even when unused (max_retries=0), as TaskManager.register_task does.
        check_seconds("retry_delay", retry_delay)
        if max_retries:
            retry: RetryPolicy | None = RetryPolicy(
                max_retries=max_retries, delay=retry_delay, backoff=1.0
            )
        else:
            retry = self.default_retry
        return self._submit(func, args, kwargs, priority, retry, None, None, observed).task_id

    def _unknown_task(self, task_id: str) -> UnknownTaskError:
        return UnknownTaskError(task_id)

    def submit_call(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        priority: int | str = TaskPriority.NORMAL,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> str:
        """Queue ``func(*args, **kwargs)`` with explicit options; return its task id.

        Like :meth:`submit_future`, which returns the future itself.
        """
        return self.submit_future(
            func, args, kwargs, priority=priority, retry=retry, timeout=timeout, name=name
        ).task_id

    def submit_future(
        self,
        func: Callable[..., _T],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        priority: int | str = TaskPriority.NORMAL,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> TaskFuture[_T]:
        """Queue ``func(*args, **kwargs)`` with explicit options; return its future.

        The future carries the task id (``future.task_id``); unlike a later
        ``get_future(task_id)``, it cannot miss a record that was already
        pruned because the task finished at once.

        Args:
            priority: any int, higher first, or a ``TaskPriority`` name
                (``"high"``); FIFO within a priority.
            retry: the retry policy (default: the pool's ``default_retry``).
            timeout: a deadline in seconds from now: the task is then marked
                TIMED_OUT, its future fails with ``TimeoutError`` and it is asked
                to stop (``current_task().cancelled``).
            name: a name for the task (seen by ``current_task().name``).
        """
        events = self._events
        return self._submit(
            func,
            tuple(args),
            dict(kwargs) if kwargs else {},
            priority,
            self.default_retry if retry is None else check_retry(retry),
            check_timeout(timeout),
            check_name(name),
            events.active and events.sample_task(),
        )

    def _submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int | str,
        retry: RetryPolicy | None,
        timeout: float | None,
        name: str | None,
        observed: bool,
    ) -> TaskFuture[Any]:
        """Queue one task; *observed*: its events go to the subscribers (sampled by the caller)."""
        if not callable(func):
            raise TypeError(f"func must be callable, not {type(func).__name__}")
        if type(priority) is not int or not -(2**31) <= priority < 2**31:
            priority = check_priority(priority)
        executor = self._executor
        if executor is None:
            raise RuntimeError("ThreadPoolManager is not started: call start() first")
        events = self._events
        profiler = self._profiler
        if profiler is not None and not profiler.take():
            # Over the profiler's task rate: this one runs untimed, and so do
            # the next ones through the core's fast path, until the profiler's
            # next window (_profile_window).
            profiler = None
            if (
                self._fast_dispatch is None
                and self._slots is None
                and self.resource_monitor is None
            ):
                with self._lock:
                    if self._executor is executor:
                        self._fast_dispatch = executor.dispatcher
        if (
            self._slots is None
            and self.resource_monitor is None
            and not observed
            and profiler is None
        ):
            # The fast path: the registry is the task's done-hook, in the core.
            return executor.submit_managed(
                func,
                args,
                kwargs,
                priority=priority,
                name=name,
                retry=retry,
                timeout=timeout,
                on_done=self._registry,
            )
        profiled = None
        if profiler is not None:
            # Innermost, so that sampled stacks start at the task's own function.
            func, args, kwargs = profiler.wrap(func, args, kwargs)
            profiled = func
        monitor = self.resource_monitor
        if monitor is not None:
            args = (func, args, kwargs, monitor)
            func, kwargs = _observed_call, {}
        flags = 0
        if observed:
            func, args, kwargs = tl_events.observe_attempts(events, func, args, kwargs, retry)
            flags |= _OBSERVED
            # From now on the registry reports ends (only observed ones emit).
            self._registry.on_task_done = self._task_ended
        admission = "over"
        if self._slots is not None:
            admission = self._take_slot(executor)
            if admission == "slot":
                flags |= _HOLDS_SLOT
        try:
            future = executor.submit_managed(
                func,
                args,
                kwargs,
                priority=priority,
                name=name,
                retry=retry,
                timeout=timeout,
                on_done=self._registry,
                on_start=self._task_started if self._slots is not None else None,
                tag=flags or None,
                run_in_caller=admission == "caller",
            )
        except BaseException:
            if flags & _HOLDS_SLOT:
                assert self._slots is not None
                self._slots.release()
            raise
        if observed:
            self._observers[future] = func
            func.announce(future.task_id, name, priority)  # type: ignore[attr-defined]
        if profiled is not None:
            future.add_done_callback(profiled.task_done)  # type: ignore[attr-defined]
        return future

    def graph_runner(self, tasks: list[Any]) -> Any:
        """A runner of one task-graph execution on this pool (see ``ThreadPoolExecutor``).

        The graph's nodes are admitted with their execution: the queue limit
        does not apply to them one by one (a dependent queued by a worker must
        never wait for a slot).  With a resource monitor, every node's CPU and
        wall time are reported to it.

        Raises:
            RuntimeError: the pool is not started.
        """
        executor = self._executor
        if executor is None:
            raise RuntimeError("ThreadPoolManager is not started: call start() first")
        runner = executor.graph_runner(tasks)
        monitor = self.resource_monitor
        profiler = self._profiler
        if monitor is not None or profiler is not None:

            def observed(
                func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None
            ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
                if profiler is not None and profiler.take():
                    func, args, kwargs = profiler.wrap(func, args, kwargs)
                if monitor is None:
                    return func, args, kwargs or {}
                return _observed_call, (func, args, kwargs or {}, monitor), {}

            runner.call_wrapper = observed
        return runner

    def _rejection(self) -> BaseException:
        executor = self._executor
        if executor is None:
            return RuntimeError("ThreadPoolManager is not started: call start() first")
        return executor.rejection()

    def _take_slot(self, executor: ThreadPoolExecutor) -> Literal["slot", "caller", "over"]:
        """Wait for room in the queue per the policy.

        Returns "slot" (a slot was taken), "caller" (run the task on this
        thread) or "over" (admitted over the limit, see below).
        """
        slots = self._slots
        assert slots is not None
        if slots.acquire(blocking=False):
            return "slot"
        policy = self.queue_full_policy
        if policy == "caller_runs":
            return "caller"
        if policy == "block" and current_worker_executor() is executor:
            # A task of this pool submitting to it must not wait for a slot:
            # only a worker can free one, and every worker could be waiting
            # here.  It is let in over the limit instead.
            return "over"
        if policy == "block" and slots.acquire(timeout=self.queue_full_timeout):
            return "slot"
        executor.count_rejected()
        raise QueueFull(
            f"queue is full ({self.max_queue_size} tasks waiting to start)"
            + (f" and stayed full for {self.queue_full_timeout} s" if policy == "block" else "")
        )

    def _task_started(self, task: TaskContext, future: TaskFuture[Any]) -> None:
        # A slot is held from admission until the attempt starts, or until the
        # task ends without starting (cancelled or timed out while queued).
        # The two hooks never both see the tag: a task that started ends after
        # its start hook ran.  A retry takes a slot again before it is queued.
        flags = task.tag
        if not flags or not flags & _HOLDS_SLOT:
            return
        task.tag = flags & ~_HOLDS_SLOT
        slots = self._slots
        assert slots is not None
        with self._admission:
            while self._parked:
                parked = self._parked.popleft()
                if parked.status is TaskStatus.RETRYING:
                    # The slot goes to the oldest retry held back, at once.
                    parked.task.tag = (parked.task.tag or 0) | _HOLDS_SLOT
                    break
            else:
                parked = None
                slots.release()
        if parked is not None:
            parked.task.requeue_now(parked)

    def _task_ended(self, task: TaskContext, future: TaskFuture[Any]) -> None:
        flags = task.tag
        if flags and flags & _OBSERVED:
            observer = self._observers.pop(future, None)
            if observer is not None:
                observer.announce(task.task_id, task.name, task.priority)
            self._events.emit(tl_events.task_finished_from_future(task, future))
        if self._slots is not None:
            self._task_started(task, future)

    def _admit_retry(self, task: TaskContext, future: TaskFuture[Any]) -> bool:
        # A due retry is queued work again: it needs a slot like a new task,
        # but never waits for one (this is a worker or the timer thread).
        slots = self._slots
        assert slots is not None
        with self._admission:
            if slots.acquire(blocking=False):
                task.tag = (task.tag or 0) | _HOLDS_SLOT
                return True
            self._parked.append(future)
            return False

    # -- queries --------------------------------------------------------------
    def _future(self, task_id: str) -> TaskFuture[Any]:
        future: TaskFuture[Any] | None = self._registry.get(task_id)
        if future is None:
            raise UnknownTaskError(task_id)
        return future

    def get_future(self, task_id: str) -> TaskFuture[Any]:
        """The task's ``concurrent.futures.Future`` (resolves after the last attempt).

        Raises:
            UnknownTaskError: no such task.
        """
        return self._future(task_id)

    def get_task_status(self, task_id: str) -> TaskStatus:
        """The task's status.

        Raises:
            UnknownTaskError: no such task.
        """
        return self._future(task_id).status

    def get_task_info(self, task_id: str) -> TaskInfo:
        """A snapshot of the task's record.

        Raises:
            UnknownTaskError: no such task.
        """
        future = self._future(task_id)
        task = future.task
        error = None
        if future.done() and not future.cancelled():
            error = future.exception(0)
        return TaskInfo(
            task_id=task.task_id,
            name=task.name,
            status=task.status,
            priority=task.priority,
            attempts=task.attempts,
            submitted_at=task.submitted_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            error=error,
        )

    def get_task_error(self, task_id: str) -> BaseException | None:
        """The exception a finished task ended with, or None if it succeeded.

        Raises:
            UnknownTaskError: no such task.
            TaskNotFinished: it is still queued, running or waiting to retry.
        """
        future = self._future(task_id)
        if not future.done():
            raise TaskNotFinished(f"task {task_id} is {future.status.value}")
        if future.cancelled():
            return CancelledError(f"task {task_id} was cancelled")
        return future.exception(0)

    def wait_for_task(self, task_id: str, timeout: float | None = None) -> bool:
        """Wait until the task has finished (any terminal status); True if it has.

        Raises:
            UnknownTaskError: no such task.
        """
        future = self._future(task_id)
        try:
            future.exception(timeout)
        except CancelledError:
            return True
        except FutureTimeoutError:
            return future.done()
        return True

    def wait_all(self, timeout: float | None = None) -> bool:
        """Wait until every submitted task has finished; True if they all have."""
        return bool(self._registry.wait_all(timeout))

    def cancel_task(self, task_id: str) -> bool:
        """Cancel a task: at once if queued or waiting to retry (True); if it is
        running, ask it to stop cooperatively and return False.

        Raises:
            UnknownTaskError: no such task.
        """
        return self._future(task_id).cancel()

    def list_tasks(self, status: TaskStatus | None = None) -> list[TaskInfo]:
        """Snapshots of the known tasks, optionally only those with *status*."""
        infos = []
        for task_id in self._registry.ids():
            try:
                info = self.get_task_info(task_id)
            except UnknownTaskError:
                continue
            if status is None or info.status is status:
                infos.append(info)
        return infos

    def get_metrics(self) -> dict[str, Any]:
        """A consistent snapshot of the pool, cheap to take under load.

        Keeps the original API's keys (``tasks_submitted``, ``tasks_completed``,
        ``tasks_failed``, ``tasks_cancelled``, ``avg/max/min_execution_time``,
        ``worker_count``, ``active_workers``, ``queue_size``) and adds retries,
        time-outs, rejections, throughput, wait/run-time percentiles and the
        queue depth per priority.
        """
        executors = self._executors_seen
        current = self._executor
        stats = (current or executors[-1]).statistics() if executors else None
        totals = dict.fromkeys(core.COUNTER_NAMES, 0)
        for executor in executors:
            seen = executor.statistics() if executor is not current else stats
            assert seen is not None
            for counter_name in core.COUNTER_NAMES:
                totals[counter_name] += getattr(seen, counter_name)
        count, total, max_time, min_time = self._registry.run_times()
        avg = total / count if count else 0.0
        if not count:
            max_time = min_time = 0.0
        unfinished = self._registry.unfinished
        tracked = len(self._registry)
        uptime = time.monotonic() - self._started_at if self._started_at is not None else 0.0
        finished = totals["completed"] + totals["failed"]
        return {
            "tasks_submitted": totals["submitted"],
            "tasks_completed": totals["completed"],
            "tasks_failed": totals["failed"],
            "tasks_cancelled": totals["cancelled"],
            "tasks_retried": totals["retried"],
            "tasks_timed_out": totals["timed_out"],
            "tasks_rejected": totals["rejected"],
            "tasks_started": totals["started"],
            "tasks_unfinished": unfinished,
            "tasks_tracked": tracked,
            "avg_execution_time": avg,
            "max_execution_time": max_time,
            "min_execution_time": min_time,
            "worker_count": stats.workers_total if stats else 0,
            "active_workers": stats.workers_busy if stats else 0,
            "idle_workers": stats.workers_idle if stats else 0,
            "min_workers": self.min_workers,
            "max_workers": self.max_workers,
            "target_workers": self._target_workers,
            "queue_size": stats.queue_depth if stats else 0,
            "queue_size_by_priority": dict(stats.queue_depth_by_priority) if stats else {},
            "throughput": finished / uptime if uptime > 0 else 0.0,
            "wait_time_p50": stats.wait_time.p50 if stats else 0.0,
            "wait_time_p90": stats.wait_time.p90 if stats else 0.0,
            "wait_time_p99": stats.wait_time.p99 if stats else 0.0,
            "run_time_p50": stats.run_time.p50 if stats else 0.0,
            "run_time_p90": stats.run_time.p90 if stats else 0.0,
            "run_time_p99": stats.run_time.p99 if stats else 0.0,
            "uptime": uptime,
            "running": current is not None,
        }

    # -- elastic sizing ------------------------------------------------------
    def target_worker_count(self, executor: ThreadPoolExecutor | None = None) -> int:
        """The worker limit the sizing loop would set now (see the class docs)."""
        executor = executor or self._executor
        target = self.max_workers
        monitor = self.resource_monitor
        if monitor is not None:
            try:
                advice = monitor.calculate_optimal_thread_count(self.min_workers, self.max_workers)
                target = max(self.min_workers, min(self.max_workers, int(advice)))
                if monitor.memory_pressure:
                    # Shrink under memory pressure: one step below what runs now.
                    running = (
                        executor.statistics().workers_total if executor is not None else target
                    )
                    target = max(self.min_workers, min(target, running - 1))
            except Exception:
                LOGGER.exception("resource monitor advice failed; keeping max_workers")
        if executor is not None and target < self.max_workers:
            stats = executor.statistics()
            # Work is waiting longer than a sizing period and every allowed
            # worker is busy: allow one more, advice notwithstanding, unless
            # memory is short.
            starving = (
                stats.queue_depth > 0
                and stats.wait_time.p90 > self.adjust_interval
                and stats.workers_busy >= target
            )
            if starving and not (monitor is not None and monitor.memory_pressure):
                target = min(self.max_workers, target + 1)
        return max(1, target)

    def _adjust_loop(self, executor: ThreadPoolExecutor, stop: threading.Event) -> None:
        while not stop.wait(self.adjust_interval):
            try:
                target = self.target_worker_count(executor)
                if target != self._target_workers:
                    if self._events.active:
                        self._events.emit(
                            tl_events.workers_changed(
                                self._target_workers, target, executor.statistics().workers_total
                            )
                        )
                    self._target_workers = target
                    executor.resize(target, min(self.min_workers, target))
            except Exception:
                LOGGER.exception("ThreadPoolManager sizing loop failed; it keeps running")

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ThreadPoolManager {state} workers={self.min_workers}..{self.max_workers}>"


def _observed_call(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    monitor: ResourceMonitor,
) -> Any:
    """Run *func*, telling the monitor how much of its wall time was CPU time."""
    wall_start = time.perf_counter()
    cpu_start = time.thread_time()
    try:
        return func(*args, **kwargs)
    finally:
        monitor.observe_task(time.perf_counter() - wall_start, time.thread_time() - cpu_start)
