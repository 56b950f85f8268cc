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

What the tasks print and log goes above the live display.  Strings that come
from users (task names, results, errors, tags) are printed literally: never
read as rich markup, with control characters shown as escapes.
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
    from rich.console import Console, JustifyMethod, RenderableType
    from rich.text import Text

    from ._demo import DemoSite
    from .graph.manager import TaskManager
    from .history import ExecutionRecord, TaskHistory, TaskRunRecord
    from .pool import ThreadPoolManager
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
    TaskStatus.INTERRUPTED: "yellow",
}

logger = logging.getLogger("threadloom.cli")


class UsageError(Exception):
    """Bad input to a command: reported on stderr, exit code 2."""


# --------------------------------------------------------------------------- user strings

# C0 controls but newline and tab, DEL, C1 controls, and the bidirectional
# overrides that make a terminal show text in another order than it is.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _clean(text: str) -> str:
    """*text* with control characters shown as escapes (``\\x1b``), so none reaches the terminal."""
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def _text(text: str, style: str = "") -> Text:
    """A user string as a rich Text: printed literally (no markup), controls escaped."""
    from rich.text import Text

    return Text(_clean(text), style=style)


def _headline(name: str, rest: str) -> Text:
    """*name* (a user string) in bold, then *rest* (ours) plain."""
    from rich.text import Text

    return Text.assemble((_clean(name), "bold"), rest)


def _describe(value: object) -> str:
    """``repr(value)``, or what went wrong with it: a result never breaks the output."""
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__name__} object: its repr() raised {type(exc).__name__}>"


