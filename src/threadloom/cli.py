"""The ``threadloom`` command: ``demo``, ``run``, ``history`` and ``stats``.

Exit codes (every command):

* 0: success.
* 1: tasks failed (``run``), or an unexpected error.
* 2: usage or validation error (bad options, an invalid workflow file, a
  history file that does not exist or is not a threadloom history).
* 130: interrupted by Ctrl-C (SIGINT); 143 for SIGTERM.  The first signal
  stops cleanly (what has not started is cancelled, running tasks are asked to
  stop, the history is completed); a second one exits at once.

Every command that runs tasks uses one :class:`ThreadPoolManager` (sized by
``--workers`` and a :class:`ResourceMonitor`) under one :class:`TaskManager`
that records every run to an SQLite history file (``--db``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import __version__
from ._types import TaskPriority, TaskStatus
from .events import Event, ExecutionFinished, ExecutionStarted, TaskFinished

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from ._demo import DemoSite
    from .history import ExecutionRecord, TaskHistory, TaskRunRecord
    from .task_manager import TaskManager
    from .thread_pool_manager import ThreadPoolManager
    from .workflow import TaskSpec, Workflow

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEFAULT_DB = "threadloom-history.db"
_DB_ENV = "THREADLOOM_DB"

#: Terminal statuses in the order the summary prints them.
_TERMINAL_ORDER = (
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.TIMED_OUT,
    TaskStatus.CANCELLED,
    TaskStatus.UPSTREAM_FAILED,
    TaskStatus.SKIPPED,
)
_NOT_OK = frozenset(
    {TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.UPSTREAM_FAILED, TaskStatus.CANCELLED}
)
_STATUS_STYLE = {
    TaskStatus.COMPLETED: "green",
    TaskStatus.FAILED: "red",
    TaskStatus.TIMED_OUT: "red",
    TaskStatus.CANCELLED: "yellow",
    TaskStatus.UPSTREAM_FAILED: "magenta",
    TaskStatus.SKIPPED: "dim",
}

logger = logging.getLogger("threadloom.cli")


class UsageError(Exception):
    """Bad input to a command: reported on stderr, exit code 2."""


# --------------------------------------------------------------------------- signals


class _Interrupts:
    """Turns SIGINT/SIGTERM into a flag the main loop polls.

    The handler only sets an attribute: it runs between two bytecodes of the
    main thread, which may hold a lock of the task manager or of a
    ``threading.Event`` at that moment, so taking any lock here could deadlock.
    A second signal means "now": it exits at once without cleaning up.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            os.write(2, b"\nthreadloom: second interrupt, exiting without cleaning up\n")
            os._exit(128 + signum)
        self.signum = signum

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


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


# --------------------------------------------------------------------------- the dashboard


def _serve_dashboard(
    console: Console, source: Any, address: tuple[str, int], token: str | None, history: Any = None
) -> Any:
    """Start a dashboard on *address* and print its URL; bad input is a UsageError."""
    from .dashboard import Dashboard, DashboardError

    host, port = address
    try:
        dashboard = Dashboard(source, host=host, port=port, history=history, token=token)
        dashboard.start()
    except (DashboardError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    console.print(f"dashboard: {dashboard.url}", highlight=False, soft_wrap=True)
    if dashboard.token_generated:
        console.print(
            "  (bound to a non-loopback address: the URL carries a generated access token)",
            highlight=False,
        )
    return dashboard


def _cmd_dashboard(args: argparse.Namespace, console: Console) -> int:
    """Serve the history file alone until Ctrl-C."""
    address = args.dashboard or ("127.0.0.1", 0)
    interrupts = _Interrupts()
    with interrupts:
        dashboard = _serve_dashboard(console, None, address, args.token, history=args.db)
        try:
            console.print("serving the history alone; Ctrl-C to stop", highlight=False)
            deadline = None if args.duration is None else time.monotonic() + args.duration
            tick = threading.Event()  # never set: a bounded sleep the signal flag can cut short
            while not interrupts.requested:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                tick.wait(0.2)
        finally:
            dashboard.stop()
    return EXIT_OK


def _bind_address(text: str) -> tuple[str, int]:
    from .dashboard import parse_bind

    try:
        return parse_bind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_dashboard(parser: argparse.ArgumentParser, *, optional: bool) -> None:
    parser.add_argument(
        "--dashboard",
        type=_bind_address,
        default=("127.0.0.1", 0),
        metavar="[HOST:]PORT",
        help="serve the web dashboard here (default: 127.0.0.1 on a free port; "
        "a non-loopback HOST requires a token)",
    )
    if optional:
        parser.add_argument(
            "--no-dashboard",
            dest="dashboard",
            action="store_const",
            const=None,
            help="do not serve the web dashboard",
        )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        default=os.environ.get("THREADLOOM_DASHBOARD_TOKEN") or None,
        help="the dashboard's access token (default: $THREADLOOM_DASHBOARD_TOKEN; "
        "generated for a non-loopback HOST)",
    )


