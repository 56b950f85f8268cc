"""``threadloom dashboard``, and the ``--dashboard`` option of the commands that run tasks."""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from .console import EXIT_CODES, EXIT_OK, Interrupts, UsageError, add_db, positive_seconds

if TYPE_CHECKING:
    from rich.console import Console

# --------------------------------------------------------------------------- the dashboard


def serve_dashboard(
    console: Console, source: Any, address: tuple[str, int], token: str | None, history: Any = None
) -> Any:
    """Start a dashboard on *address* and print its URL; bad input is a UsageError."""
    from ..dashboard import Dashboard, DashboardError

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


def cmd_dashboard(args: argparse.Namespace, console: Console) -> int:
    """Serve the history file alone until Ctrl-C."""
    address = args.dashboard or ("127.0.0.1", 0)
    interrupts = Interrupts()
    with interrupts:
        dashboard = serve_dashboard(console, None, address, args.token, history=args.db)
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
    from ..dashboard import parse_bind

    try:
        return parse_bind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_dashboard(parser: argparse.ArgumentParser, *, optional: bool) -> None:
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


def add_dashboard_command(commands: Any) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="serve the web dashboard over a history file",
        description="Serve the dashboard's history views over the history file alone "
        "(no live process) until Ctrl-C.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_db(dashboard)
    add_dashboard(dashboard, optional=False)
    dashboard.add_argument(
        "--duration",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