def _error_text(error: BaseException) -> str:
    """``Type: message`` for an exception, even one whose ``__str__`` raises."""
    try:
        message = str(error)
    except Exception as exc:
        message = f"<its str() raised {type(exc).__name__}>"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


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
        cluster: str | None = None,
        profile: Any = False,
    ) -> None:
        if cluster is not None:
            _check_cluster(cluster)
        from .graph.manager import TaskManager
        from .history import TaskHistory
        from .monitor import ResourceMonitor
        from .pool import ThreadPoolManager

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
            self.dashboard = _serve_dashboard(
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

    def announce_stop(self, interrupts: _Interrupts, timeout: float) -> None:
        """Say, on the first interrupt, what stopping waits for and how not to wait."""
        assert interrupts.signum is not None
        name = signal.Signals(interrupts.signum).name
        running = self.running_tasks()
        if running:
            shown = ", ".join(_clean(n) for n in running[:10])
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

            # While it runs, sys.stdout and sys.stderr are proxies that print
            # above the display: a task's print() and log records (the root
            # handler writes to the sys.stderr of the moment) stay visible.
            self._live = Live(
                console=console,
                auto_refresh=False,
                transient=False,
                redirect_stdout=True,
                redirect_stderr=True,
            )
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
            label = _clean(self.stage_labels.get(stage, stage))
            parts.append(f"{label} {done}/{totals.get(stage, 0)}")
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
            trouble = Text(", ").join(
                Text(f"{counts[s]} {s.value}", style=_STATUS_STYLE[s])
                for s in _TERMINAL_ORDER[1:]
                if counts.get(s)
            )
            grid.add_row(
                _text(self.stage_labels.get(stage, stage)),
                ProgressBar(total=max(total, 1), completed=done if total else 0, width=32),
                f"{done}/{total}",
                trouble,
            )
        return Group(
            _text(self.title(), style="bold"),
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
    console.print(title, style="bold")
    for line in lines:
        console.print(f"  {line}", soft_wrap=True)


def _print_leftovers(
    console: Console, summary: _Summary, signum: int, abandoned: Sequence[str] = ()
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
            _text(
                f"  abandoned: {len(abandoned)} task(s) still running did not stop in time "
                f"and are left unfinished: {', '.join(abandoned)}"
            ),
            style="yellow",
            soft_wrap=True,
        )


def _exit_abandoning(session: _Session, code: int) -> int:
    """Exit now if tasks were abandoned running: waiting for their threads could take forever.

    Everything else is done by then (summary printed, history flushed and closed).
    """
    if not session.abandoned:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from rich.text import Text

    from . import _demo

    interrupts = _Interrupts()
    with interrupts:
        site = _demo.DemoSite(seed=args.seed)
        base_url = site.start()
        session: _Session | None = None
        code = EXIT_FAILED
        try:
            workflow = _demo.build_workflow(base_url, feed_cron=_demo.FEED_CRON)
            session = _Session(
                console,
                db=args.db,
                workers=args.workers,
                live=args.live,
                dashboard=args.dashboard,
                token=args.token,
                cluster=args.cluster,
                profile=_profiler_option(args),
            )
            session.register(workflow, schedules=True)
            console.print(
                Text.assemble(
                    ("threadloom demo", "bold"),
                    f": crawling {len(_demo.SOURCES)} sources of a local news site at "
                    f"{base_url} for {args.duration:g} s "
                    + (
                        f"on the Dask cluster {args.cluster}; "
                        if args.cluster
                        else f"with up to {args.workers} workers; "
                    )
                    + f"breaking-news feed checked on cron '{_demo.FEED_CRON}'",
                ),
                soft_wrap=True,
            )
            code = _demo_loop(args, console, session, site, interrupts)
        finally:
            if session is not None:
                session.stop(cancel=True, timeout=10.0)
                session.close()
            site.stop()
    if session is not None:
        _report_profile(console, session, args, source="demo")
    return _exit_abandoning(session, code)


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
    if not completed:
        session.announce_stop(interrupts, timeout=10.0)
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
        _print_leftovers(console, summary, interrupts.signum, session.abandoned)
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


# --------------------------------------------------------------------------- profile


def _profiler_option(args: argparse.Namespace) -> Any:
    """The ``profile=`` of the session: False, or a Profiler per the options."""
    if not getattr(args, "profile", False):
        return False
    from .profiling import Profiler

    return Profiler(
        sample_rate=args.sample_rate, trace_memory=args.trace_memory, group_by=args.profile_by
    )


def _report_profile(
    console: Console, session: _Session, args: argparse.Namespace, *, source: str
) -> None:
    """After a profiled run: print the report, store it with the history, write speedscope."""
    import sqlite3

    from .profiling import format_report, save_profile

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
        console.print(_text(line), soft_wrap=True)
    if args.speedscope:
        console.print(
            _text(f"speedscope profile: {args.speedscope} (open at https://www.speedscope.app)"),
            soft_wrap=True,
        )


def _recorded_profiles(db: str) -> list[Any]:
    import sqlite3

    from .profiling import load_profiles

    try:
        return load_profiles(db, limit=1)
    except (sqlite3.Error, ValueError) as exc:
        logger.warning("the recorded profiles of %s could not be read: %s", db, exc)
        return []


def _recorded_json(recorded: Any) -> dict[str, Any]:
    return {
        "id": recorded.profile_id,
        "recorded_at": _iso(recorded.recorded_at),
        "source": recorded.source,
        "report": recorded.report,
    }


def _print_recorded_profile(console: Console, db: str) -> None:
    from .profiling import format_report, report_from_dict

    for recorded in _recorded_profiles(db):
        console.print("")
        console.print(
            _text(
                f"latest recorded profile: {recorded.source}, at {_iso(recorded.recorded_at)} "
                f"(threadloom profile or --profile records one)"
            ),
            soft_wrap=True,
        )
        for line in format_report(report_from_dict(recorded.report)):
            console.print(_text(line), soft_wrap=True)


def _cmd_profile(args: argparse.Namespace, console: Console) -> int:
    from rich.console import Console as RichConsole

    # The run's own output goes to stderr when stdout carries the JSON.
    run_console = (
        RichConsole(stderr=True, highlight=False, markup=False, width=_console_width())
        if args.json
        else console
    )
    return _cmd_run(args, run_console)


def _add_profile_options(parser: argparse.ArgumentParser, *, flag: bool) -> None:
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


def _add_profile_command(commands: Any) -> None:
    profile = _add_command(
        commands,
        "profile",
        help="run a workflow's graph once, profiled, and print tuning advice",
        description=(
            "Run the whole graph of a workflow file once with profiling on, then print "
            "per task name: wall and CPU time, queue wait, attempts and percentiles; the "
            "functions each spends its time in (sampled call stacks); and recommendations "
            "with their numbers (worker count by Little's law, processes for GIL-bound "
            "tasks, retry hot spots, starving priorities, missed deadlines, memory growth). "
            "The profile is stored in the history file (threadloom stats shows it).\n\n"
            "A workflow file is code: profiling it runs it."
        ),
    )
    profile.add_argument("workflow", metavar="WORKFLOW.toml", help="the workflow file")
    _add_workers(profile, None, "the file's workflow.workers, else 4")
    profile.add_argument(
        "--stop-timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="after Ctrl-C, how long to wait for running tasks (default: 30)",
    )
    profile.add_argument(
        "--json", action="store_true", help="print the profile as one JSON object on stdout"
    )
    _add_profile_options(profile, flag=False)
    _add_db(profile)
    _add_live(profile)
    # Profiling measures this process's pool: the run stays local (no --cluster).
    profile.set_defaults(
        profile=True,
        once=True,
        check=False,
        duration=None,
        dashboard=None,
        token=None,
        cluster=None,
    )


# --------------------------------------------------------------------------- run


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from .workflow import WorkflowError, load_workflow

    if args.check:
        return _check_only(args.workflow, console)
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
            cluster=args.cluster or (None if args.profile else workflow.cluster),
            profile=_profiler_option(args),
        )
        try:
            try:
                session.register(workflow, schedules=not args.once)
            except WorkflowError as exc:
                raise UsageError(str(exc)) from None
            if args.once:
                code = _run_once(args, console, session, workflow, interrupts)
            else:
                code = _run_scheduled(args, console, session, workflow, interrupts)
        finally:
            session.stop(cancel=True, timeout=args.stop_timeout)
            session.close()
    _report_profile(console, session, args, source=f"run {args.workflow}")
    return _exit_abandoning(session, code)


def _check_only(path: str, console: Console) -> int:
    """``run --check``: validate *path* without importing anything from it."""
    from .workflow import WorkflowError, check_workflow

    try:
        check = check_workflow(path)
    except WorkflowError as exc:
        raise UsageError(str(exc)) from None
    scheduled = ", ".join(check.scheduled) or "none"
    console.print(
        _text(
            f"{path}: valid workflow {check.name!r}: {len(check.tasks)} task(s) in dependency "
            f"order: {', '.join(check.tasks)}; scheduled: {scheduled}"
        ),
        soft_wrap=True,
    )
    console.print(
        "nothing was imported: callables and exception names were checked as import paths "
        "only, and arguments are checked against signatures when the file is run",
        style="dim",
        soft_wrap=True,
    )
    return EXIT_OK


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
        _headline(
            workflow.name,
            f": running {len(workflow.tasks)} tasks once "
            + (
                f"on the Dask cluster {session.cluster}"
                if session.cluster
                else f"with up to {session.pool.max_workers} workers"
            ),
        ),
        soft_wrap=True,
    )
    session.start()
    (execution_id,) = manager.execute_tasks(targets)

    def done() -> bool:
        return execution_id in session.tracker.finished

    with _View(session, lambda: f"{workflow.name} · {session.elapsed:4.1f} s") as view:
        completed = session.wait(view, interrupts, done)
    if not completed:
        session.announce_stop(interrupts, timeout=args.stop_timeout)
    session.stop(cancel=not completed, timeout=args.stop_timeout)
    info = manager.get_execution_status(execution_id)
    _print_task_table(console, session, workflow, info)
    summary = _Summary(session.elapsed, session.runs(), session.executions())
    if not completed:
        assert interrupts.signum is not None
        _print_leftovers(console, summary, interrupts.signum, session.abandoned)
        _print_summary(console, summary, session.db)
        return interrupts.exit_code
    _print_summary(console, summary, session.db)
    status = info.status
    console.print(f"result: {status.value}", highlight=False)
    return EXIT_OK if status is TaskStatus.COMPLETED else EXIT_FAILED


