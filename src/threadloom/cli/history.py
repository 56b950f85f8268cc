"""``threadloom history``: the recorded runs, filtered by task, status and time."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .._types import TaskStatus
from .console import (
    EXIT_CODES,
    EXIT_OK,
    MAX_LIMIT,
    TERMINAL_ORDER,
    TIMES,
    Column,
    UsageError,
    add_command,
    add_db,
    int_in_range,
    iso,
    literal_text,
    ms,
    print_table,
    status_text,
)

if TYPE_CHECKING:
    from rich.console import Console

    from ..history import ExecutionRecord, TaskHistory, TaskRunRecord

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
def open_history(db: str) -> Iterator[TaskHistory]:
    from ..history import HistoryError, TaskHistory

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
                known = ", ".join(s.value for s in TERMINAL_ORDER)
                raise UsageError(f"unknown status {part!r}; use one of {known}") from None
    return statuses or None


def query_runs(
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


def time_options(args: argparse.Namespace) -> tuple[float | None, float | None]:
    try:
        since = None if args.since is None else parse_time(args.since)
        until = None if args.until is None else parse_time(args.until)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return since, until


def cmd_history(args: argparse.Namespace, console: Console) -> int:
    statuses = _statuses(args.status)
    since, until = time_options(args)
    limit = None if args.limit == 0 else args.limit
    with open_history(args.db) as history:
        runs = query_runs(
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
            row["finished"] = iso(run.finished_at)
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
        Column("finished"),
        Column("task", fixed=False),
        Column("status"),
        Column("attempts", justify="right"),
        Column("time", justify="right"),
        Column("error", fixed=False, ratio=3),
    ]
    rows = []
    for run in runs:
        finished = _dt.datetime.fromtimestamp(run.finished_at).strftime("%Y-%m-%d %H:%M:%S")
        error = f"{run.error_type}: {run.error_message}" if run.error_type else ""
        rows.append(
            [
                literal_text(finished),
                literal_text(run.task_name),
                status_text(run.status),
                literal_text(str(run.attempts)),
                literal_text("" if run.duration is None else ms(run.duration)),
                literal_text(error),
            ]
        )
    print_table(console, columns, rows)


def add_history_command(commands: Any) -> None:
    history = add_command(
        commands,
        "history",
        help="list recorded task runs",
        description="List task runs from the history file, newest first.",
        epilog=TIMES + EXIT_CODES,
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
        type=int_in_range(0, MAX_LIMIT),
        default=50,
        metavar="N",
        help="show at most N runs (default: 50; 0: all)",
    )
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    add_db(history)
