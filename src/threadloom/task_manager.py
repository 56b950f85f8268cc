"""TaskManager: named tasks with dependencies, run as graphs on a thread pool.

A task is registered once (a function, its arguments, what it depends on, its
priority, retries, trigger rule, schedule) and executed any number of times.
An *execution* runs the requested tasks together with everything they depend
on, each task once, in dependency order; independent branches run in parallel
on the pool.  Every task run and every execution is recorded in a
:class:`~threadloom.history.TaskHistory` (SQLite).

How an execution moves (the ordering argument for everything below): all of an
execution's graph bookkeeping is applied by one thread at a time, the
*drainer*.  Whoever has news (the caller starting it, a worker whose task
ended, a caller cancelling) appends an operation to the execution's inbox; if
nobody is draining, that thread becomes the drainer and applies operations
until the inbox is empty.  So the graph state never needs more than a short
lock, a pool submission never happens under a lock, and a task that ends
before its done-callback is attached (the callback then runs inline) only
appends to the inbox instead of recursing: a 100,000-task chain runs in
constant stack depth.

Example:
    >>> with TaskManager() as manager:  # doctest: +SKIP
    ...     load = manager.register_task("load", lambda: [1, 2, 3])
    ...     total = manager.register_task(
    ...         "total", lambda upstream: sum(upstream["load"]),
    ...         dependencies=[load], results_param="upstream")
    ...     (execution,) = manager.execute_tasks([total], wait=True)
    ...     manager.get_execution_status(execution).results["total"]
    6
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from . import events as tl_events
from ._graph import (
    DependencyCycleError,
    DependencyGraph,
    GraphRun,
    TaskDependencyError,
    TriggerRule,
    UnknownDependencyError,
    closure_in_order,
    inherit_priorities,
)
from ._task import current_task
from ._types import TaskPriority, TaskStatus, check_priority
from .history import ExecutionRecord, TaskHistory, TaskRunRecord
from .retry import RetryPolicy
from .scheduling import MissReason, Schedule, Scheduler, parse_schedule
from .thread_pool_manager import ThreadPoolManager

if TYPE_CHECKING:
    from ._clock import Clock
    from .resource_monitor import ResourceMonitor

__all__ = [
    "DependencyCycleError",
    "ExecutionInfo",
    "TaskDependencyError",
    "TaskInfo",
    "TaskManager",
    "TaskRunInfo",
    "TriggerRule",
    "UnknownDependencyError",
    "UnknownExecutionError",
    "UnknownTaskError",
]

logger = logging.getLogger(__name__)

_EMPTY: Mapping[str, Any] = MappingProxyType({})

#: Fields of a task that :meth:`TaskManager.update_task` may change.
_UPDATABLE = frozenset(
    {
        "name",
        "func",
        "args",
        "kwargs",
        "dependencies",
        "priority",
        "max_retries",
        "retry_delay",
        "retry",
        "timeout",
        "schedule",
        "enabled",
        "description",
        "tags",
        "trigger_rule",
        "results_param",
    }
)


class UnknownTaskError(KeyError):
    """No registered task has this id or name."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownExecutionError(KeyError):
    """No execution has this id (neither in memory nor in the history)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclasses.dataclass(frozen=True, slots=True)
class TaskInfo:
    """A registered task.  Immutable: :meth:`TaskManager.update_task` replaces it.

    Attributes:
        task_id: The id :meth:`TaskManager.register_task` returned.
        name: Unique among registered tasks; the key of its result in a
            dependent's upstream results.
        dependencies: The ids of the tasks it depends on.
        retry: The retry policy: the one given, or one built from
            ``max_retries`` and ``retry_delay`` (fixed delay); those two
            fields always reflect it.
        timeout: Seconds a run may take from being queued, or None.
        schedule: The parsed schedule, or None; ``schedule_spec`` is what was given.
    """

    task_id: str
    name: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    dependencies: tuple[str, ...]
    priority: int
    max_retries: int
    retry_delay: float
    retry: RetryPolicy
    timeout: float | None
    schedule_spec: object
    schedule: Schedule | None
    enabled: bool
    description: str
    tags: tuple[str, ...]
    trigger_rule: TriggerRule
    results_param: str | None


class TaskRunInfo(NamedTuple):
    """One task's run in one execution, as seen now."""

    task_id: str
    name: str
    status: TaskStatus
    priority: int
    attempts: int
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    duration: float | None
    error: BaseException | None


@dataclasses.dataclass(frozen=True)
class ExecutionInfo:
    """A snapshot of an execution.

    Attributes:
        status: RUNNING until every task has ended; then COMPLETED (every task
            completed or was skipped), FAILED (a task failed, timed out, was
            cancelled or was not run for a failed upstream) or CANCELLED (the
            execution was cancelled).
        tasks: task id -> its run.
        results: task name -> return value, for the tasks that completed.  Empty
            for an execution read back from the history (results are not stored).
    """

    execution_id: str
    status: TaskStatus
    targets: tuple[str, ...]
    trigger: str
    started_at: float
    finished_at: float | None
    tasks: Mapping[str, TaskRunInfo]
    results: Mapping[str, Any]


