"""One command's machinery (monitor, pool, task manager, history, dashboard,
profiler), its progress tracking, and the summary printed at the end."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._types import TaskStatus
from ..events import Event, ExecutionFinished, ExecutionStarted, TaskFinished
from .console import (
    TERMINAL_ORDER,
    Interrupts,
    UsageError,
    check_cluster,
    clean,
    iso,
    literal_text,
    logger,
    ms,
)
from .dashboard import serve_dashboard

if TYPE_CHECKING:
    from rich.console import Console

    from ..graph.manager import TaskManager
    from ..history import ExecutionRecord, TaskRunRecord
    from ..pool import ThreadPoolManager
    from ..workflow import TaskSpec, Workflow
    from .live import View

# --------------------------------------------------------------------------- progress tracking


class _Tracker:
    """Live counts per stage, fed by the task manager's events.

    Every execution and task run a TaskManager handles (manual and scheduled
    alike) is announced on its event stream, so subscribing sees all of them
    without polling.  Events arrive on the subscription's delivery thread;
    this tracker only updates counters under its own lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stage_of: dict[str, str] = {}
        self.closure_of: dict[str, tuple[str, ...]] = {}
        self.stage_total: Counter[str] = Counter()
        self.stage_status: dict[str, Counter[TaskStatus]] = {}
        self.active: dict[str, tuple[str, ...]] = {}
        self.finished: dict[str, TaskStatus] = {}
        self._unseen_finished: list[str] = []

    def set_tasks(
        self, stage_of: Mapping[str, str], closure_of: Mapping[str, Iterable[str]]
    ) -> None:
        with self._lock:
            self.stage_of = dict(stage_of)
            self.closure_of = {task: tuple(closure) for task, closure in closure_of.items()}
            for stage in dict.fromkeys(stage_of.values()):
                self.stage_status.setdefault(stage, Counter())

    def on_event(self, event: Event) -> None:
        """The subscriber: executions starting and ending, and their task runs ending."""
        if isinstance(event, ExecutionStarted):
            self._execution_started(event.execution_id, event.tasks)
        elif isinstance(event, ExecutionFinished):
            self._execution_finished(event.execution_id, TaskStatus(event.status))
        elif isinstance(event, TaskFinished) and event.execution_id is not None:
            self._run_finished(event.task_id, TaskStatus(event.status))

    def _execution_started(self, execution_id: str, tasks: Iterable[str]) -> None:
        with self._lock:
            if execution_id in self.active or execution_id in self.finished:
                return
            self.active[execution_id] = tuple(tasks)
            for task in self.active[execution_id]:
                self.stage_total[self.stage_of.get(task, "other")] += 1

    def _execution_finished(self, execution_id: str, status: TaskStatus) -> None:
        with self._lock:
            self.active.pop(execution_id, None)
            self.finished[execution_id] = status
            self._unseen_finished.append(execution_id)

    def _run_finished(self, task_id: str, status: TaskStatus) -> None:
        with self._lock:
            stage = self.stage_of.get(task_id, "other")
            self.stage_status.setdefault(stage, Counter())[status] += 1

    def active_executions(self) -> list[str]:
        """The executions started and not yet ended."""
        with self._lock:
            return list(self.active)

    def take_finished(self) -> list[str]:
        """Return the executions that ended since the last call, in the order they ended."""
        with self._lock:
            ended, self._unseen_finished = self._unseen_finished, []
        return ended

    def snapshot(self) -> tuple[dict[str, int], dict[str, Counter[TaskStatus]], int]:
        """Return (total per stage, statuses per stage, executions in flight)."""
        with self._lock:
            return (
                dict(self.stage_total),
                {stage: Counter(c) for stage, c in self.stage_status.items()},
                len(self.active),
            )


# --------------------------------------------------------------------------- the session


