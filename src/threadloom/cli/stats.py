"""``threadloom stats``: per-task figures from the history."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .console import (
    EXIT_CODES,
    EXIT_OK,
    TERMINAL_ORDER,
    TIMES,
    Column,
    add_command,
    add_db,
    iso,
    literal_text,
    ms,
    print_table,
)
from .history import open_history, query_runs, time_options
from .session import print_recorded_profile, recorded_json, recorded_profiles

if TYPE_CHECKING:
    from rich.console import Console

    from ..history import TaskRunRecord


def cmd_stats(args: argparse.Namespace, console: Console) -> int:
    from ..executor import Percentiles

    since, until = time_options(args)
    with open_history(args.db) as history:
        runs = query_runs(
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
                **{s.value: counts.get(s, 0) for s in TERMINAL_ORDER},
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
                    "runs_by_status": {s.value: totals.get(s.value, 0) for s in TERMINAL_ORDER},
                    "retries": sum(max(0, r.attempts - 1) for r in runs),
                    "first": iso(min((r.finished_at for r in runs), default=None)),
                    "last": iso(max((r.finished_at for r in runs), default=None)),
                    "groups": rows,
                    "profiles": [recorded_json(p) for p in recorded_profiles(args.db)],
                }
            )
        )
        return EXIT_OK
    console.print(literal_text(f"history: {os.path.abspath(args.db)}"), soft_wrap=True)
    if not runs:
        console.print("no runs match", highlight=False)
        return EXIT_OK
    first = min(r.finished_at for r in runs)
    last = max(r.finished_at for r in runs)
    console.print(
        f"runs: {len(runs)} from {iso(first)} to {iso(last)}; executions: {len(executions)} ("
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
    print_recorded_profile(console, args.db)
    return EXIT_OK


def _print_stats_table(console: Console, by: str, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = [Column(by, fixed=False)] + [
        Column(header, justify="right")
        for header in ("runs", "completed", "failed", "not run", "retries", "p50", "p90", "max")
    ]
    cells = []
    for row in rows:
        failed = row["failed"] + row["timed_out"]
        not_run = row["cancelled"] + row["upstream_failed"] + row["skipped"]
        cells.append(
            [
                literal_text(str(row[by])),
                literal_text(str(row["runs"])),
                literal_text(str(row["completed"])),
                literal_text(str(failed), style="red" if failed else ""),
                literal_text(str(not_run), style="yellow" if not_run else ""),
                literal_text(str(row["retries"])),
                literal_text(ms(row["duration_p50"])),
                literal_text(ms(row["duration_p90"])),
                literal_text(ms(row["duration_max"])),
            ]
        )
    print_table(console, columns, cells)


def add_stats_command(commands: Any) -> None:
    stats = add_command(
        commands,
        "stats",
        help="summarise the history per task",
        description="Counts per status, retries and run-time percentiles, per task or per tag.",
        epilog=TIMES + EXIT_CODES,
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
    add_db(stats)