def _print_task_table(console: Console, session: _Session, workflow: Workflow, info: Any) -> None:
    runs = {session.names[task_id]: run for task_id, run in info.tasks.items()}
    rows = []
    for name in workflow.tasks:
        run = runs.get(name)
        if run is None:
            continue
        if len(runs) > 40 and run.status is TaskStatus.COMPLETED:
            continue  # a big graph: show only what did not complete
        if run.error is not None:
            detail = _error_text(run.error)
        elif name in info.results:
            detail = _short(_describe(info.results[name]), 200)
        else:
            detail = ""
        rows.append(
            [
                _text(name),
                _status_text(run.status),
                _text(str(run.attempts)),
                _text("" if run.duration is None else _ms(run.duration)),
                _text(detail),
            ]
        )
    columns = [
        _Column("task", fixed=False),
        _Column("status"),
        _Column("attempts", justify="right"),
        _Column("time", justify="right"),
        _Column("result or error", fixed=False, ratio=3),
    ]
    _print_table(console, columns, rows)


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _status_text(status: TaskStatus) -> Text:
    return _text(status.value, style=_STATUS_STYLE.get(status, ""))


@dataclasses.dataclass(frozen=True)
class _Column:
    """A column of :func:`_print_table`.

    A *fixed* column (a status, a time, a number) is as wide as its widest
    cell and never wrapped; the others fold into the room left, in *ratio*.
    """

    header: str
    fixed: bool = True
    justify: JustifyMethod = "left"
    ratio: int = 1