class _Run:
    """One task's run inside one execution (mutable; guarded as noted)."""

    __slots__ = (
        "attempts",
        "cancel_requested",
        "duration",
        "error",
        "finished_at",
        "pool_id",
        "priority",
        "queued_at",
        "result",
        "start_perf",
        "started_at",
        "status",
        "status_lock",
        "task",
        "upstream_results",
    )

    def __init__(self, task: TaskInfo, priority: int) -> None:
        self.task = task
        # Orders the worker's RUNNING against the drainer's terminal status.
        self.status_lock = threading.Lock()
        self.priority = priority
        self.status = TaskStatus.PENDING
        # Written by the worker running an attempt (one attempt at a time), read
        # after the pool future resolves, which orders the two.
        self.attempts = 0
        self.started_at: float | None = None
        self.start_perf = 0.0
        self.result: Any = None
        self.error: BaseException | None = None
        # Written by the drainer only.
        self.queued_at: float | None = None
        self.finished_at: float | None = None
        self.duration: float | None = None
        self.pool_id: str | None = None
        self.cancel_requested = False
        self.upstream_results: Mapping[str, Any] = _EMPTY


class _Finish(NamedTuple):
    run: _Run
    status: TaskStatus


class _Cancel(NamedTuple):
    task_ids: frozenset[str] | None  # None: the whole execution


class _Start(NamedTuple):
    pass


_Op = _Finish | _Cancel | _Start


class _Execution:
    def __init__(
        self,
        execution_id: str,
        targets: tuple[str, ...],
        runs: dict[str, _Run],
        graph: GraphRun,
        trigger: str,
        job_id: str | None,
    ) -> None:
        self.execution_id = execution_id
        self.targets = targets
        self.runs = runs
        self.graph = graph
        self.trigger = trigger
        self.job_id = job_id
        self.started_at = time.time()
        self.start_perf = time.perf_counter()
        self.finished_at: float | None = None
        self.status = TaskStatus.RUNNING
        self.lock = threading.Lock()
        self.inbox: list[_Op] = []
        self.draining = False
        self.cancel_requested = False
        self.first_error: tuple[str, BaseException] | None = None
        self.done = threading.Event()