class Session:
    """One command's machinery: monitor, pool, task manager, history, live view."""

    def __init__(
        self,
        console: Console,
        *,
        db: str,
        workers: int,
        live: bool,
        dashboard: tuple[str, int] | None = None,
        token: str | None = None,
        cluster: str | None = None,
        profile: Any = False,
    ) -> None:
        if cluster is not None:
            check_cluster(cluster)
        from ..graph.manager import TaskManager
        from ..history import TaskHistory
        from ..monitor import ResourceMonitor
        from ..pool import ThreadPoolManager

        self.console = console
        self.db = db
        self.tracker = _Tracker()
        self.history = TaskHistory(db)
        self.monitor = ResourceMonitor(check_interval=1.0)
        self.pool: ThreadPoolManager = ThreadPoolManager(
            min_workers=min(2, workers),
            max_workers=workers,
            resource_monitor=self.monitor,
            adjust_interval=0.5,
            profile=profile,
        )
        self.manager: TaskManager = TaskManager(
            thread_pool=self.pool, history=self.history, cluster=cluster
        )
        self.cluster = cluster
        self.subscription = self.manager.subscribe(
            self.tracker.on_event, ("execution_started", "execution_finished", "task_finished")
        )
        self.dashboard_address = dashboard
        self.dashboard_token = token
        self.dashboard: Any = None
        self.ids: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self.stages: list[str] = []
        self.live = live
        self.abandoned: list[str] = []
        self.started_at = time.time()
        self.started_perf = time.perf_counter()
        self._stopped = False

    def start(self) -> None:
        if self.dashboard_address is not None:
            self.dashboard = serve_dashboard(
                self.console, self.manager, self.dashboard_address, self.dashboard_token
            )
        self.monitor.start()
        self.pool.start()
        try:
            self.manager.start()
        except ConnectionError as exc:
            # The cluster's scheduler did not answer (ClusterUnreachableError).
            raise UsageError(str(exc)) from None
        self.started_at = time.time()
        self.started_perf = time.perf_counter()

    def register(self, workflow: Workflow, *, schedules: bool) -> None:
        from ..workflow import register_workflow

        self.ids = register_workflow(workflow, self.manager, schedules=schedules)
        self.names = {task_id: name for name, task_id in self.ids.items()}
        stage_of = {self.ids[name]: _stage(spec) for name, spec in workflow.tasks.items()}
        self.stages = list(dict.fromkeys(stage_of.values()))
        closure_of = {
            self.ids[name]: [self.ids[n] for n in workflow.closure([name])]
            for name in workflow.tasks
        }
        self.tracker.set_tasks(stage_of, closure_of)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started_perf

    def stop(self, *, cancel: bool, timeout: float = 30.0) -> None:
        """Stop the manager (cancelling what is in flight if *cancel*), the pool and the monitor.

        Waits *timeout* seconds in all for running tasks; those still running
        then (a thread cannot be killed) are listed in :attr:`abandoned`.
        """
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        self.manager.stop(wait_for_tasks=not cancel, timeout=timeout)
        self.abandoned = self.running_tasks()
        self.pool.stop(wait_for_tasks=False, timeout=max(0.0, deadline - time.monotonic()))
        self.sync(max(1.0, deadline - time.monotonic()))
        self.monitor.stop()
        if not self.history.flush(timeout=timeout):
            logger.warning("the history writer did not catch up within %s s", timeout)

    def close(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
        self.subscription.unsubscribe()
        self.history.close(timeout=30.0)

    def running_tasks(self) -> list[str]:
        """The names of this session's tasks running now."""
        names: dict[str, None] = {}
        for execution_id in self.tracker.active_executions():
            try:
                info = self.manager.get_execution_status(execution_id)
            except Exception:  # ended and forgotten since the snapshot
                continue
            for task_id, run in info.tasks.items():
                if run.status is TaskStatus.RUNNING:
                    names[self.names.get(task_id, task_id)] = None
        return list(names)

    def announce_stop(self, interrupts: Interrupts, timeout: float) -> None:
        """Say, on the first interrupt, what stopping waits for and how not to wait."""
        assert interrupts.signum is not None
        name = signal.Signals(interrupts.signum).name
        running = self.running_tasks()
        if running:
            shown = ", ".join(clean(n) for n in running[:10])
            more = f" and {len(running) - 10} more" if len(running) > 10 else ""
            waiting = (
                f"waiting up to {timeout:g} s for {len(running)} running task(s) to stop: "
                f"{shown}{more}"
            )
        else:
            waiting = "cancelling what has not started"
        print(
            f"\nthreadloom: {name}: stopping; {waiting}. Press Ctrl-C again to exit at once "
            "(without completing the history).",
            file=sys.stderr,
            flush=True,
        )

    def sync(self, timeout: float = 5.0) -> None:
        """Wait until the tracker has seen every event emitted so far."""
        if not self.subscription.flush(timeout):
            logger.warning("progress tracking fell %s s behind", timeout)

    def runs(self) -> list[TaskRunRecord]:
        """Every run of this session's tasks that the history holds."""
        # A history file shared with earlier sessions (or another process) also
        # holds their runs: this session's are those of its own task ids (the
        # task manager's ids are unique per manager), and the time filter only
        # keeps the query short (with a second of margin: the wall clock may step).
        records = self.history.query_runs(since=self.started_at - 1.0, limit=None)
        return [r for r in records if r.task_id in self.names]

    def executions(self) -> list[ExecutionRecord]:
        records = self.history.query_executions(since=self.started_at - 1.0, limit=None)
        return [e for e in records if e.targets and all(t in self.names for t in e.targets)]

    # -- waiting, with the live view ----------------------------------------------

    def wait(
        self,
        view: View,
        interrupts: Interrupts,
        done: Callable[[], bool],
        on_tick: Callable[[], None] | None = None,
    ) -> bool:
        """Refresh *view* until *done()* or an interrupt; return False if interrupted."""
        while not interrupts.requested:
            if on_tick is not None:
                on_tick()
            view.refresh()
            self.sync()
            if done():
                return True
            time.sleep(0.125)
        return False


def _stage(spec: TaskSpec) -> str:
    """A task's progress line: its first tag, else its name."""
    return spec.tags[0] if spec.tags else spec.name


# --------------------------------------------------------------------------- summaries


@dataclasses.dataclass
class Summary:
    elapsed: float
    runs: list[TaskRunRecord]
    executions: list[ExecutionRecord]

    @property
    def statuses(self) -> Counter[TaskStatus]:
        return Counter(r.status for r in self.runs)

    @property
    def retries(self) -> int:
        return sum(max(0, r.attempts - 1) for r in self.runs)


def _percentiles(values: Sequence[float]) -> str:
    from ..executor import Percentiles

    stats = Percentiles.of(list(values))
    if not stats.count:
        return "none"
    return f"p50 {ms(stats.p50)}, p90 {ms(stats.p90)}, p99 {ms(stats.p99)}, max {ms(stats.max)}"


def print_summary(console: Console, summary: Summary, db: str, *, title: str = "Summary") -> None:
    statuses = summary.statuses
    runs = summary.runs
    waits = [
        r.started_at - r.queued_at
        for r in runs
        if r.started_at is not None and r.queued_at is not None
    ]
    durations = [r.duration for r in runs if r.duration is not None]
    triggers = Counter(e.trigger for e in summary.executions)
    trigger_text = ", ".join(f"{n} {trigger}" for trigger, n in sorted(triggers.items()))
    lines = [
        f"elapsed: {summary.elapsed:.1f} s",
        f"executions: {len(summary.executions)}",
        f"triggered by: {trigger_text or 'nothing'}",
        f"tasks: {len(runs)}",
        *(f"{status.value}: {statuses.get(status, 0)}" for status in TERMINAL_ORDER),
        f"retries: {summary.retries}",
        f"throughput: {len(runs) / max(summary.elapsed, 1e-9):.1f} tasks/s",
        f"wait time: {_percentiles(waits)} (queued -> started)",
        f"run time: {_percentiles(durations)} (started -> ended, retries included)",
        f"history: {os.path.abspath(db)}",
    ]
    console.print(title, style="bold")
    for line in lines:
        console.print(f"  {line}", soft_wrap=True)


def print_leftovers(
    console: Console, summary: Summary, signum: int, abandoned: Sequence[str] = ()
) -> None:
    name = signal.Signals(signum).name
    cancelled = [r for r in summary.runs if r.status is TaskStatus.CANCELLED]
    not_started = sum(1 for r in cancelled if r.started_at is None)
    stopped = len(cancelled) - not_started
    executions = sum(1 for e in summary.executions if e.status is TaskStatus.CANCELLED)
    how = "stopped" if abandoned else "stopped cleanly"
    console.print(f"interrupted ({name}): {how} after {summary.elapsed:.1f} s", style="yellow")
    console.print(
        f"  left: {executions} execution(s) cancelled; {not_started} task(s) cancelled "
        f"before they started, {stopped} stopped after starting",
        highlight=False,
        soft_wrap=True,
    )
    if abandoned:
        console.print(
            literal_text(
                f"  abandoned: {len(abandoned)} task(s) still running did not stop in time "
                f"and are left unfinished: {', '.join(abandoned)}"
            ),
            style="yellow",
            soft_wrap=True,
        )


def exit_abandoning(session: Session, code: int) -> int:
    """Exit now if tasks were abandoned running: waiting for their threads could take forever.

    Everything else is done by then (summary printed, history flushed and closed).
    """
    if not session.abandoned:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --------------------------------------------------------------------------- profile


def profiler_option(args: argparse.Namespace) -> Any:
    """The ``profile=`` of the session: False, or a Profiler per the options."""
    if not getattr(args, "profile", False):
        return False
    from ..profiling import Profiler

    return Profiler(
        sample_rate=args.sample_rate, trace_memory=args.trace_memory, group_by=args.profile_by
    )


def report_profile(
    console: Console, session: Session, args: argparse.Namespace, *, source: str
) -> None:
    """After a profiled run: print the report, store it with the history, write speedscope."""
    import sqlite3

    from ..profiling import format_report, save_profile

    profiler = session.pool.profiler
    if profiler is None:
        return
    report = profiler.report(max_workers=session.pool.max_workers)
    try:
        save_profile(args.db, profiler, report, source)
    except sqlite3.Error as exc:
        logger.warning("the profile could not be stored in %s: %s", args.db, exc)
    if args.speedscope:
        with open(args.speedscope, "w", encoding="utf-8") as out:
            json.dump(profiler.speedscope(), out)
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict()))
        return
    console.print("")
    for line in format_report(report):
        console.print(literal_text(line), soft_wrap=True)
    if args.speedscope:
        console.print(
            literal_text(
                f"speedscope profile: {args.speedscope} (open at https://www.speedscope.app)"
            ),
            soft_wrap=True,
        )


