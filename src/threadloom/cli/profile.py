"""``threadloom profile``: run a workflow with the profiler on, and report."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .console import add_command, add_db, add_live, add_workers, console_width, positive_seconds
from .run import cmd_run
from .session import add_profile_options

if TYPE_CHECKING:
    from rich.console import Console


def cmd_profile(args: argparse.Namespace, console: Console) -> int:
    from rich.console import Console as RichConsole

    # The run's own output goes to stderr when stdout carries the JSON.
    run_console = (
        RichConsole(stderr=True, highlight=False, markup=False, width=console_width())
        if args.json
        else console
    )
    return cmd_run(args, run_console)


def add_profile_command(commands: Any) -> None:
    profile = add_command(
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
    add_workers(profile, None, "the file's workflow.workers, else 4")
    profile.add_argument(
        "--stop-timeout",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="after Ctrl-C, how long to wait for running tasks (default: 30)",
    )
    profile.add_argument(
        "--json", action="store_true", help="print the profile as one JSON object on stdout"
    )
    add_profile_options(profile, flag=False)
    add_db(profile)
    add_live(profile)
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
