"""What every command shares: exit codes, user strings printed literally, signal
handling, tables, and the argument helpers."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import logging
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from .._types import TaskStatus

if TYPE_CHECKING:
    from rich.console import Console, JustifyMethod
    from rich.text import Text


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEFAULT_DB = "threadloom-history.db"
_DB_ENV = "THREADLOOM_DB"

#: Terminal statuses in the order the summary prints them.
TERMINAL_ORDER = (
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
STATUS_STYLE = {
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


def clean(text: str) -> str:
    """*text* with control characters shown as escapes (``\\x1b``), so none reaches the terminal."""
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def literal_text(text: str, style: str = "") -> Text:
    """A user string as a rich Text: printed literally (no markup), controls escaped."""
    from rich.text import Text

    return Text(clean(text), style=style)


def headline(name: str, rest: str) -> Text:
    """*name* (a user string) in bold, then *rest* (ours) plain."""
    from rich.text import Text

    return Text.assemble((clean(name), "bold"), rest)


def describe(value: object) -> str:
    """``repr(value)``, or what went wrong with it: a result never breaks the output."""
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__name__} object: its repr() raised {type(exc).__name__}>"


def error_text(error: BaseException) -> str:
    """``Type: message`` for an exception, even one whose ``__str__`` raises."""
    try:
        message = str(error)
    except Exception as exc:
        message = f"<its str() raised {type(exc).__name__}>"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# --------------------------------------------------------------------------- signals


class Interrupts:
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

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def ms(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def status_text(status: TaskStatus) -> Text:
    return literal_text(status.value, style=STATUS_STYLE.get(status, ""))


@dataclasses.dataclass(frozen=True)
class Column:
    """A column of :func:`print_table`.

    A *fixed* column (a status, a time, a number) is as wide as its widest
    cell and never wrapped; the others fold into the room left, in *ratio*.
    """

    header: str
    fixed: bool = True
    justify: JustifyMethod = "left"
    ratio: int = 1


#: The narrowest a folding column may get before the table gives up its layout.
_MIN_FOLD_WIDTH = 10


def print_table(
    console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Text]]
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


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return _dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- argument parsing


def int_in_range(minimum: int, maximum: int | Callable[[], int]) -> Callable[[str], int]:
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
    from ..workflow import MAX_WORKERS

    return MAX_WORKERS


#: ``history --limit``: more rows than this is not a listing anyone reads (0: all).
MAX_LIMIT = 1_000_000_000


def positive_seconds(text: str) -> float:
    from ..workflow import MAX_SECONDS

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SECONDS} (a year), got {text}")
    return value


EXIT_CODES = """\
exit codes: 0 success; 1 tasks failed (run); 2 usage or validation error;
130 interrupted (Ctrl-C; 143 for SIGTERM)"""

TIMES = "times: 30s, 10m, 2h, 1d ago; an ISO date or date-time; or epoch seconds\n"


def add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="FILE",
        default=os.environ.get(_DB_ENV) or DEFAULT_DB,
        help=f"the SQLite history file (default: ${_DB_ENV} or ./{DEFAULT_DB})",
    )


def add_live(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-live",
        dest="live",
        action="store_false",
        help="print a progress line every 2 s instead of the live display "
        "(the default when output is not a terminal)",
    )


def add_workers(parser: argparse.ArgumentParser, default: int | None, default_text: str) -> None:
    parser.add_argument(
        "--workers",
        type=int_in_range(1, _max_workers),
        default=default,
        metavar="N",
        help=f"most worker threads (default: {default_text})",
    )


def add_cluster(parser: argparse.ArgumentParser, extra: str = "") -> None:
    parser.add_argument(
        "--cluster",
        default=None,
        metavar="SPEC",
        help="run the tasks on a Dask cluster: local:N starts N worker processes on "
        "127.0.0.1 for the run; tcp://HOST:8786 uses a running scheduler "
        f"(needs threadloom[dask]){extra}",
    )


def check_cluster(spec: str) -> None:
    """A bad ``--cluster`` (or a missing Dask) is a usage error, found before anything starts."""
    # Dask logs every worker's and the scheduler's comings and goings at INFO;
    # the command's own view says what matters.  Read when Dask is imported.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    try:
        from ..distributed import parse_cluster
    except ImportError as exc:
        raise UsageError(f"cluster {spec!r}: {exc}") from None
    try:
        parse_cluster(spec)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def add_command(
    commands: Any, name: str, *, help: str, description: str, epilog: str = EXIT_CODES
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
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
            return clean(text)
        return text


def console_width() -> int | None:
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
