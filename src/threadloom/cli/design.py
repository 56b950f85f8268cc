"""``threadloom design``: the workflow designer, a page of the dashboard, on one file."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .console import EXIT_CODES, UsageError, add_db, positive_seconds

if TYPE_CHECKING:
    from rich.console import Console


def cmd_design(args: argparse.Namespace, console: Console) -> int:
    """Serve the workflow designer on a file until Ctrl-C."""
    from ..dashboard.designer import DesignerError, serve_designer

    try:
        return serve_designer(
            args.workflow,
            modules=args.module,
            port=args.port,
            history=args.db,
            duration=args.duration,
            announce=lambda text: console.print(text, highlight=False, soft_wrap=True),
        )
    except DesignerError as exc:
        raise UsageError(str(exc)) from None


def add_design_command(commands: Any) -> None:
    design = commands.add_parser(
        "design",
        help="draw a workflow file in the browser",
        description="Serve the workflow designer on WORKFLOW.toml (created if missing) and\n"
        "print its URL until Ctrl-C. The palette offers the public functions of the\n"
        "--module modules, of the workflow's python_path and of its tasks' modules.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    design.add_argument("workflow", metavar="WORKFLOW.toml", help="the workflow file")
    design.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="NAME",
        help="a module whose public functions join the palette (repeatable)",
    )
    design.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)"
    )
    add_db(design)
    design.add_argument(
        "--duration",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
