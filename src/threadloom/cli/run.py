"""``threadloom run``: run a workflow file once, or on its schedules."""

from __future__ import annotations

import argparse
import datetime as _dt
from typing import TYPE_CHECKING, Any

from .._types import TaskStatus
from .console import (
    EXIT_FAILED,
    EXIT_OK,
    Column,
    Interrupts,
    UsageError,
    add_cluster,
    add_command,
    add_db,
    add_live,
    add_workers,
    describe,
    error_text,
    headline,
    literal_text,
    ms,
    positive_seconds,
    print_table,
    short,
    status_text,
)
from .dashboard import add_dashboard
from .live import View
from .session import (
    Session,
    Summary,
    add_profile_options,
    exit_abandoning,
    print_leftovers,
    print_summary,
    profiler_option,
    report_profile,
)

if TYPE_CHECKING:
    from rich.console import Console

    from ..workflow import Workflow

# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from ..workflow import WorkflowError, load_workflow

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
    interrupts = Interrupts()
    with interrupts:
        session = Session(
            console,
            db=args.db,
            workers=workers,
            live=args.live,
            dashboard=args.dashboard,
            token=args.token,
            cluster=args.cluster or (None if args.profile else workflow.cluster),
            profile=profiler_option(args),
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
    report_profile(console, session, args, source=f"run {args.workflow}")
    return exit_abandoning(session, code)


def _check_only(path: str, console: Console) -> int:
    """``run --check``: validate *path* without importing anything from it."""
    from ..workflow import WorkflowError, check_workflow

    try:
        check = check_workflow(path)
    except WorkflowError as exc:
        raise UsageError(str(exc)) from None
    scheduled = ", ".join(check.scheduled) or "none"
    console.print(
        literal_text(
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
    session: Session,
    workflow: Workflow,
    interrupts: Interrupts,
) -> int:
    manager = session.manager
    targets = [session.ids[name] for name, spec in workflow.tasks.items() if spec.enabled]
    console.print(
        headline(
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

    with View(session, lambda: f"{workflow.name} · {session.elapsed:4.1f} s") as view:
        completed = session.wait(view, interrupts, done)
    if not completed:
        session.announce_stop(interrupts, timeout=args.stop_timeout)
    session.stop(cancel=not completed, timeout=args.stop_timeout)
    info = manager.get_execution_status(execution_id)
    _print_task_table(console, session, workflow, info)
    summary = Summary(session.elapsed, session.runs(), session.executions())
    if not completed:
        assert interrupts.signum is not None
        print_leftovers(console, summary, interrupts.signum, session.abandoned)
        print_summary(console, summary, session.db)
        return interrupts.exit_code
    print_summary(console, summary, session.db)
    status = info.status
    console.print(f"result: {status.value}", highlight=False)
    return EXIT_OK if status is TaskStatus.COMPLETED else EXIT_FAILED


def _print_task_table(console: Console, session: Session, workflow: Workflow, info: Any) -> None:
    runs = {session.names[task_id]: run for task_id, run in info.tasks.items()}
    rows = []
    for name in workflow.tasks:
        run = runs.get(name)
        if run is None:
            continue
        if len(runs) > 40 and run.status is TaskStatus.COMPLETED:
            continue  # a big graph: show only what did not complete
        if run.error is not None:
            detail = error_text(run.error)
        elif name in info.results:
            detail = short(describe(info.results[name]), 200)
        else:
            detail = ""
        rows.append(
            [
                literal_text(name),
                status_text(run.status),
                literal_text(str(run.attempts)),
                literal_text("" if run.duration is None else ms(run.duration)),
                literal_text(detail),
            ]
        )
    columns = [
        Column("task", fixed=False),
        Column("status"),
        Column("attempts", justify="right"),
        Column("time", justify="right"),
        Column("result or error", fixed=False, ratio=3),
    ]
    print_table(console, columns, rows)


def _run_scheduled(
    args: argparse.Namespace,
    console: Console,
    session: Session,
    workflow: Workflow,
    interrupts: Interrupts,
) -> int:
    from ..scheduling import local_timezone

    manager = session.manager
    scheduled = workflow.scheduled
    reachable = set(workflow.closure(spec.name for spec in scheduled))
    idle = [name for name, spec in workflow.tasks.items() if name not in reachable and spec.enabled]
    session.start()
    now = _dt.datetime.now(local_timezone())
    console.print(
        headline(
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
        console.print(
            literal_text(f"  {spec.name}: {spec.schedule!r}, next at {when}"), soft_wrap=True
        )
    if idle:
        console.print(
            literal_text(
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
    with View(session, title) as view:
        completed = session.wait(view, interrupts, time_is_up)
        if completed:
            for spec in scheduled:
                manager.update_task(session.ids[spec.name], schedule=None)
            completed = session.wait(view, interrupts, drained)
    if not completed:
        session.announce_stop(interrupts, timeout=args.stop_timeout)
    session.stop(cancel=not completed, timeout=args.stop_timeout)
    summary = Summary(session.elapsed, session.runs(), session.executions())
    if not completed:
        assert interrupts.signum is not None
        print_leftovers(console, summary, interrupts.signum, session.abandoned)
        print_summary(console, summary, session.db)
        return interrupts.exit_code
    print_summary(console, summary, session.db)
    failed = any(e.status is not TaskStatus.COMPLETED for e in summary.executions)
    return EXIT_FAILED if failed else EXIT_OK


def add_run_command(commands: Any) -> None:
    run = add_command(
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
    add_workers(run, None, "the file's workflow.workers, else 4")
    run.add_argument(
        "--stop-timeout",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="after Ctrl-C, how long to wait for running tasks to stop before leaving them "
        "(default: 30)",
    )
    run.add_argument(
        "--duration",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="without --once: stop after this long (finishing what is in flight)",
    )
    add_cluster(run, "; default: the file's workflow.cluster, else the local pool")
    add_db(run)
    add_live(run)
    add_dashboard(run, optional=True)
    add_profile_options(run, flag=True)
