"""TaskManager: named tasks with dependencies, run as graphs on a thread pool.

A task is registered once (a function, its arguments, what it depends on, its
priority, retries, trigger rule, schedule) and executed any number of times.
An *execution* runs the requested tasks together with everything they depend
on, each task once, in dependency order; independent branches run in parallel
on the pool.  Every task run and every execution is recorded in a
:class:`~threadloom.history.TaskHistory` (SQLite).

How an execution moves: the graph's bookkeeping is the core's
(``GraphRunner``, a few flat arrays per execution).  The worker that ends a
node's task updates its dependents' counters and queues the ones that became
ready, at their inherited priority, at once; a node whose trigger rule cannot
be met any more is decided there too (SKIPPED / UPSTREAM_FAILED), without
running.  This module keeps the policy around it: the registry, what an
execution runs, when it is recorded in the history, and what the scheduler
starts.  The records it returns are in :mod:`.records`, the checks that build
a task's record in :mod:`.build`, and an execution's state, its snapshot and
its history rows in :mod:`.execution`.

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
from collections.abc import Callable, Iterable
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from .. import events as tl_events
from .._errors import UnknownExecutionError, UnknownTaskError
from .._types import TaskPriority, TaskStatus
from ..core import core
from ..history import TaskHistory, TaskRunRecord, tags_json
from ..pool import ThreadPoolManager
from ..retry import RetryPolicy
from ..scheduling import MissReason, Scheduler
from .build import PLAIN_TASK_OPTIONS, UPDATABLE, build_task
from .dag import (
    DependencyCycleError,
    DependencyGraph,
    TaskDependencyError,
    TriggerRule,
    UnknownDependencyError,
)
from .execution import (
    Execution,
    describe_error,
    execution_from_history,
    execution_record,
)
from .records import (
    EMPTY,
    TASK_INFO_SLOTS,
    ExecutionInfo,
    RegisteredTask,
    TaskInfo,
    TaskRunInfo,
)

if TYPE_CHECKING:
    from ..monitor import ResourceMonitor
    from ..profiling import Profiler
    from ..scheduling.clock import Clock

__all__ = [
    "DependencyCycleError",
    "ExecutionInfo",
    "RegisteredTask",
    "TaskDependencyError",
    "TaskInfo",
    "TaskManager",
    "TaskRunInfo",
    "TriggerRule",
    "UnknownDependencyError",
    "UnknownExecutionError",
    "UnknownTaskError",
]

logger = logging.getLogger("threadloom.task_manager")


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
        cluster: Run the graphs on a Dask cluster instead of the pool:
            ``"local:N"`` (N worker processes started for the manager),
            ``"tcp://HOST:PORT"`` (an existing scheduler), or a
            :class:`threadloom.distributed.DaskBackend` (started here, left
            open for its owner); see
            :mod:`threadloom.distributed`.  History, schedules and events stay
            here.  Connecting happens in :meth:`start`.
        profile: Passed to the pool the manager creates (True or a
            ``Profiler``); for a pool passed in, give it to that pool instead.

    Raises:
        HistoryError: *history* is a path that cannot be used (see TaskHistory).
        ValueError: *keep_executions* is negative, or *profile* with a pool
            passed in.
    """

    def __init__(
        self,
        thread_pool: ThreadPoolManager | None = None,
        resource_monitor: ResourceMonitor | None = None,
        history: TaskHistory | str | os.PathLike[str] = ":memory:",
        *,
        keep_executions: int = 100,
        clock: Clock | None = None,
        cluster: Any = None,
        profile: bool | Profiler = False,
    ) -> None:
        if profile is not False and thread_pool is not None:
            raise ValueError(
                "profile= applies to the pool the TaskManager creates: pass it to "
                "the ThreadPoolManager you give (ThreadPoolManager(profile=True))"
            )
        if isinstance(keep_executions, bool) or not isinstance(keep_executions, int):
            raise TypeError(f"keep_executions must be an int, not {keep_executions!r}")
        if keep_executions < 0:
            raise ValueError(f"keep_executions must be >= 0, not {keep_executions}")
        self._owns_pool = thread_pool is None
        self._pool = (
            ThreadPoolManager(resource_monitor=resource_monitor, profile=profile)
            if thread_pool is None
            else thread_pool
        )
        # Where graphs run: the pool (None), or a cluster backend.
        self._backend: Any = None
        self._owns_backend = False
        if cluster is not None:
            from ..distributed import DaskBackend

            self._owns_backend = not isinstance(cluster, DaskBackend)
            self._backend = cluster if not self._owns_backend else DaskBackend(cluster)
        # Last: it starts the writer thread, and everything above may raise.
        self._owns_history = not isinstance(history, TaskHistory)
        self._history = TaskHistory(history) if not isinstance(history, TaskHistory) else history
        self._keep_executions = keep_executions
        # _lock guards the registry, the graph, the execution tables and the state.
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskInfo] = {}
        self._ids_by_name: dict[str, str] = {}
        self._graph = DependencyGraph(describe=self._describe)
        self._dependency_map = self._graph.dependency_map  # the live dict, read hot
        self._last_status: dict[str, TaskStatus] = {}
        self._active: dict[str, Execution] = {}
        self._finished: OrderedDict[str, Execution] = OrderedDict()
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
            if self._backend is not None:
                self._backend.start()
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
        if self._owns_backend:
            self._backend.close()
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
            execution.runner.cancel(None)

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
    def profiler(self) -> Profiler | None:
        """The pool's profiler, or None when it does not profile."""
        return self._pool.profiler

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
        priority: int | str = TaskPriority.NORMAL,
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
            priority: Queueing priority (an int, higher first, or a
                :class:`TaskPriority` name in any case: ``"high"``).
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
        if type(dependencies) is not list and type(dependencies) is not tuple:
            dependencies = tuple(dependencies)  # read twice if the fast path declines
        with self._lock:
            task_id = f"{self._id_prefix}-t{next(self._ids)}"
            tasks, by_name = self._tasks, self._ids_by_name
            if (
                priority is TaskPriority.NORMAL
                and max_retries == 0
                and retry_delay == 1.0
                and retry is None
                and timeout is None
                and schedule is None
                and enabled is True
                and description == ""
                and tags == ()
                and trigger_rule is TriggerRule.ALL_SUCCESS
                and results_param is None
                and core.add_plain_task(
                    tasks,
                    by_name,
                    self._dependency_map,
                    task_id,
                    name,
                    func,
                    args,
                    MappingProxyType(kwargs) if kwargs else EMPTY,
                    dependencies,
                    TaskInfo,
                    TASK_INFO_SLOTS,
                    PLAIN_TASK_OPTIONS,
                )
                is not None
            ):
                # The common registration, in one step of the core: nothing
                # to check but what it checks (it leaves anything unusual,
                # errors included, to the general path below).
                return task_id
            resolved = []
            for ref in dependencies:
                dep = ref if ref in tasks else by_name.get(ref)
                if dep is None:
                    raise UnknownDependencyError(name if isinstance(name, str) else "?", [ref])
                resolved.append(dep)
            deps = tuple(dict.fromkeys(resolved))
            task = build_task(
                task_id=task_id,
                name=name,
                func=func,
                args=args,
                kwargs=kwargs,
                dependencies=deps,
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

    def update_task(self, task_id: str, **changes: Any) -> RegisteredTask:
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
        unknown = set(changes) - UPDATABLE
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
            task = build_task(**fields)
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

    def list_tasks(self, *, tag: str | None = None) -> list[RegisteredTask]:
        """Return the registered tasks (those with *tag*, if given), in registration order."""
        with self._lock:
            tasks = list(self._tasks.values())
        return tasks if tag is None else [t for t in tasks if tag in t.tags]

    def get_task(self, task_id: str) -> RegisteredTask:
        """Return the task with this id or name.

        Raises:
            UnknownTaskError: No such task.
        """
        with self._lock:
            return self._tasks[self._resolve(task_id)]

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
            raise UnknownTaskError(ref, f"no task has id or name {ref!r}")
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
            A one-element list: the id of the execution that runs them all.

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
            order = core.closure_order(self._graph.dependency_map, targets)
            tasks = self._tasks
            engine = self._pool if self._backend is None else self._backend
            runner = engine.graph_runner([tasks[t] for t in order])
            execution = Execution(
                f"{self._id_prefix}-e{next(self._ids)}", targets, runner, trigger, job_id
            )
            runner.on_nodes_end = functools.partial(self._nodes_ended, execution)
            runner.on_finished = functools.partial(self._execution_ended, execution)
            self._active[execution.execution_id] = execution
        self._record(self._history.record_execution, execution_record(execution))
        events = self._pool.events
        if events.active:
            events.emit(
                tl_events.execution_started(execution.execution_id, targets, order, trigger)
            )
        # A cancel that reaches the execution before this start ends its nodes
        # at once; the start then launches nothing and finishes the execution.
        runner.start()
        if wait:
            execution.done.wait()
        return execution.execution_id

    def _nodes_ended(self, execution: Execution, runner: Any, ended: list[int]) -> None:
        """Record nodes' ends (the runner reports each node once, in batches, on any thread)."""
        execution_id = execution.execution_id
        # The rows and the statuses are made in the core: this runs on the
        # workers' path, once per node.
        rows = runner.run_rows(ended, execution_id, self._last_status, describe_error, tags_json)
        if execution.first_error is None:
            for position, row in enumerate(rows):
                if row[10] is not None:  # error_type: the first failure of the batch
                    execution.first_error = (row[3], runner.error(ended[position]))
                    break
        events = self._pool.events
        if events.active:
            for i in ended:
                task: TaskInfo = runner.task(i)
                status, priority, attempts, queued, started, finished, _, error = (
                    runner.node_record(i)
                )
                events.emit(
                    tl_events.task_finished(
                        task.task_id,
                        task.name,
                        priority,
                        status,
                        attempts,
                        queued,
                        started,
                        finished,
                        error,
                        execution_id,
                    )
                )
        # The history waits (bounded) while its file is locked, then refuses;
        # a refusal is the history's to report, never the execution's end.
        try:
            self._history.record_run_rows(rows)
        except Exception:
            logger.exception("history records of execution %s were not accepted", execution_id)

    def _record(self, write: Callable[[Any], None], record: Any) -> None:
        # The history waits (bounded) while its file is locked, then refuses;
        # a refusal is the history's to report, never the execution's end.
        try:
            write(record)
        except Exception:
            logger.exception("history record %s was not accepted", record[0])

    def _execution_ended(self, execution: Execution, runner: Any) -> None:
        """The last node ended (the runner calls it once)."""
        execution.status = execution.final_status()
        execution.finished_at = time.time()
        # Every node's record was queued before this one: a reader who waited
        # for the execution finds all of them.
        self._record(self._history.record_execution, execution_record(execution))
        events = self._pool.events
        if events.active:
            events.emit(
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
        return bool(execution.runner.cancel(None))

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
            i = execution.index_of(task_id)
            if i is not None and not execution.runner.node_state(i).is_terminal:
                found = bool(execution.runner.cancel([i])) or found
        return found

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
        """Another name of :meth:`get_execution`: it returns the same whole snapshot.

        Raises:
            UnknownExecutionError: No such execution.
        """
        return self.get_execution(execution_id)

    def get_execution(self, execution_id: str) -> ExecutionInfo:
        """Return a snapshot of an execution: its status, every task's run, the
        results and errors (from the history if no longer in memory).

        Raises:
            UnknownExecutionError: No such execution.
        """
        with self._lock:
            execution = self._active.get(execution_id) or self._finished.get(execution_id)
        if execution is None:
            return execution_from_history(self._history, execution_id)
        return execution.snapshot()

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
        pending = False
        for execution in reversed(executions):
            i = execution.index_of(task_id)
            if i is None:
                continue
            status: TaskStatus = execution.runner.node_state(i)
            if status is not TaskStatus.PENDING:
                return status  # live, or how its latest run ended
            pending = True
        return TaskStatus.PENDING if pending else last

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

    def _find_active(self, execution_id: str) -> Execution | None:
        """Return the execution if in flight, None if it has ended; raise if unknown."""
        with self._lock:
            execution = self._active.get(execution_id)
            known = execution is not None or execution_id in self._finished
        if execution is not None:
            return execution
        if not known and not self._history.query_executions(execution_id=execution_id):
            raise UnknownExecutionError(execution_id)
        return None

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


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
