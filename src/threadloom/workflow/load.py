"""Loading: a workflow file (or a parsed document) read and checked, and a lone
schedule field parsed as a file would."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._errors import WorkflowError, WorkflowProblem
from ..scheduling import Schedule
from .check import Checker
from .model import Workflow, WorkflowCheck

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found]

__all__ = [
    "check_workflow",
    "load_workflow",
    "parse_schedule",
    "parse_workflow",
    "workflow_problems",
]


def load_workflow(path: str | os.PathLike[str]) -> Workflow:
    """Read, validate and import a workflow file.

    Directories in ``[workflow] python_path`` (default: the file's own
    directory) are put at the front of ``sys.path`` so that its callables can
    live next to it; they stay there, as the tasks may import lazily.

    Args:
        path: The TOML file.

    Returns:
        The workflow, every callable imported and every schedule parsed.

    Raises:
        WorkflowError: The file cannot be read, is not TOML, or is invalid; the
            error lists every problem found.
    """
    source = os.fspath(path)
    data = _read_toml(source)
    return parse_workflow(data, source=source, base_dir=Path(source).resolve().parent)


def check_workflow(path: str | os.PathLike[str]) -> WorkflowCheck:
    """Validate a workflow file without importing or running anything from it.

    Checks what :func:`load_workflow` checks, except what needs the code:
    ``call`` and ``retry_on`` are checked as ``module:function`` syntax only
    (not imported, so neither their existence nor the arguments against the
    function's signature), and ``python_path`` is not put on ``sys.path``.

    Args:
        path: The TOML file.

    Returns:
        The workflow's name, tasks in dependency order and scheduled tasks.

    Raises:
        WorkflowError: Every problem found.
    """
    source = os.fspath(path)
    data = _read_toml(source)
    checker = Checker(source, Path(source).resolve().parent, import_code=False)
    return checker.check(data)


def _read_toml(source: str) -> Any:
    def fail(message: str) -> WorkflowError:
        return WorkflowError([WorkflowProblem(source, None, None, message)])

    try:
        with open(source, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise fail("no such file") from None
    except IsADirectoryError:
        raise fail("is a directory") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc}") from None
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise fail(
            f"not UTF-8 text (a TOML file must be UTF-8): byte {byte:#04x} at offset {exc.start}"
        ) from None
    except RecursionError:
        raise fail("not readable: arrays or tables are nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"not valid TOML: {exc}") from None


def parse_workflow(
    data: Mapping[str, Any], *, source: str = "<workflow>", base_dir: str | os.PathLike[str] = "."
) -> Workflow:
    """Validate a workflow already parsed from TOML (or built as a dict).

    Args:
        data: The document: a ``workflow`` table and a ``tasks`` table of tables.
        source: The name problems are reported under.
        base_dir: The directory ``python_path`` entries are relative to.

    Returns:
        The workflow.

    Raises:
        WorkflowError: Every problem found.
    """
    return Checker(source, Path(base_dir)).workflow(data)


def workflow_problems(
    data: Mapping[str, Any],
    *,
    source: str = "<workflow>",
    base_dir: str | os.PathLike[str] = ".",
    import_code: bool = True,
) -> list[WorkflowProblem]:
    """Every problem :func:`parse_workflow` would raise for *data*, as a list.

    The same checks and messages, for a caller that shows problems as they
    appear (the workflow designer) rather than stopping at them.  With
    *import_code* False, it checks what :func:`check_workflow` checks.

    Returns:
        The problems, in file order; empty if the document is valid.
    """
    checker = Checker(source, Path(base_dir), import_code=import_code)
    try:
        checker.document(data)
    except WorkflowError:
        pass  # a structural problem ended the check early; it is in checker.problems
    except RecursionError:
        checker.problem(None, None, "values are nested too deeply")
    return list(checker.problems)


def parse_schedule(
    value: object, timezone: str | None = None, *, source: str = "<workflow>", task: str = ""
) -> Schedule:
    """Build a task's ``schedule`` field as a workflow file would (cron string or table).

    Args:
        value: The field's value, e.g. ``"0 9 * * MON-FRI"`` or ``{every = 30, unit = "seconds"}``.
        timezone: The workflow's time zone (None: local).
        source: The name problems are reported under.
        task: The task problems are reported under.

    Raises:
        WorkflowError: The schedule is invalid (the messages of :func:`load_workflow`).
    """
    checker = Checker(source, Path("."), import_code=False)
    schedule = checker.schedule(task, value, timezone)
    if checker.problems or schedule is None:
        if not checker.problems:
            checker.problem(task, "schedule", "no schedule given")
        raise WorkflowError(checker.problems)
    return schedule