#: The narrowest a folding column may get before the table gives up its layout.
_MIN_FOLD_WIDTH = 10


def _print_table(
    console: Console, columns: Sequence[_Column], rows: Sequence[Sequence[Text]]
) -> None:
    """Print *rows* so that nothing is cut, at any width.

    The fixed columns get their full width and the others fold (wrap anywhere)
    into the rest.  If the console is too narrow even for that (with two
    spaces between columns, then one), each row becomes a block of
    ``header: value`` lines instead.
    """
    from rich.table import Table

    if not rows:
        return
    widest = [
        max([len(column.header), *(row[i].cell_len for row in rows)])
        for i, column in enumerate(columns)
    ]
    least = sum(
        width if column.fixed else min(width, _MIN_FOLD_WIDTH)
        for column, width in zip(columns, widest, strict=True)
    )
    for gap in (2, 1):
        if least + gap * (len(columns) - 1) > console.width:
            continue
        table = Table(
            box=None,
            show_edge=False,
            pad_edge=False,
            padding=(0, 0, 0, gap),
            header_style="bold",
        )
        for column, width in zip(columns, widest, strict=True):
            if column.fixed:
                table.add_column(
                    column.header, justify=column.justify, no_wrap=True, min_width=width
                )
            else:
                table.add_column(
                    column.header,
                    justify=column.justify,
                    overflow="fold",
                    ratio=column.ratio,
                    min_width=min(width, _MIN_FOLD_WIDTH),
                )
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    from rich.text import Text

    for row in rows:
        console.print()
        for column, cell in zip(columns, row, strict=True):
            if cell.plain:
                console.print(Text.assemble((f"{column.header}: ", "bold"), cell), overflow="fold")


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
        _headline(
            workflow.name,
            f": {len(scheduled)} scheduled task(s), up to {session.pool.max_workers} workers; "
            + (f"stopping after {args.duration:g} s" if args.duration else "Ctrl-C to stop"),
        ),
        soft_wrap=True,
    )
    for spec in scheduled:
        assert spec.schedule is not None
        upcoming = spec.schedule.next_fire_time(now)
        when = upcoming.isoformat(timespec="seconds") if upcoming else "never"
        console.print(_text(f"  {spec.name}: {spec.schedule!r}, next at {when}"), soft_wrap=True)
    if idle:
        console.print(
            _text(
                "  not scheduled and not needed by a scheduled task (run them with --once): "
                + ", ".join(idle)
            ),
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
    if not completed:
        session.announce_stop(interrupts, timeout=args.stop_timeout)
    session.stop(cancel=not completed, timeout=args.stop_timeout)
    summary = _Summary(session.elapsed, session.runs(), session.executions())
    if not completed:
        assert interrupts.signum is not None
        _print_leftovers(console, summary, interrupts.signum, session.abandoned)
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
        # Read-only: a read command works on a file it may not write, and never
        # writes into one (not even a schema into an empty file).
        history = TaskHistory(db, readonly=True)
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
        # Runs are recorded when they end, so the runs of an execution whose
        # process died are missing: the execution itself says so.
        interrupted = (
            history.query_executions(
                execution_id=args.execution,
                status=TaskStatus.INTERRUPTED,
                since=since,
                until=until,
                limit=None,
            )
            if args.task is None and (statuses is None or TaskStatus.INTERRUPTED in statuses)
            else []
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
        _print_interrupted(console, interrupted)
        return EXIT_OK
    _print_runs_table(console, runs)
    more = "" if limit is None or len(runs) < limit else f"; --limit {limit} reached"
    console.print(f"{len(runs)} run(s), newest first{more}", highlight=False)
    if args.task is not None:
        _print_tracebacks(console, runs)
    _print_interrupted(console, interrupted)
    return EXIT_OK


def _print_interrupted(console: Console, executions: Sequence[ExecutionRecord]) -> None:
    if not executions:
        return
    console.print(
        f"{len(executions)} execution(s) interrupted: their process ended before recording "
        "their end, so their unfinished runs are not listed: "
        + ", ".join(e.execution_id for e in executions),
        style="yellow",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


_TRACEBACKS_SHOWN = 3


def _print_tracebacks(console: Console, runs: Sequence[TaskRunRecord]) -> None:
    """Print the stored tracebacks of the newest failed runs in *runs* (newest first)."""
    from rich.text import Text

    failed = [run for run in runs if run.traceback]
    for run in failed[:_TRACEBACKS_SHOWN]:
        finished = _dt.datetime.fromtimestamp(run.finished_at).strftime("%Y-%m-%d %H:%M:%S")
        title = Text(f"{run.task_name}: {run.status.value} at {finished}")
        console.rule(title, style="dim")
        # Printed as it was stored: a traceback holds user text, never markup.
        console.print(
            (run.traceback or "").rstrip("\n"), markup=False, highlight=False, soft_wrap=True
        )
    if len(failed) > _TRACEBACKS_SHOWN:
        console.print(
            f"({len(failed) - _TRACEBACKS_SHOWN} older traceback(s) not shown; "
            "--json has them all)",
            style="dim",
            highlight=False,
        )


def _print_runs_table(console: Console, runs: Sequence[TaskRunRecord]) -> None:
    columns = [
        _Column("finished"),
        _Column("task", fixed=False),
        _Column("status"),
        _Column("attempts", justify="right"),
        _Column("time", justify="right"),
        _Column("error", fixed=False, ratio=3),
    ]
    rows = []
    for run in runs:
        finished = _dt.datetime.fromtimestamp(run.finished_at).strftime("%Y-%m-%d %H:%M:%S")
        error = f"{run.error_type}: {run.error_message}" if run.error_type else ""
        rows.append(
            [
                _text(finished),
                _text(run.task_name),
                _status_text(run.status),
                _text(str(run.attempts)),
                _text("" if run.duration is None else _ms(run.duration)),
                _text(error),
            ]
        )
    _print_table(console, columns, rows)


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
                    "profiles": [_recorded_json(p) for p in _recorded_profiles(args.db)],
                }
            )
        )
        return EXIT_OK
    console.print(_text(f"history: {os.path.abspath(args.db)}"), soft_wrap=True)
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
    _print_stats_table(console, args.by, rows)
    console.print(
        "failed = failed + timed_out; not run = cancelled + upstream_failed + skipped; "
        "p50/p90/max: run time (started -> ended, retries included)",
        style="dim",
        highlight=False,
        soft_wrap=True,
    )
    _print_recorded_profile(console, args.db)
    return EXIT_OK


