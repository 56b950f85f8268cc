"""The ``threadloom`` command: demo, run, history, stats, dashboard, profile and design.

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

One module per command (``demo``, ``run``, ``history``, ``stats``,
``dashboard``, ``profile``, ``design``), each with its ``cmd_<name>`` and
``add_<name>_command``; what they share is in ``console`` (exit codes, user
strings, signals, tables, argument helpers), ``session`` (the machinery of a
command that runs tasks, and its summary) and ``live`` (the live view).  This
module builds the parser and dispatches.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._version import __version__
from .console import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    StderrHandler,
    UsageError,
    clean,
    console_width,
)
from .dashboard import add_dashboard_command, cmd_dashboard
from .demo import add_demo_command, cmd_demo
from .design import add_design_command, cmd_design
from .history import add_history_command, cmd_history, parse_time
from .profile import add_profile_command, cmd_profile
from .run import add_run_command, cmd_run
from .stats import add_stats_command, cmd_stats

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "main",
    "parse_time",
]


def build_parser() -> argparse.ArgumentParser:
    """Return the ``threadloom`` argument parser (each command module adds its own)."""
    parser = argparse.ArgumentParser(
        prog="threadloom",
        description="Run task graphs on threadloom's thread pool, and read their history.",
        epilog=EXIT_CODES + "\n\nStart with: threadloom demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"threadloom {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_demo_command(commands)
    add_run_command(commands)
    add_history_command(commands)
    add_stats_command(commands)
    add_dashboard_command(commands)
    add_profile_command(commands)
    add_design_command(commands)
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "demo": cmd_demo,
    "run": cmd_run,
    "history": cmd_history,
    "stats": cmd_stats,
    "dashboard": cmd_dashboard,
    "profile": cmd_profile,
    "design": cmd_design,
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
        handler = StderrHandler()
        # Each record keeps its own logger's name: a task's "myapp" logger is not "threadloom".
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    # markup=False: what is printed is literal; the few styled strings are Text.
    console = Console(highlight=False, markup=False, width=console_width())
    from ..history import HistoryError

    try:
        return _COMMANDS[args.command](args, console)
    except (UsageError, HistoryError) as exc:
        print(f"threadloom {args.command}: error: {clean(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nthreadloom: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