class TaskManager:
    """Registers tasks with dependencies and runs them as graphs on a thread pool.

    Args:
        thread_pool: The pool to run tasks on.  If None, the manager creates a
            :class:`ThreadPoolManager` (with *resource_monitor*), starts it in
            :meth:`start` and stops it in :meth:`stop`; a pool passed in is left
            for its owner to start and stop.
        resource_monitor: Passed to the pool the manager creates.
        history: Where task runs are recorded: a :class:`TaskHistory` (left
            open at :meth:`stop`), or a database path or ``":memory:"`` for a
            history the manager owns and closes.
        keep_executions: How many finished executions are kept in memory (with
            their results); older ones are answered from the history.
        clock: The scheduler's time source (tests pass a ManualClock).

    Raises:
        HistoryError: *history* is a path that cannot be used (see TaskHistory).
        ValueError: *keep_executions* is negative.
    """

    def __init__(
        self,
        thread_pool: ThreadPoolManager | None = None,
        resource_monitor: ResourceMonitor | None = None,
        history: TaskHistory | str | os.PathLike[str] = ":memory:",
        *,
        keep_executions: int = 100,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(keep_executions, bool) or not isinstance(keep_executions, int):
            raise TypeError(f"keep_executions must be an int, not {keep_executions!r}")
        if keep_executions < 0:
            raise ValueError(f"keep_executions must be >= 0, not {keep_executions}")
        self._owns_pool = thread_pool is None
        self._pool = (
            ThreadPoolManager(resource_monitor=resource_monitor)
            if thread_pool is None
            else thread_pool
        )
        # Last: it starts the writer thread, and everything above may raise.
        self._owns_history = not isinstance(history, TaskHistory)
        self._history = TaskHistory(history) if not isinstance(history, TaskHistory) else history
        self._keep_executions = keep_executions
        # _lock guards the registry, the graph, the execution tables and the state.
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskInfo] = {}
        self._ids_by_name: dict[str, str] = {}
        self._graph = DependencyGraph(describe=self._describe)
        self._last_status: dict[str, TaskStatus] = {}
        self._active: dict[str, _Execution] = {}
        self._finished: OrderedDict[str, _Execution] = OrderedDict()
        self._state = "new"
        self._scheduler: Scheduler | None = None
        self._clock = clock
        # Ids are unique across managers sharing a history file (a random
        # prefix) and cheap to make (a counter): registering 100,000 tasks is
        # a normal thing to do.
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start the manager (and the pool it owns, and the scheduler).

        Calling it again while running does nothing.

        Raises:
            RuntimeError: The manager was stopped; a stopped manager stays stopped.
        """
        with self._lock:
            if self._state == "running":
                return
            if self._state != "new":
                raise RuntimeError("a stopped TaskManager cannot be started again")
            if self._owns_pool:
                self._pool.start()
            self._state = "running"
            for task in self._tasks.values():
                try:
                    self._sync_schedule(None, task)
                except ValueError as exc:
                    # A one-off time that passed before start(): reported, not fatal.
                    logger.error("task %r is not scheduled: %s", task.name, exc)

    def stop(self, wait_for_tasks: bool = True, timeout: float | None = None) -> None:
        """Stop the scheduler, finish or cancel executions, and release what it owns.

        New executions are refused from the first moment.  With
        *wait_for_tasks*, executions in flight run to their end; without it they
        are cancelled (what has not started never starts; running tasks are
        asked to stop cooperatively) and their ends are awaited.  If *timeout*
        expires first, whatever is still in flight is cancelled and not awaited:
        its late records are counted as dropped by the history.

        Args:
            wait_for_tasks: Let executions in flight finish (True) or cancel them.
            timeout: Seconds to wait in all; None waits as long as it takes.
        """
        with self._lock:
            if self._state in ("stopping", "stopped"):
                return
            self._state = "stopping"
            scheduler = self._scheduler
        deadline = None if timeout is None else time.monotonic() + timeout
        if scheduler is not None:
            scheduler.stop()
        if not wait_for_tasks:
            self._cancel_all()
        if not self._wait_all(deadline):
            self._cancel_all()
            logger.warning("TaskManager.stop: executions still running after %s s", timeout)
        if self._owns_pool:
            self._pool.stop(wait_for_tasks=True, timeout=_remaining(deadline))
        if self._owns_history:
            self._history.close(timeout=_remaining(deadline))
        with self._lock:
            self._state = "stopped"

    def __enter__(self) -> TaskManager:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _cancel_all(self) -> None:
        with self._lock:
            executions = list(self._active.values())
        for execution in executions:
            self._request_cancel(execution, None)

    def _wait_all(self, deadline: float | None) -> bool:
        while True:
            with self._lock:
                pending = next(iter(self._active.values()), None)
            if pending is None:
                return True
            if not pending.done.wait(_remaining(deadline)):
                return False

    @property
    def history(self) -> TaskHistory:
        """The history this manager records to."""
        return self._history

    @property
    def thread_pool(self) -> ThreadPoolManager:
        """The pool this manager runs tasks on."""
        return self._pool

    @property
    def scheduler(self) -> Scheduler | None:
        """The scheduler firing this manager's schedules (None until one is needed)."""
        return self._scheduler

    def subscribe(
        self,
        callback: Callable[[tl_events.Event], object],
        kinds: Iterable[str | type[tl_events.Event]] | None = None,
    ) -> tl_events.Subscription:
        """Receive this manager's events (executions, runs, schedules) and its pool's;
        see :mod:`threadloom.events`."""
        return self._pool.subscribe(callback, kinds)

    # -- the registry ---------------------------------------------------------

    def register_task(
        self,
        name: str,
        func: Callable[..., Any],
        *args: Any,
        dependencies: Iterable[str] = (),
        priority: int = TaskPriority.NORMAL,
        max_retries: int = 0,
        retry_delay: float = 1.0,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        schedule: object = None,
        enabled: bool = True,
        description: str = "",
        tags: Iterable[str] = (),
        trigger_rule: TriggerRule | str = TriggerRule.ALL_SUCCESS,
        results_param: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Register a task; every execution calls ``func(*args, **kwargs)``.

        The keywords named below configure the task; every other keyword goes
        to *func* (to pass *func* a keyword of the same name as one of these,
        bind it with :func:`functools.partial`).

        Args:
            name: A name unique among registered tasks.
            func: The callable to run.
            *args: Positional arguments for *func*.
            dependencies: Ids (or names) of the tasks that must end first.
            priority: Queueing priority (a :class:`TaskPriority` or int; higher first).
            max_retries: Attempts after the first if *func* raises.
            retry_delay: Seconds between attempts.
            retry: A full :class:`RetryPolicy` (backoff, jitter, which
                exceptions), instead of *max_retries* and *retry_delay*.
            timeout: Seconds each run may take from being queued; then it
                ends TIMED_OUT (and is asked to stop, cooperatively).
            schedule: When to run the task on its own: anything
                :func:`threadloom.scheduling.parse_schedule` accepts (a cron
                expression, an interval, a time), or None.
            enabled: A disabled task is not scheduled, cannot be executed
                directly, and is SKIPPED when a task that depends on it runs.
            description: Free text.
            tags: Labels, recorded with each run in the history.
            trigger_rule: When the task runs given how its dependencies ended
                (see :class:`TriggerRule`).
            results_param: If given, *func* receives, as this keyword, a mapping
                of dependency name to result (dependencies that completed).  The
                same mapping is always available as
                ``threadloom.current_task().upstream_results``.
            **kwargs: Keyword arguments for *func*.

        Returns:
            The new task's id.

        Raises:
            TypeError: *func* is not callable, or an option has the wrong type.
            ValueError: *name* is empty or taken, an option is out of range,
                *retry* is given with *max_retries* or *retry_delay*, or
                *schedule* cannot be parsed (the scheduler's error).
            UnknownDependencyError: A dependency names no registered task.
        """
        if retry is not None and (max_retries != 0 or retry_delay != 1.0):
            raise ValueError(
                f"task {name!r}: pass either retry=RetryPolicy(...) or max_retries/retry_delay"
            )
        with self._lock:
            task_id = f"{self._id_prefix}-t{next(self._ids)}"
            task = self._build(
                task_id=task_id,
                name=name,
                func=func,
                args=args,
                kwargs=kwargs,
                dependencies=tuple(
                    dict.fromkeys(self._resolve_dependency(name, d) for d in dependencies)
                ),
                priority=priority,
                max_retries=max_retries,
                retry_delay=retry_delay,
                retry=retry,
                timeout=timeout,
                schedule_spec=schedule,
                enabled=enabled,
                description=description,
                tags=tags,
                trigger_rule=trigger_rule,
                results_param=results_param,
            )
            self._check_name_free(task.name, task_id)
            self._graph.add(task_id, task.dependencies)
            try:
                self._sync_schedule(None, task)
            except BaseException:
                self._graph.remove(task_id)
                raise
            self._tasks[task_id] = task
            self._ids_by_name[task.name] = task_id
        return task_id

    def update_task(self, task_id: str, **changes: Any) -> TaskInfo:
        """Change a registered task; executions already started keep the old one.

        Args:
            task_id: The task's id or name.
            **changes: New values for any of ``name, func, args, kwargs,
                dependencies, priority, max_retries, retry_delay, retry, timeout, schedule,
                enabled, description, tags, trigger_rule, results_param``.

        Returns:
            The updated task.

        Raises:
            UnknownTaskError: No such task.
            TypeError: An unknown field is named, or a value has the wrong type.
            ValueError: A value is out of range, or the new name is taken.
            UnknownDependencyError: A new dependency names no registered task.
            DependencyCycleError: The new dependencies would form a cycle (named
                in the error); nothing is changed.
        """
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise TypeError(f"update_task() cannot change {', '.join(sorted(unknown))}")
        with self._lock:
            old = self._tasks[self._resolve(task_id)]
            fields = {f.name: getattr(old, f.name) for f in dataclasses.fields(TaskInfo)}
            del fields["schedule"]
            if "retry" not in changes and ("max_retries" in changes or "retry_delay" in changes):
                fields["retry"] = None  # rebuilt from the new count and delay
            if "schedule" in changes:
                fields["schedule_spec"] = changes.pop("schedule")
            if "dependencies" in changes:
                name = changes.get("name", old.name)
                changes["dependencies"] = tuple(
                    dict.fromkeys(
                        self._resolve_dependency(name, d) for d in changes["dependencies"]
                    )
                )
            fields.update(changes)
            task = self._build(**fields)
            self._check_name_free(task.name, old.task_id)
            if task.dependencies != old.dependencies:
                # Raises on a cycle before anything is changed.
                self._graph.set_dependencies(old.task_id, task.dependencies)
            try:
                self._sync_schedule(old, task)
            except BaseException:
                self._graph.set_dependencies(old.task_id, old.dependencies)
                raise
            self._tasks[old.task_id] = task
            del self._ids_by_name[old.name]
            self._ids_by_name[task.name] = old.task_id
        return task

    def unregister_task(self, task_id: str) -> None:
        """Remove a task; executions already started still run it.

        Raises:
            UnknownTaskError: No such task.
            TaskDependencyError: Other tasks depend on it (they are named).
        """
        with self._lock:
            task = self._tasks[self._resolve(task_id)]
            self._graph.remove(task.task_id)
            del self._tasks[task.task_id]
            del self._ids_by_name[task.name]
            self._last_status.pop(task.task_id, None)
            self._sync_schedule(task, None)

    def list_tasks(self, *, tag: str | None = None) -> list[TaskInfo]:
        """Return the registered tasks (those with *tag*, if given), in registration order."""
        with self._lock:
            tasks = list(self._tasks.values())
        return tasks if tag is None else [t for t in tasks if tag in t.tags]

    def get_task(self, task_id: str) -> TaskInfo:
        """Return the task with this id or name.

        Raises:
            UnknownTaskError: No such task.
        """
        with self._lock:
            return self._tasks[self._resolve(task_id)]

    def _build(
        self,
        *,
        task_id: str,
        name: object,
        func: object,
        args: Iterable[Any],
        kwargs: Mapping[str, Any],
        dependencies: tuple[str, ...],
        priority: object,
        max_retries: object,
        retry_delay: object,
        retry: object,
        timeout: object,
        schedule_spec: object,
        enabled: object,
        description: object,
        tags: Iterable[str],
        trigger_rule: object,
        results_param: object,
    ) -> TaskInfo:
        if not isinstance(name, str) or not name:
            raise ValueError(f"task name must be a non-empty str, not {name!r}")
        if not callable(func):
            raise TypeError(f"func of task {name!r} must be callable, not {type(func).__name__}")
        if retry is not None:
            if not isinstance(retry, RetryPolicy):
                raise TypeError(f"retry of task {name!r} must be a RetryPolicy, not {retry!r}")
            max_retries, retry_delay = retry.max_retries, retry.delay
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout < float("inf")
        ):
            raise ValueError(
                f"timeout of task {name!r} must be seconds > 0 or None, not {timeout!r}"
            )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(
                f"max_retries of task {name!r} must be an int >= 0, not {max_retries!r}"
            )
        if (
            isinstance(retry_delay, bool)
            or not isinstance(retry_delay, (int, float))
            or not retry_delay >= 0
        ):
            raise ValueError(
                f"retry_delay of task {name!r} must be a number >= 0, not {retry_delay!r}"
            )
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled of task {name!r} must be a bool, not {enabled!r}")
        if not isinstance(description, str):
            raise TypeError(f"description of task {name!r} must be a str, not {description!r}")
        tag_tuple = (tags,) if isinstance(tags, str) else tuple(tags)
        for tag in tag_tuple:
            if not isinstance(tag, str):
                raise TypeError(f"tags of task {name!r} must be strs, not {tag!r}")
        try:
            rule = TriggerRule(trigger_rule)
        except ValueError:
            choices = ", ".join(r.value for r in TriggerRule)
            raise ValueError(
                f"unknown trigger_rule {trigger_rule!r} for task {name!r}; use one of {choices}"
            ) from None
        kwargs = dict(kwargs)
        if results_param is not None:
            if not isinstance(results_param, str) or not results_param.isidentifier():
                raise ValueError(
                    f"results_param of task {name!r} must be a keyword name, not {results_param!r}"
                )
            if results_param in kwargs:
                raise ValueError(
                    f"results_param {results_param!r} of task {name!r} is also given as a keyword"
                )
        return TaskInfo(
            task_id=task_id,
            name=name,
            func=func,
            args=tuple(args),
            kwargs=MappingProxyType(kwargs) if kwargs else _EMPTY,
            dependencies=dependencies,
            priority=check_priority(priority),
            max_retries=max_retries,
            retry_delay=float(retry_delay),
            retry=retry if retry is not None else _retry_policy(max_retries, float(retry_delay)),
            timeout=None if timeout is None else float(timeout),
            schedule_spec=schedule_spec,
            schedule=None if schedule_spec is None else parse_schedule(schedule_spec),
            enabled=enabled,
            description=description,
            tags=tag_tuple,
            trigger_rule=rule,
            results_param=results_param,
        )

    def _check_name_free(self, name: str, task_id: str) -> None:
        owner = self._ids_by_name.get(name)
        if owner is not None and owner != task_id:
            raise ValueError(f"a task named {name!r} is already registered (id {owner})")
        if name in self._tasks and name != task_id:
            raise ValueError(f"task name {name!r} is another task's id")

    def _resolve(self, ref: str) -> str:
        """Return the id of the task with id or name *ref* (call under _lock)."""
        if ref in self._tasks:
            return ref
        task_id = self._ids_by_name.get(ref)
        if task_id is None:
            raise UnknownTaskError(f"no task has id or name {ref!r}")
        return task_id

    def _resolve_dependency(self, name: str, ref: str) -> str:
        try:
            return self._resolve(ref)
        except UnknownTaskError:
            raise UnknownDependencyError(name, [ref]) from None

    def _describe(self, task_id: str) -> str:
        task = self._tasks.get(task_id)
        return task.name if task is not None else task_id

    # -- executing ------------------------------------------------------------

    def execute_task(self, task_id: str, wait: bool = False) -> str:
        """Run a task and everything it depends on; see :meth:`execute_tasks`.

        Returns:
            The execution's id.
        """
        return self._start_execution([task_id], "manual", None, wait)

    def execute_tasks(self, task_ids: Iterable[str], wait: bool = False) -> list[str]:
        """Run tasks and everything they depend on, as one execution.

        Each task of the union of their dependency closures runs once, after
        its dependencies, at its priority raised to that of the highest-priority
        task waiting on it.  Tasks that do not depend on each other run in
        parallel.

        Args:
            task_ids: Ids (or names) of the tasks to run.
            wait: Return only once every task has ended.

        Returns:
            A list holding the id of the one execution that runs them (a list,
            as the seed's API returns).

        Raises:
            UnknownTaskError: A task is not registered.
            ValueError: *task_ids* is empty, or names a disabled task.
            RuntimeError: The manager is not running.
        """
        return [self._start_execution(list(task_ids), "manual", None, wait)]

    def _start_execution(
        self, refs: list[str], trigger: str, job_id: str | None, wait: bool
    ) -> str:
        if not refs:
            raise ValueError("no tasks to execute")
        with self._lock:
            if self._state != "running":
                raise RuntimeError(f"TaskManager is {self._state}; call start() first")
            targets = tuple(dict.fromkeys(self._resolve(r) for r in refs))
            disabled = [self._tasks[t].name for t in targets if not self._tasks[t].enabled]
            if disabled:
                raise ValueError(f"task(s) {', '.join(map(repr, disabled))} are disabled")
            # Planned under the lock (linear in the closure's size) so that the
            # graph cannot change under it, and registered under the lock that
            # checked the state, so that stop() sees it.
            order = closure_in_order(self._graph.dependency_map, targets)
            execution = self._plan(
                f"{self._id_prefix}-e{next(self._ids)}",
                targets,
                order,
                [self._tasks[t] for t in order],
                trigger,
                job_id,
            )
            # _Start is queued, and the drain claimed, before anyone can find
            # the execution: a cancel that arrives meanwhile is applied after
            # the start, never before it (the start would undo it).
            execution.inbox.append(_Start())
            execution.draining = True
            self._active[execution.execution_id] = execution
        self._history.record_execution(_execution_record(execution))
        if self._pool.events.active:
            self._pool.events.emit(
                tl_events.execution_started(
                    execution.execution_id, targets, execution.runs, trigger
                )
            )
        self._drain(execution)
        if wait:
            execution.done.wait()
        return execution.execution_id

    def _plan(
        self,
        execution_id: str,
        targets: tuple[str, ...],
        order: list[str],
        tasks: list[TaskInfo],
        trigger: str,
        job_id: str | None,
    ) -> _Execution:
        dependencies = {task.task_id: task.dependencies for task in tasks}
        priorities = inherit_priorities(
            order, dependencies, {task.task_id: task.priority for task in tasks}
        )
        graph = GraphRun(order, dependencies, {task.task_id: task.trigger_rule for task in tasks})
        runs = {task.task_id: _Run(task, priorities[task.task_id]) for task in tasks}
        return _Execution(execution_id, targets, runs, graph, trigger, job_id)

    # -- the drainer (see the module docstring) ---------------------------------

    def _post(self, execution: _Execution, op: _Op) -> None:
        with execution.lock:
            execution.inbox.append(op)
            if execution.draining:
                return
            execution.draining = True
        self._drain(execution)

    def _drain(self, execution: _Execution) -> None:
        while True:
            launch: list[_Run] = []
            cancel: list[str] = []
            with execution.lock:
                ops, execution.inbox = execution.inbox, []
                if not ops:
                    # Cleared under the lock that _post appends under: an op
                    # posted after this finds draining False and drains itself.
                    execution.draining = False
                    finished = execution.graph.done and execution.status is TaskStatus.RUNNING
                    if finished:
                        execution.status = self._final_status(execution)
                        execution.finished_at = time.time()
                    break
                for op in ops:
                    self._apply(execution, op, launch, cancel)
            for pool_id in cancel:
                self._cancel_in_pool(pool_id)
            for run in launch:
                self._launch(execution, run)
        if finished:
            self._finish_execution(execution)

    def _apply(self, execution: _Execution, op: _Op, launch: list[_Run], cancel: list[str]) -> None:
        """Apply one op to the execution's graph (under execution.lock)."""
        runs = execution.runs
        graph = execution.graph
        if isinstance(op, _Finish):
            self._end_run(execution, op.run, op.status)
            ready, decided = graph.finish(op.run.task.task_id, op.status)
        elif isinstance(op, _Start):
            ready, decided = graph.start(), []
        else:
            if op.task_ids is None:
                execution.cancel_requested = True
            cancelled, ready, decided = graph.cancel(op.task_ids)
            for task_id in cancelled:
                self._end_run(execution, runs[task_id], TaskStatus.CANCELLED)
            targets = runs if op.task_ids is None else op.task_ids
            for task_id in targets:
                run = runs[task_id]
                if run.status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
                    run.cancel_requested = True
                    if run.pool_id is not None:
                        cancel.append(run.pool_id)
        for task_id, status in decided:
            self._end_run(execution, runs[task_id], status)
        for task_id in ready:
            run = runs[task_id]
            run.status = TaskStatus.QUEUED
            run.queued_at = time.time()
            launch.append(run)

    def _launch(self, execution: _Execution, run: _Run) -> None:
        """Submit *run* to the pool (drainer only, no lock held)."""
        task = run.task
        if execution.cancel_requested or run.cancel_requested:
            self._post(execution, _Finish(run, TaskStatus.CANCELLED))
            return
        if not task.enabled:
            self._post(execution, _Finish(run, TaskStatus.SKIPPED))
            return
        if task.dependencies:
            runs = execution.runs
            # Dependencies' results were set before their _Finish ops were applied.
            run.upstream_results = MappingProxyType(
                {
                    runs[dep].task.name: runs[dep].result
                    for dep in task.dependencies
                    if runs[dep].status is TaskStatus.COMPLETED
                }
            )
        try:
            future = self._pool.submit_future(
                self._call,
                args=(run,),
                priority=run.priority,
                retry=task.retry,
                timeout=task.timeout,
                name=task.name,
            )
            pool_id = future.task_id
        except Exception as exc:
            # The pool refused the task (it is stopping, or full): the run fails,
            # and its dependents are judged as after any failure.
            run.error = exc
            self._post(execution, _Finish(run, TaskStatus.FAILED))
            return
        with execution.lock:
            run.pool_id = pool_id
            cancel_now = execution.cancel_requested or run.cancel_requested
        if cancel_now:
            # A cancel applied between the check above and pool_id being set
            # found no pool id to cancel; it is this thread's job.
            self._cancel_in_pool(pool_id)
        future.add_done_callback(functools.partial(self._on_done, execution, run))

    def _cancel_in_pool(self, pool_id: str) -> None:
        try:
            self._pool.cancel_task(pool_id)
        except Exception:
            # The task ended and the pool forgot it before its end was applied
            # here: there is nothing left to cancel, and its end is on its way.
            logger.debug("pool task %s was gone when cancelled", pool_id, exc_info=True)

    @staticmethod
    def _call(run: _Run) -> Any:
        """Run one attempt of *run* on a worker."""
        with run.status_lock:
            if run.status.is_terminal:
                # The deadline (or a cancel) ended the run between the pool
                # starting this attempt and now: its outcome is already decided.
                return None
            run.attempts += 1
            if run.started_at is None:
                run.started_at = time.time()
                run.start_perf = time.perf_counter()
                run.status = TaskStatus.RUNNING
        current_task().upstream_results = run.upstream_results
        task = run.task
        if task.results_param is None:
            return task.func(*task.args, **task.kwargs)
        return task.func(*task.args, **task.kwargs, **{task.results_param: run.upstream_results})

    def _on_done(self, execution: _Execution, run: _Run, future: Future[Any]) -> None:
        """The pool future of *run* resolved (after its last attempt)."""
        if future.cancelled():
            status = TaskStatus.CANCELLED
        else:
            error = future.exception()
            if error is None:
                run.result = future.result()
                status = TaskStatus.COMPLETED
            else:
                run.error = error
                # The pool's own verdict tells a deadline (TIMED_OUT) from a
                # task that raised TimeoutError itself (FAILED).
                status = getattr(future, "status", TaskStatus.FAILED)
                if not isinstance(status, TaskStatus) or not status.is_terminal:
                    status = TaskStatus.FAILED
        self._post(execution, _Finish(run, status))

    def _end_run(self, execution: _Execution, run: _Run, status: TaskStatus) -> None:
        """Record *run*'s end (under execution.lock)."""
        task = run.task
        with run.status_lock:
            run.status = status
        run.finished_at = time.time()
        # Needed only while it runs; kept, it would hold every upstream result
        # alive as long as the execution is remembered.
        run.upstream_results = _EMPTY
        if run.started_at is not None:
            run.duration = time.perf_counter() - run.start_perf
        self._last_status[task.task_id] = status
        error = run.error
        if error is not None and execution.first_error is None:
            execution.first_error = (task.name, error)
        self._history.record_run(
            TaskRunRecord(
                f"{execution.execution_id}:{task.task_id}",
                execution.execution_id,
                task.task_id,
                task.name,
                status,
                run.attempts,
                run.queued_at,
                run.started_at,
                run.finished_at,
                run.duration,
                None if error is None else type(error).__qualname__,
                None if error is None else str(error),
                task.tags,
            )
        )
        if self._pool.events.active:
            self._pool.events.emit(
                tl_events.task_finished(
                    task.task_id,
                    task.name,
                    run.priority,
                    status,
                    run.attempts,
                    run.queued_at,
                    run.started_at,
                    run.finished_at,
                    error,
                    execution.execution_id,
                )
            )

    @staticmethod
    def _final_status(execution: _Execution) -> TaskStatus:
        statuses = {run.status for run in execution.runs.values()}
        if execution.cancel_requested and TaskStatus.CANCELLED in statuses:
            return TaskStatus.CANCELLED
        if statuses <= {TaskStatus.COMPLETED, TaskStatus.SKIPPED}:
            return TaskStatus.COMPLETED
        return TaskStatus.FAILED

    def _finish_execution(self, execution: _Execution) -> None:
        # Every run's record was queued before this one: a reader who waited for
        # the execution finds all of them.
        self._history.record_execution(_execution_record(execution))
        if self._pool.events.active:
            self._pool.events.emit(
                tl_events.execution_finished(
                    execution.execution_id,
                    execution.status,
                    execution.started_at,
                    execution.finished_at,
                    execution.first_error,
                )
            )
        with self._lock:
            self._active.pop(execution.execution_id, None)
            if self._keep_executions:
                self._finished[execution.execution_id] = execution
                while len(self._finished) > self._keep_executions:
                    self._finished.popitem(last=False)
            scheduler = self._scheduler
        execution.done.set()
        if execution.job_id is not None and scheduler is not None:
            try:
                scheduler.run_finished(execution.job_id)
            except Exception:
                logger.exception("scheduler.run_finished(%r) failed", execution.job_id)

    # -- cancelling -------------------------------------------------------------

    def cancel_execution(self, execution_id: str) -> bool:
        """Cancel an execution.

        Tasks that have not started never start (they end CANCELLED); running
        tasks are asked to stop (``threadloom.current_task().cancelled``) and
        end CANCELLED if they do, or as they end otherwise.

        Returns:
            True if the execution was running and is now cancelled; False if
            it had already ended or been cancelled.

        Raises:
            UnknownExecutionError: No such execution.
        """
        execution = self._find_active(execution_id)
        if execution is None:
            return False
        return self._request_cancel(execution, None)

    def cancel_task(self, task_id: str) -> bool:
        """Cancel a task's runs in every execution in flight.

        A run that has not started ends CANCELLED and its dependents are judged
        by their trigger rules (by default they end UPSTREAM_FAILED); a running
        one is asked to stop cooperatively.

        Returns:
            True if the task had a run in flight to cancel.

        Raises:
            UnknownTaskError: No such task.
        """
        with self._lock:
            task_id = self._resolve(task_id)
            executions = list(self._active.values())
        found = False
        for execution in executions:
            run = execution.runs.get(task_id)
            if run is not None and not run.status.is_terminal:
                found = self._request_cancel(execution, frozenset({task_id})) or found
        return found

    def _request_cancel(self, execution: _Execution, task_ids: frozenset[str] | None) -> bool:
        with execution.lock:
            if execution.status is not TaskStatus.RUNNING or execution.cancel_requested:
                return False
            if task_ids is None:
                # Set now, not when the op is applied, so that the drainer's
                # launches stop at once (see _launch).
                execution.cancel_requested = True
        self._post(execution, _Cancel(task_ids))
        return True

    # -- waiting and status -----------------------------------------------------

    def wait_for_execution(self, execution_id: str, timeout: float | None = None) -> bool:
        """Wait until every task of an execution has ended (after all retries).

        Args:
            execution_id: The execution.
            timeout: Seconds to wait at most; None waits as long as it takes.

        Returns:
            True if the execution has ended, False if *timeout* expired first.

        Raises:
            UnknownExecutionError: No such execution.
        """
        execution = self._find_active(execution_id)
        if execution is None:
            return True
        return execution.done.wait(timeout)

    def get_execution_status(self, execution_id: str) -> ExecutionInfo:
        """Return a snapshot of an execution (from the history if no longer in memory).

        Raises:
            UnknownExecutionError: No such execution.
        """
        with self._lock:
            execution = self._active.get(execution_id) or self._finished.get(execution_id)
        if execution is None:
            return self._execution_from_history(execution_id)
        with execution.lock:
            tasks = {task_id: self._run_info(run) for task_id, run in execution.runs.items()}
            status = execution.status
        return ExecutionInfo(
            execution_id=execution.execution_id,
            status=status,
            targets=execution.targets,
            trigger=execution.trigger,
            started_at=execution.started_at,
            finished_at=execution.finished_at,
            tasks=MappingProxyType(tasks),
            results=MappingProxyType(
                {
                    run.task.name: run.result
                    for run in execution.runs.values()
                    if tasks[run.task.task_id].status is TaskStatus.COMPLETED
                }
            ),
        )

    def get_task_status(self, task_id: str) -> TaskStatus:
        """Return the status of a task's latest run.

        A task in flight reports its live status (QUEUED, RUNNING, RETRYING...);
        otherwise the status its last run ended in, or PENDING if it never ran.

        Raises:
            UnknownTaskError: No such task.
        """
        with self._lock:
            task_id = self._resolve(task_id)
            executions = list(self._active.values())
            last = self._last_status.get(task_id, TaskStatus.PENDING)
        for execution in reversed(executions):
            run = execution.runs.get(task_id)
            if (
                run is not None
                and not run.status.is_terminal
                and run.status is not TaskStatus.PENDING
            ):
                return self._live_status(run)
        for execution in reversed(executions):
            run = execution.runs.get(task_id)
            if run is not None and not run.status.is_terminal:
                return run.status
        return last

    def get_task_history(
        self,
        task_id: str | None = None,
        limit: int | None = 100,
        *,
        status: TaskStatus | str | Iterable[TaskStatus | str] | None = None,
        since: float | None = None,
        until: float | None = None,
        execution_id: str | None = None,
        offset: int = 0,
    ) -> list[TaskRunRecord]:
        """Return recorded task runs, newest first (see :meth:`TaskHistory.query_runs`).

        Args:
            task_id: Only runs of this task (id or name; a task no longer
                registered can be given by id).
            limit: The most records to return (None: all).
            status: Only runs that ended in this status (or these statuses).
            since: Only runs that finished at or after this time (epoch seconds).
            until: Only runs that finished before this time.
            execution_id: Only runs of this execution.
            offset: Records to skip first, for paging.

        Returns:
            The runs, newest first.  Every run that ended before the call is included.
        """
        if task_id is not None:
            with self._lock:
                if task_id not in self._tasks and task_id in self._ids_by_name:
                    task_id = self._ids_by_name[task_id]
        return self._history.query_runs(
            task_id=task_id,
            execution_id=execution_id,
            status=status,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    def _find_active(self, execution_id: str) -> _Execution | None:
        """Return the execution if in flight, None if it has ended; raise if unknown."""
        with self._lock:
            execution = self._active.get(execution_id)
            known = execution is not None or execution_id in self._finished
        if execution is not None:
            return execution
        if not known and not self._history.query_executions(execution_id=execution_id):
            raise UnknownExecutionError(f"no execution has id {execution_id!r}")
        return None

    def _live_status(self, run: _Run) -> TaskStatus:
        pool_id = run.pool_id
        if pool_id is not None and not run.status.is_terminal:
            try:
                live = self._pool.get_task_status(pool_id)
            except Exception:
                return run.status
            if not live.is_terminal:
                return live
        return run.status

    def _run_info(self, run: _Run) -> TaskRunInfo:
        return TaskRunInfo(
            run.task.task_id,
            run.task.name,
            run.status,
            run.priority,
            run.attempts,
            run.queued_at,
            run.started_at,
            run.finished_at,
            run.duration,
            run.error,
        )

    def _execution_from_history(self, execution_id: str) -> ExecutionInfo:
        records = self._history.query_executions(execution_id=execution_id)
        if not records:
            raise UnknownExecutionError(f"no execution has id {execution_id!r}")
        (record,) = records
        runs = self._history.query_runs(execution_id=execution_id, limit=None)
        return ExecutionInfo(
            execution_id=execution_id,
            status=record.status,
            targets=record.targets,
            trigger=record.trigger,
            started_at=record.started_at,
            finished_at=record.finished_at,
            tasks=MappingProxyType(
                {
                    r.task_id: TaskRunInfo(
                        r.task_id,
                        r.task_name,
                        r.status,
                        0,
                        r.attempts,
                        r.queued_at,
                        r.started_at,
                        r.finished_at,
                        r.duration,
                        None,
                    )
                    for r in runs
                }
            ),
            results=_EMPTY,
        )

    # -- scheduling -------------------------------------------------------------

    def _sync_schedule(self, old: TaskInfo | None, new: TaskInfo | None) -> None:
        """Make the scheduler fire *new* instead of *old* (under _lock).

        Raises:
            ValueError: *new*'s schedule never fires from now on.
        """
        old_on = old is not None and old.schedule is not None and old.enabled
        new_schedule = None if new is None or not new.enabled else new.schedule
        if self._state != "running" or not (old_on or new_schedule is not None):
            return
        if self._scheduler is None:
            # Made on first need; the scheduler never calls back under its own
            # lock, so calling it under ours cannot deadlock.
            self._scheduler = Scheduler(
                self._on_schedule_due,
                self._clock,
                on_missed=self._on_schedule_missed,
                events=self._pool.events,
            )
            self._scheduler.start()
        if new is not None and new_schedule is not None:
            self._scheduler.add(new.task_id, new_schedule, replace=old_on)
        elif old is not None:
            self._scheduler.remove(old.task_id)

    def _on_schedule_due(self, job_id: str, due: datetime) -> None:
        """The scheduler's submit callback: start an execution of task *job_id*.

        Runs on the scheduler thread, so it only starts the execution; the
        tasks run on the pool, and their failures never reach the scheduler.
        An execution that cannot start raises, so that the scheduler records
        the run as missed and does not count it as in progress.
        """
        self._start_execution([job_id], "schedule", job_id, wait=False)

    def _on_schedule_missed(self, job_id: str, due: datetime, reason: MissReason) -> None:
        logger.warning(
            "scheduled run of task %r due %s was not run: %s", self._describe(job_id), due, reason
        )


@functools.lru_cache(maxsize=256)
def _retry_policy(max_retries: int, delay: float) -> RetryPolicy:
    # Shared: the seed's two retry knobs take few distinct values across tasks,
    # and a policy per registered task is memory the garbage collector scans.
    return RetryPolicy(max_retries=max_retries, delay=delay, backoff=1.0)


def _execution_record(execution: _Execution) -> ExecutionRecord:
    finished = execution.finished_at
    error = execution.first_error
    return ExecutionRecord(
        execution.execution_id,
        execution.targets,
        execution.status,
        execution.trigger,
        len(execution.runs),
        execution.started_at,
        finished,
        None if finished is None else time.perf_counter() - execution.start_perf,
        None if error is None else type(error[1]).__qualname__,
        None if error is None else f"task {error[0]!r}: {error[1]}",
    )


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