def recorded_profiles(db: str) -> list[Any]:
    import sqlite3

    from ..profiling import load_profiles

    try:
        return load_profiles(db, limit=1)
    except (sqlite3.Error, ValueError) as exc:
        logger.warning("the recorded profiles of %s could not be read: %s", db, exc)
        return []


def recorded_json(recorded: Any) -> dict[str, Any]:
    return {
        "id": recorded.profile_id,
        "recorded_at": iso(recorded.recorded_at),
        "source": recorded.source,
        "report": recorded.report,
    }


def print_recorded_profile(console: Console, db: str) -> None:
    from ..profiling import format_report, report_from_dict

    for recorded in recorded_profiles(db):
        console.print("")
        console.print(
            literal_text(
                f"latest recorded profile: {recorded.source}, at {iso(recorded.recorded_at)} "
                f"(threadloom profile or --profile records one)"
            ),
            soft_wrap=True,
        )
        for line in format_report(report_from_dict(recorded.report)):
            console.print(literal_text(line), soft_wrap=True)


def add_profile_options(parser: argparse.ArgumentParser, *, flag: bool) -> None:
    if flag:
        parser.add_argument(
            "--profile",
            action="store_true",
            help="profile every task (timings per task name, sampled call trees) and print "
            "the profile and tuning advice at the end; it is stored in the history file",
        )
    parser.add_argument(
        "--sample-rate",
        type=_sample_rate,
        default=100.0,
        metavar="HZ",
        help="stack samples per second while profiling (default: 100; 0: timings only)",
    )
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="while profiling, also measure the memory each task leaves allocated "
        "(tracemalloc: slows allocation-heavy tasks)",
    )
    parser.add_argument(
        "--profile-by",
        choices=("name", "function"),
        default="name",
        help="group the profile by task name, or by the function tasks call "
        "(default: name; a graph of many tasks of a few functions reads better by function)",
    )
    parser.add_argument(
        "--speedscope",
        metavar="FILE",
        help="while profiling, write the sampled stacks as speedscope JSON to FILE",
    )


def _sample_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 10000, not {text}")
    return value