# --------------------------------------------------------------------------- the session


class _Session:
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
    ) -> None:
        from .history import TaskHistory
        from .resource_monitor import ResourceMonitor
        from .task_manager import TaskManager
        from .thread_pool_manager import ThreadPoolManager

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
        )
        self.manager: TaskManager = TaskManager(thread_pool=self.pool, history=self.history)
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
        self.started_at = time.time()
        self.started_perf = time.perf_counter()
        self._stopped = False

    def start(self) -> None:
        if self.dashboard_address is not None:
            self.dashboard = _serve_dashboard(
                self.console, self.manager, self.dashboard_address, self.dashboard_token
            )
        self.monitor.start()
        self.pool.start()
        self.manager.start()
        self.started_at = time.time()
        self.started_perf = time.perf_counter()

    def register(self, workflow: Workflow, *, schedules: bool) -> None:
        from .workflow import register_workflow

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
        """Stop the manager (cancelling what is in flight if *cancel*), the pool and the monitor."""
        if self._stopped:
            return
        self._stopped = True
        self.manager.stop(wait_for_tasks=not cancel, timeout=timeout)
        self.pool.stop(wait_for_tasks=False, timeout=timeout)
        self.sync(timeout)
        self.monitor.stop()
        if not self.history.flush(timeout=timeout):
            logger.warning("the history writer did not catch up within %s s", timeout)

    def close(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
        self.subscription.unsubscribe()
        self.history.close(timeout=30.0)

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
        view: _View,
        interrupts: _Interrupts,
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


# --------------------------------------------------------------------------- the live view


def _priority_name(priority: int) -> str:
    try:
        return TaskPriority(priority).name.lower()
    except ValueError:
        return str(priority)


class _View:
    """Progress per stage, workers and queue: a rich Live display on a terminal,
    a plain line every few seconds otherwise (logs, pipes, tests)."""

    def __init__(
        self,
        session: _Session,
        title: Callable[[], str],
        *,
        stage_labels: Mapping[str, str] | None = None,
        plain_interval: float = 2.0,
    ) -> None:
        self.session = session
        self.title = title
        self.stage_labels = dict(stage_labels or {})
        self.plain_interval = plain_interval
        self._live: Any = None
        self._next_plain = plain_interval

    def __enter__(self) -> _View:
        console = self.session.console
        if self.session.live and console.is_terminal and not console.is_dumb_terminal:
            from rich.live import Live

            self._live = Live(console=console, auto_refresh=False, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
        elif self.session.elapsed >= self._next_plain:
            self._next_plain += self.plain_interval
            self.session.console.print(self._plain_line(), highlight=False, soft_wrap=True)

    def _numbers(self) -> tuple[dict[str, int], dict[str, Counter[TaskStatus]], dict[str, Any]]:
        totals, statuses, _ = self.session.tracker.snapshot()
        return totals, statuses, self.session.pool.get_metrics()

    def _pool_line(self, metrics: Mapping[str, Any], done: int) -> str:
        depth = metrics["queue_size"]
        by_priority = sorted(metrics["queue_size_by_priority"].items(), reverse=True)
        detail = ", ".join(f"{_priority_name(p)} {n}" for p, n in by_priority if n)
        elapsed = max(self.session.elapsed, 1e-9)
        return (
            f"workers {metrics['worker_count']} (busy {metrics['active_workers']}, "
            f"target {metrics['target_workers']}, max {metrics['max_workers']}) · queue {depth}"
            + (f" ({detail})" if detail else "")
            + f" · retries {metrics['tasks_retried']} · {done / elapsed:.1f} tasks/s"
        )

    def _plain_line(self) -> str:
        totals, statuses, metrics = self._numbers()
        parts = []
        done_all = 0
        for stage in self.session.stages:
            done = sum(statuses.get(stage, Counter()).values())
            done_all += done
            parts.append(f"{self.stage_labels.get(stage, stage)} {done}/{totals.get(stage, 0)}")
        return (
            f"[{self.session.elapsed:6.1f}s] "
            + " · ".join(parts)
            + " | "
            + self._pool_line(metrics, done_all)
        )

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        totals, statuses, metrics = self._numbers()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(width=32)
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True)
        done_all = 0
        for stage in self.session.stages:
            counts = statuses.get(stage, Counter())
            done = sum(counts.values())
            done_all += done
            total = totals.get(stage, 0)
            trouble = ", ".join(
                f"[{_STATUS_STYLE[s]}]{counts[s]} {s.value}[/]"
                for s in _TERMINAL_ORDER[1:]
                if counts.get(s)
            )
            grid.add_row(
                self.stage_labels.get(stage, stage),
                ProgressBar(total=max(total, 1), completed=done if total else 0, width=32),
                f"{done}/{total}",
                trouble,
            )
        return Group(
            Text(self.title(), style="bold"),
            grid,
            Text(self._pool_line(metrics, done_all), style="cyan"),
        )


# --------------------------------------------------------------------------- summaries


@dataclasses.dataclass
class _Summary:
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
    from .executor import Percentiles

    stats = Percentiles.of(list(values))
    if not stats.count:
        return "none"
    return f"p50 {_ms(stats.p50)}, p90 {_ms(stats.p90)}, p99 {_ms(stats.p99)}, max {_ms(stats.max)}"


def _ms(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def _print_summary(console: Console, summary: _Summary, db: str, *, title: str = "Summary") -> None:
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
        *(f"{status.value}: {statuses.get(status, 0)}" for status in _TERMINAL_ORDER),
        f"retries: {summary.retries}",
        f"throughput: {len(runs) / max(summary.elapsed, 1e-9):.1f} tasks/s",
        f"wait time: {_percentiles(waits)} (queued -> started)",
        f"run time: {_percentiles(durations)} (started -> ended, retries included)",
        f"history: {os.path.abspath(db)}",
    ]
    console.print(f"[bold]{title}[/bold]")
    for line in lines:
        console.print(f"  {line}", highlight=False, soft_wrap=True)


def _print_leftovers(console: Console, summary: _Summary, signum: int) -> None:
    name = signal.Signals(signum).name
    cancelled = [r for r in summary.runs if r.status is TaskStatus.CANCELLED]
    not_started = sum(1 for r in cancelled if r.started_at is None)
    stopped = len(cancelled) - not_started
    executions = sum(1 for e in summary.executions if e.status is TaskStatus.CANCELLED)
    console.print(
        f"[yellow]interrupted ({name}): stopped cleanly after {summary.elapsed:.1f} s[/yellow]",
        highlight=False,
    )
    console.print(
        f"  left: {executions} execution(s) cancelled; {not_started} task(s) cancelled "
        f"before they started, {stopped} stopped after starting",
        highlight=False,
        soft_wrap=True,
    )


# --------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from . import _demo

    interrupts = _Interrupts()
    with interrupts:
        site = _demo.DemoSite(seed=args.seed)
        base_url = site.start()
        session: _Session | None = None
        try:
            workflow = _demo.build_workflow(base_url, feed_cron=_demo.FEED_CRON)
            session = _Session(
                console,
                db=args.db,
                workers=args.workers,
                live=args.live,
                dashboard=args.dashboard,
                token=args.token,
            )
            session.register(workflow, schedules=True)
            console.print(
                f"[bold]threadloom demo[/bold]: crawling {len(_demo.SOURCES)} sources of a local "
                f"news site at {base_url} for {args.duration:g} s with up to {args.workers} "
                f"workers; breaking-news feed checked on cron '{_demo.FEED_CRON}'",
                highlight=False,
                soft_wrap=True,
            )
            return _demo_loop(args, console, session, site, interrupts)
        finally:
            if session is not None:
                session.stop(cancel=True, timeout=10.0)
                session.close()
            site.stop()


def _demo_loop(
    args: argparse.Namespace,
    console: Console,
    session: _Session,
    site: DemoSite,
    interrupts: _Interrupts,
) -> int:
    from . import _demo

    manager = session.manager
    report_id = session.ids[_demo.ROUND_TARGET]
    feed_id = session.ids["feed:alerts"]
    session.start()
    deadline = args.duration
    rounds: set[str] = set()
    reports: list[Any] = []
    alerts = 0
    draining = False

    def collect() -> None:
        nonlocal alerts
        for execution_id in session.tracker.take_finished():
            rounds.discard(execution_id)
            results = manager.get_execution_status(execution_id).results
            if _demo.ROUND_TARGET in results:
                reports.append(results[_demo.ROUND_TARGET])
            alerts += len(results.get("feed:alerts", ()))

    def tick() -> None:
        nonlocal draining
        collect()
        if session.elapsed < deadline:
            # Two rounds in flight keep the queue fed while the last one finishes.
            while len(rounds) < 2:
                rounds.add(manager.execute_task(report_id))
        elif not draining:
            draining = True
            manager.update_task(feed_id, schedule=None)

    def finished() -> bool:
        return draining and not session.tracker.snapshot()[2]

    def title() -> str:
        phase = "finishing the rounds in flight" if draining else f"{args.duration:g} s"
        return f"threadloom demo · {session.elapsed:4.1f} s / {phase} · {site.base_url}"

    labels = {"feed": "feed (cron)"}
    with _View(session, title, stage_labels=labels) as view:
        completed = session.wait(view, interrupts, finished, on_tick=tick)
    session.stop(cancel=not completed, timeout=10.0)
    collect()
    summary = _Summary(session.elapsed, session.runs(), session.executions())
    codes = site.requests
    served = sum(codes.values())
    console.print(
        f"site: {served} requests ({codes.get(200, 0)} ok, {codes.get(503, 0)} overloaded 503, "
        f"{codes.get(404, 0)} dead-link 404)",
        highlight=False,
        soft_wrap=True,
    )
    articles = sum(report.articles for report in reports)
    top = reports[-1].top_keywords if reports else ()
    console.print(
        f"extracted: {articles} articles in {len(reports)} crawl rounds; "
        f"top keywords of the last round: {', '.join(top) or 'none'}; "
        f"feed alerts: {alerts}",
        highlight=False,
        soft_wrap=True,
    )
    if not completed:
        assert interrupts.signum is not None
        _print_leftovers(console, summary, interrupts.signum)
    _print_summary(console, summary, session.db)
    if not completed:
        return interrupts.exit_code
    db_option = "" if args.db == DEFAULT_DB else f" --db {args.db}"
    console.print(
        f"next: threadloom history{db_option} --status failed; "
        f"threadloom stats{db_option} --by tag",
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_OK


# --------------------------------------------------------------------------- run


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from .workflow import WorkflowError, load_workflow

    try:
        workflow = load_workflow(args.workflow)
    except WorkflowError as exc:
        raise UsageError(str(exc)) from None
    if not args.once and not workflow.scheduled:
        raise UsageError(
            f"{args.workflow}: no task has a schedule, so nothing would ever run; "
            "add a schedule or run the graph with --once"
        )
    workers = args.workers or workflow.workers or 4
    interrupts = _Interrupts()
    with interrupts:
        session = _Session(
            console,
            db=args.db,
            workers=workers,
            live=args.live,
            dashboard=args.dashboard,
            token=args.token,
        )
        try:
            try:
                session.register(workflow, schedules=not args.once)
            except WorkflowError as exc:
                raise UsageError(str(exc)) from None
            if args.once:
                return _run_once(args, console, session, workflow, interrupts)
            return _run_scheduled(args, console, session, workflow, interrupts)
        finally:
            session.stop(cancel=True, timeout=30.0)
            session.close()


def _run_once(
    args: argparse.Namespace,
    console: Console,
    session: _Session,
    workflow: Workflow,
    interrupts: _Interrupts,
) -> int:
    manager = session.manager
    targets = [session.ids[name] for name, spec in workflow.tasks.items() if spec.enabled]
    console.print(
        f"[bold]{workflow.name}[/bold]: running {len(workflow.tasks)} tasks once "
        f"with up to {session.pool.max_workers} workers",
        highlight=False,
    )
    session.start()
    (execution_id,) = manager.execute_tasks(targets)

    def done() -> bool:
        return execution_id in session.tracker.finished

    with _View(session, lambda: f"{workflow.name} · {session.elapsed:4.1f} s") as view:
        completed = session.wait(view, interrupts, done)
    session.stop(cancel=not completed)
    info = manager.get_execution_status(execution_id)
    _print_task_table(console, session, workflow, info)
    summary = _Summary(session.elapsed, session.runs(), session.executions())
    if not completed:
        assert interrupts.signum is not None
        _print_leftovers(console, summary, interrupts.signum)
        _print_summary(console, summary, session.db)
        return interrupts.exit_code
    _print_summary(console, summary, session.db)
    status = info.status
    console.print(f"result: {status.value}", highlight=False)
    return EXIT_OK if status is TaskStatus.COMPLETED else EXIT_FAILED


def _print_task_table(console: Console, session: _Session, workflow: Workflow, info: Any) -> None:
    from rich.table import Table

    table = Table(title=None, show_edge=False, pad_edge=False)
    for column in ("task", "status", "attempts", "time", "result or error"):
        table.add_column(column, no_wrap=column != "result or error", overflow="fold")
    runs = {session.names[task_id]: run for task_id, run in info.tasks.items()}
    shown = 0
    for name in workflow.tasks:
        run = runs.get(name)
        if run is None:
            continue
        if len(runs) > 40 and run.status is TaskStatus.COMPLETED:
            continue  # a big graph: show only what did not complete
        shown += 1
        if run.error is not None:
            detail = f"{type(run.error).__name__}: {run.error}"
        elif name in info.results:
            detail = _short(repr(info.results[name]))
        else:
            detail = ""
        style = _STATUS_STYLE.get(run.status, "")
        table.add_row(
            name,
            f"[{style}]{run.status.value}[/]" if style else run.status.value,
            str(run.attempts),
            "" if run.duration is None else _ms(run.duration),
            detail,
        )
    if shown:
        console.print(table)


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_scheduled(
    args: argparse.Namespace,
    console: Console,
    session: _Session,
    workflow: Workflow,
    interrupts: _Interrupts,
) -> int:
    from .scheduling import local_timezone

    manager = session.manager
    scheduled = workflow.scheduled
    reachable = set(workflow.closure(spec.name for spec in scheduled))
    idle = [name for name, spec in workflow.tasks.items() if name not in reachable and spec.enabled]
    session.start()
    now = _dt.datetime.now(local_timezone())
    console.print(
        f"[bold]{workflow.name}[/bold]: {len(scheduled)} scheduled task(s), "
        f"up to {session.pool.max_workers} workers; "
        + (f"stopping after {args.duration:g} s" if args.duration else "Ctrl-C to stop"),
        highlight=False,
    )
    for spec in scheduled:
        assert spec.schedule is not None
        upcoming = spec.schedule.next_fire_time(now)
        when = upcoming.isoformat(timespec="seconds") if upcoming else "never"
        console.print(f"  {spec.name}: {spec.schedule!r}, next at {when}", highlight=False)
    if idle:
        console.print(
            f"  not scheduled and not needed by a scheduled task (run them with --once): "
            f"{', '.join(idle)}",
            highlight=False,
            soft_wrap=True,
        )
    duration = args.duration

    def time_is_up() -> bool:
        return duration is not None and session.elapsed >= duration

    def drained() -> bool:
        return not session.tracker.snapshot()[2]

    title = lambda: f"{workflow.name} · {session.elapsed:4.1f} s"  # noqa: E731
    with _View(session, title) as view:
        completed = session.wait(view, interrupts, time_is_up)
        if completed:
            for spec in scheduled:
                manager.update_task(session.ids[spec.name], schedule=None)
            completed = session.wait(view, interrupts, drained)
    session.stop(cancel=not completed)
    summary = _Summary(session.elapsed, session.runs(), session.executions())
    if not completed:
        assert interrupts.signum is not None
        _print_leftovers(console, summary, interrupts.signum)
        _print_summary(console, summary, session.db)
        return interrupts.exit_code
    _print_summary(console, summary, session.db)
    failed = any(e.status is not TaskStatus.COMPLETED for e in summary.executions)
    return EXIT_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------- history and stats


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*(?:ago)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: float | None = None) -> float:
    """Parse a ``--since``/``--until`` value into epoch seconds.

    Accepts a duration ago (``90s``, ``10m``, ``2h``, ``1d``, ``1w``), an ISO
    8601 date or date-time (local time unless it has an offset), or epoch seconds.

    Raises:
        ValueError: The text is none of these.
    """
    now = time.time() if now is None else now
    match = _RELATIVE.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(value):
            return value
    try:
        moment = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use a duration ago (30s, 10m, 2h, 1d), "
            "an ISO date or date-time (2026-01-31, 2026-01-31T09:30), or epoch seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    return moment.timestamp()


@contextmanager
def _open_history(db: str) -> Iterator[TaskHistory]:
    from .history import HistoryError, TaskHistory

    if not os.path.exists(db):
        raise UsageError(
            f"no history database at {db!r}: run `threadloom demo` or `threadloom run` first, "
            "or point --db (or $THREADLOOM_DB) at one"
        )
    try:
        history = TaskHistory(db)
    except HistoryError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield history
    finally:
        history.close()


def _statuses(values: Sequence[str] | None) -> list[TaskStatus] | None:
    if not values:
        return None
    statuses = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower().replace("-", "_")
            if not part:
                continue
            try:
                statuses.append(TaskStatus(part))
            except ValueError:
                known = ", ".join(s.value for s in _TERMINAL_ORDER)
                raise UsageError(f"unknown status {part!r}; use one of {known}") from None
    return statuses or None


def _query_runs(
    history: TaskHistory,
    *,
    task: str | None,
    statuses: list[TaskStatus] | None,
    since: float | None,
    until: float | None,
    execution: str | None,
    limit: int | None,
) -> list[TaskRunRecord]:
    if task is None:
        return history.query_runs(
            status=statuses, since=since, until=until, execution_id=execution, limit=limit
        )
    # The history indexes runs by task id; a name is matched page by page,
    # newest first, until *limit* matches are found.
    found: list[TaskRunRecord] = []
    offset = 0
    page = 2000
    while True:
        batch = history.query_runs(
            status=statuses,
            since=since,
            until=until,
            execution_id=execution,
            limit=page,
            offset=offset,
        )
        found.extend(r for r in batch if task in (r.task_name, r.task_id))
        if len(batch) < page or (limit is not None and len(found) >= limit):
            return found if limit is None else found[:limit]
        offset += page


def _time_options(args: argparse.Namespace) -> tuple[float | None, float | None]:
    try:
        since = None if args.since is None else parse_time(args.since)
        until = None if args.until is None else parse_time(args.until)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return since, until


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return _dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="milliseconds")