def _print_stats_table(console: Console, by: str, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = [_Column(by, fixed=False)] + [
        _Column(header, justify="right")
        for header in ("runs", "completed", "failed", "not run", "retries", "p50", "p90", "max")
    ]
    cells = []
    for row in rows:
        failed = row["failed"] + row["timed_out"]
        not_run = row["cancelled"] + row["upstream_failed"] + row["skipped"]
        cells.append(
            [
                _text(str(row[by])),
                _text(str(row["runs"])),
                _text(str(row["completed"])),
                _text(str(failed), style="red" if failed else ""),
                _text(str(not_run), style="yellow" if not_run else ""),
                _text(str(row["retries"])),
                _text(_ms(row["duration_p50"])),
                _text(_ms(row["duration_p90"])),
                _text(_ms(row["duration_max"])),
            ]
        )
    _print_table(console, columns, cells)


# --------------------------------------------------------------------------- argument parsing


def _int_in_range(minimum: int, maximum: int | Callable[[], int]) -> Callable[[str], int]:
    """An argparse type: a whole number from *minimum* to *maximum* (or to what it returns)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        most = maximum if isinstance(maximum, int) else maximum()
        if value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}, got {text}")
        return value

    return parse


def _max_workers() -> int:
    # Imported when an option is parsed, not when the parser is built:
    # `threadloom --version` need not load the workflow machinery.
    from .workflow import MAX_WORKERS

    return MAX_WORKERS


#: ``history --limit``: more rows than this is not a listing anyone reads (0: all).
_MAX_LIMIT = 1_000_000_000


def _positive_seconds(text: str) -> float:
    from .workflow import MAX_SECONDS

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SECONDS} (a year), got {text}")
    return value


_EXIT_CODES = """\
exit codes: 0 success; 1 tasks failed (run); 2 usage or validation error;
130 interrupted (Ctrl-C; 143 for SIGTERM)"""

_TIMES = "times: 30s, 10m, 2h, 1d ago; an ISO date or date-time; or epoch seconds\n"


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


def _add_workers(parser: argparse.ArgumentParser, default: int | None, default_text: str) -> None:
    parser.add_argument(
        "--workers",
        type=_int_in_range(1, _max_workers),
        default=default,
        metavar="N",
        help=f"most worker threads (default: {default_text})",
    )


def _add_cluster(parser: argparse.ArgumentParser, extra: str = "") -> None:
    parser.add_argument(
        "--cluster",
        default=None,
        metavar="SPEC",
        help="run the tasks on a Dask cluster: local:N starts N worker processes on "
        "127.0.0.1 for the run; tcp://HOST:8786 uses a running scheduler "
        f"(needs threadloom[dask]){extra}",
    )


def _check_cluster(spec: str) -> None:
    """A bad ``--cluster`` (or a missing Dask) is a usage error, found before anything starts."""
    # Dask logs every worker's and the scheduler's comings and goings at INFO;
    # the command's own view says what matters.  Read when Dask is imported.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    try:
        from .distributed import parse_cluster
    except ImportError as exc:
        raise UsageError(f"cluster {spec!r}: {exc}") from None
    try:
        parse_cluster(spec)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _add_command(
    commands: Any, name: str, *, help: str, description: str, epilog: str = _EXIT_CODES
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _add_demo_command(commands: Any) -> None:
    demo = _add_command(
        commands,
        "demo",
        help="crawl a local test site with a task graph, live (start here)",
        description=(
            "Start a small news site on 127.0.0.1 (generated pages, varied latency, some "
            "failures) and crawl it for a while: fetches (IO-bound, retried with backoff), "
            "parses (CPU-bound), per-source aggregates and a report, at mixed priorities, "
            "with a breaking-news feed checked on a cron schedule. Ends with a summary; "
            "every task run is written to the history file."
        ),
    )
    demo.add_argument(
        "--duration",
        type=_positive_seconds,
        default=20.0,
        metavar="SECONDS",
        help="how long to keep starting crawl rounds (default: 20)",
    )
    _add_workers(demo, 8, "8")
    demo.add_argument("--seed", type=int, default=7, help="seed of the site's pages and failures")
    _add_cluster(demo)
    _add_db(demo)
    _add_live(demo)
    _add_dashboard(demo, optional=True)
    _add_profile_options(demo, flag=True)


def _add_run_command(commands: Any) -> None:
    run = _add_command(
        commands,
        "run",
        help="run a workflow file (TOML)",
        description=(
            "Validate and run a workflow file. With --once, the whole graph runs once and "
            "the command exits 0 if every task completed (or was skipped), 1 otherwise. "
            "Without it, the scheduled tasks (with what they depend on) fire on their "
            "schedules until Ctrl-C or --duration. With --check, the file is only "
            "validated, and nothing it names is imported.\n\n"
            "A workflow file is code: running it imports the modules it names and calls "
            "their functions. Run only files you trust; --check is safe on any file."
        ),
    )
    run.add_argument("workflow", metavar="WORKFLOW.toml", help="the workflow file")
    run.add_argument("--once", action="store_true", help="run the whole graph once and exit")
    run.add_argument(
        "--check",
        action="store_true",
        help="validate the file (syntax, fields, dependencies, schedules) without importing "
        "or running anything, and exit (0 valid, 2 invalid)",
    )
    _add_workers(run, None, "the file's workflow.workers, else 4")
    run.add_argument(
        "--stop-timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="after Ctrl-C, how long to wait for running tasks to stop before leaving them "
        "(default: 30)",
    )
    run.add_argument(
        "--duration",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="without --once: stop after this long (finishing what is in flight)",
    )
    _add_cluster(run, "; default: the file's workflow.cluster, else the local pool")
    _add_db(run)
    _add_live(run)
    _add_dashboard(run, optional=True)
    _add_profile_options(run, flag=True)


def _add_history_command(commands: Any) -> None:
    history = _add_command(
        commands,
        "history",
        help="list recorded task runs",
        description="List task runs from the history file, newest first.",
        epilog=_TIMES + _EXIT_CODES,
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
        type=_int_in_range(0, _MAX_LIMIT),
        default=50,
        metavar="N",
        help="show at most N runs (default: 50; 0: all)",
    )
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_db(history)


def _add_stats_command(commands: Any) -> None:
    stats = _add_command(
        commands,
        "stats",
        help="summarise the history per task",
        description="Counts per status, retries and run-time percentiles, per task or per tag.",
        epilog=_TIMES + _EXIT_CODES,
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


def _add_dashboard_command(commands: Any) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """Return the ``threadloom`` argument parser (one ``_add_*_command`` per command)."""
    parser = argparse.ArgumentParser(
        prog="threadloom",
        description="Run task graphs on threadloom's thread pool, and read their history.",
        epilog=_EXIT_CODES + "\n\nStart with: threadloom demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"threadloom {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo_command(commands)
    _add_run_command(commands)
    _add_history_command(commands)
    _add_stats_command(commands)
    _add_dashboard_command(commands)
    _add_profile_command(commands)
    return parser


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that writes to ``sys.stderr`` as it is when each record arrives.

    The live display swaps ``sys.stderr`` for a proxy that prints above it; a
    handler holding the stream it started with would write under the display,
    which would then draw over the record.
    """

    def emit(self, record: logging.LogRecord) -> None:
        # handle() holds this handler's lock around emit(): the swap is not racy.
        self.stream = sys.stderr
        super().emit(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        # threadloom's own records quote task names and errors: keep their
        # control characters off the terminal.  A user's records are theirs.
        if record.name == "threadloom" or record.name.startswith("threadloom."):
            return _clean(text)
        return text


def _console_width() -> int | None:
    """The output width: the terminal's, else ``$COLUMNS``, else 160 (None: let rich measure)."""
    text = os.environ.get("COLUMNS", "").strip()
    columns = int(text) if text.isascii() and text.isdigit() else None
    if columns is not None:
        # rich takes any number it is given; an absurd one would pad every line.
        columns = max(20, min(columns, 1000))
    if sys.stdout.isatty():
        return columns  # None: rich measures the terminal, ignoring a COLUMNS it cannot read
    # Off a terminal (a pipe, a log, a test), rich would wrap at 80 columns:
    # give tables room and let lines be as long as they are.
    return columns or 160


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "demo": _cmd_demo,
    "run": _cmd_run,
    "history": _cmd_history,
    "stats": _cmd_stats,
    "dashboard": _cmd_dashboard,
    "profile": _cmd_profile,
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

    root = logging.getLogger()
    if not root.handlers:
        handler = _StderrHandler()
        # Each record keeps its own logger's name: a task's "myapp" logger is not "threadloom".
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    # markup=False: what is printed is literal; the few styled strings are Text.
    console = Console(highlight=False, markup=False, width=_console_width())
    from .history import HistoryError

    try:
        return _COMMANDS[args.command](args, console)
    except (UsageError, HistoryError) as exc:
        print(f"threadloom {args.command}: error: {_clean(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nthreadloom: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