def _cmd_history(args: argparse.Namespace, console: Console) -> int:
    statuses = _statuses(args.status)
    since, until = _time_options(args)
    limit = None if args.limit == 0 else args.limit
    with _open_history(args.db) as history:
        runs = _query_runs(
            history,
            task=args.task,
            statuses=statuses,
            since=since,
            until=until,
            execution=args.execution,
            limit=limit,
        )
    if args.json:
        for run in runs:
            row = run._asdict()
            row["status"] = run.status.value
            row["tags"] = list(run.tags)
            row["finished"] = _iso(run.finished_at)
            print(json.dumps(row))
        return EXIT_OK
    if not runs:
        console.print("no runs match", highlight=False)
        return EXIT_OK
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for column in ("finished", "task", "status", "attempts", "time", "error"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for run in runs:
        style = _STATUS_STYLE.get(run.status, "")
        finished = _dt.datetime.fromtimestamp(run.finished_at).strftime("%Y-%m-%d %H:%M:%S")
        error = f"{run.error_type}: {run.error_message}" if run.error_type else ""
        table.add_row(
            finished,
            run.task_name,
            f"[{style}]{run.status.value}[/]" if style else run.status.value,
            str(run.attempts),
            "" if run.duration is None else _ms(run.duration),
            _short(error, 90),
        )
    console.print(table)
    more = "" if limit is None or len(runs) < limit else f"; --limit {limit} reached"
    console.print(f"{len(runs)} run(s), newest first{more}", highlight=False)
    return EXIT_OK


def _cmd_stats(args: argparse.Namespace, console: Console) -> int:
    from .executor import Percentiles

    since, until = _time_options(args)
    with _open_history(args.db) as history:
        runs = _query_runs(
            history,
            task=args.task,
            statuses=None,
            since=since,
            until=until,
            execution=None,
            limit=None,
        )
        executions = history.query_executions(since=since, until=until, limit=None)
    groups: dict[str, list[TaskRunRecord]] = {}
    for run in runs:
        key = (run.tags[0] if run.tags else run.task_name) if args.by == "tag" else run.task_name
        groups.setdefault(key, []).append(run)
    rows: list[dict[str, Any]] = []
    for key in sorted(groups):
        group = groups[key]
        counts = Counter(r.status for r in group)
        durations = Percentiles.of([r.duration for r in group if r.duration is not None])
        rows.append(
            {
                args.by: key,
                "runs": len(group),
                **{s.value: counts.get(s, 0) for s in _TERMINAL_ORDER},
                "retries": sum(max(0, r.attempts - 1) for r in group),
                "duration_p50": durations.p50,
                "duration_p90": durations.p90,
                "duration_max": durations.max,
            }
        )
    execution_counts = Counter(e.status.value for e in executions)
    totals = Counter(r.status.value for r in runs)
    if args.json:
        print(
            json.dumps(
                {
                    "db": os.path.abspath(args.db),
                    "runs": len(runs),
                    "executions": len(executions),
                    "executions_by_status": dict(execution_counts),
                    "runs_by_status": {s.value: totals.get(s.value, 0) for s in _TERMINAL_ORDER},
                    "retries": sum(max(0, r.attempts - 1) for r in runs),
                    "first": _iso(min((r.finished_at for r in runs), default=None)),
                    "last": _iso(max((r.finished_at for r in runs), default=None)),
                    "groups": rows,
                }
            )
        )
        return EXIT_OK
    console.print(f"history: {os.path.abspath(args.db)}", highlight=False)
    if not runs:
        console.print("no runs match", highlight=False)
        return EXIT_OK
    first = min(r.finished_at for r in runs)
    last = max(r.finished_at for r in runs)
    console.print(
        f"runs: {len(runs)} from {_iso(first)} to {_iso(last)}; executions: {len(executions)} ("
        + ", ".join(f"{n} {s}" for s, n in sorted(execution_counts.items()))
        + ")",
        highlight=False,
        soft_wrap=True,
    )
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    table.add_column(args.by, no_wrap=True)
    for column in ("runs", "completed", "failed", "not run", "retries", "p50", "p90", "max"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        failed = row["failed"] + row["timed_out"]
        not_run = row["cancelled"] + row["upstream_failed"] + row["skipped"]
        table.add_row(
            str(row[args.by]),
            str(row["runs"]),
            str(row["completed"]),
            f"[red]{failed}[/]" if failed else "0",
            f"[yellow]{not_run}[/]" if not_run else "0",
            str(row["retries"]),
            _ms(row["duration_p50"]),
            _ms(row["duration_p90"]),
            _ms(row["duration_max"]),
        )
    console.print(table)
    console.print(
        "failed = failed + timed_out; not run = cancelled + upstream_failed + skipped; "
        "p50/p90/max: run time (started -> ended, retries included)",
        style="dim",
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_OK


# --------------------------------------------------------------------------- argument parsing


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than *minimum*."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


_EXIT_CODES = """\
exit codes: 0 success; 1 tasks failed (run); 2 usage or validation error;
130 interrupted (Ctrl-C; 143 for SIGTERM)"""


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="FILE",
        default=os.environ.get(_DB_ENV) or DEFAULT_DB,
        help=f"the SQLite history file (default: ${_DB_ENV} or ./{DEFAULT_DB})",
    )


def _add_live(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-live",
        dest="live",
        action="store_false",
        help="print a progress line every 2 s instead of the live display "
        "(the default when output is not a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the ``threadloom`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="threadloom",
        description="Run task graphs on threadloom's thread pool, and read their history.",
        epilog=_EXIT_CODES + "\n\nStart with: threadloom demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"threadloom {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="crawl a local test site with a task graph, live (start here)",
        description=(
            "Start a small news site on 127.0.0.1 (generated pages, varied latency, some "
            "failures) and crawl it for a while: fetches (IO-bound, retried with backoff), "
            "parses (CPU-bound), per-source aggregates and a report, at mixed priorities, "
            "with a breaking-news feed checked on a cron schedule. Ends with a summary; "
            "every task run is written to the history file."
        ),
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--duration",
        type=_positive_seconds,
        default=20.0,
        metavar="SECONDS",
        help="how long to keep starting crawl rounds (default: 20)",
    )
    demo.add_argument(
        "--workers",
        type=_positive_int,
        default=8,
        metavar="N",
        help="most worker threads (default: 8)",
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the site's pages and failures")
    _add_db(demo)
    _add_live(demo)
    _add_dashboard(demo, optional=True)

    run = commands.add_parser(
        "run",
        help="run a workflow file (TOML)",
        description=(
            "Validate and run a workflow file. With --once, the whole graph runs once and "
            "the command exits 0 if every task completed (or was skipped), 1 otherwise. "
            "Without it, the scheduled tasks (with what they depend on) fire on their "
            "schedules until Ctrl-C or --duration."
        ),
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("workflow", metavar="WORKFLOW.toml", help="the workflow file")
    run.add_argument("--once", action="store_true", help="run the whole graph once and exit")
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="most worker threads (default: the file's workflow.workers, else 4)",
    )
    run.add_argument(
        "--duration",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="without --once: stop after this long (finishing what is in flight)",
    )
    _add_db(run)
    _add_live(run)
    _add_dashboard(run, optional=True)

    history = commands.add_parser(
        "history",
        help="list recorded task runs",
        description="List task runs from the history file, newest first.",
        epilog="times: 30s, 10m, 2h, 1d ago; an ISO date or date-time; or epoch seconds\n"
        + _EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    history.add_argument("--task", metavar="NAME", help="only runs of this task (name or id)")
    history.add_argument(
        "--status",
        action="append",
        metavar="S",
        help="only runs that ended so: completed, failed, timed_out, cancelled, "
        "upstream_failed, skipped (repeat or comma-separate for several)",
    )
    history.add_argument("--since", metavar="T", help="only runs that finished at or after T")
    history.add_argument("--until", metavar="T", help="only runs that finished before T")
    history.add_argument("--execution", metavar="ID", help="only runs of this execution")
    history.add_argument(
        "--limit",
        type=_non_negative_int,
        default=50,
        metavar="N",
        help="show at most N runs (default: 50; 0: all)",
    )
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_db(history)

    stats = commands.add_parser(
        "stats",
        help="summarise the history per task",
        description="Counts per status, retries and run-time percentiles, per task or per tag.",
        epilog="times: 30s, 10m, 2h, 1d ago; an ISO date or date-time; or epoch seconds\n"
        + _EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("--task", metavar="NAME", help="only this task (name or id)")
    stats.add_argument("--since", metavar="T", help="only runs that finished at or after T")
    stats.add_argument("--until", metavar="T", help="only runs that finished before T")
    stats.add_argument(
        "--by",
        choices=("task", "tag"),
        default="task",
        help="group by task name, or by first tag (default: task)",
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    _add_db(stats)

    dashboard = commands.add_parser(
        "dashboard",
        help="serve the web dashboard over a history file",
        description="Serve the dashboard's history views over the history file alone "
        "(no live process) until Ctrl-C.",
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_db(dashboard)
    _add_dashboard(dashboard, optional=False)
    dashboard.add_argument(
        "--duration",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "demo": _cmd_demo,
    "run": _cmd_run,
    "history": _cmd_history,
    "stats": _cmd_stats,
    "dashboard": _cmd_dashboard,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``threadloom`` command.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code (see the module docstring).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from rich.console import Console

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="threadloom: %(levelname)s: %(message)s")
    # Off a terminal (a pipe, a log, a test), rich would wrap at 80 columns:
    # give tables room and let lines be as long as they are.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 0) or 160
    console = Console(highlight=False, width=width)
    from .history import HistoryError

    try:
        return _COMMANDS[args.command](args, console)
    except (UsageError, HistoryError) as exc:
        print(f"threadloom {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nthreadloom: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
