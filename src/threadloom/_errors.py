"""Every public exception of threadloom, in one place (the core included).

Each is re-exported from the module that raises it (so imports written for
the original API keep working) and from :mod:`threadloom`.
``BrokenThreadPool`` stays the stdlib's
:class:`concurrent.futures.thread.BrokenThreadPool`, so code written for the
stdlib executor catches ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "ClusterUnreachableError",
    "DashboardError",
    "DependencyCycleError",
    "DesignerError",
    "HistoryError",
    "PaletteError",
    "QueueFull",
    "RequestRefused",
    "TaskCancelled",
    "TaskDependencyError",
    "TaskNotFinished",
    "UnknownDependencyError",
    "UnknownExecutionError",
    "UnknownTaskError",
    "WorkflowError",
    "WorkflowProblem",
]


class TaskCancelled(Exception):
    """Raised by ``current_task().check_cancelled()`` once cancellation was requested."""


class _UnknownKeyError(KeyError):
    """A lookup by id failed: a ``KeyError`` whose ``str()`` is a sentence.

    ``args[0]`` is the key looked up (``KeyError`` semantics); ``args[1]``, the
    message, travels in ``args`` so that a pickled copy keeps it.
    """

    def __init__(self, key: object, message: str | None = None) -> None:
        super().__init__(key, self._default_message(key) if message is None else message)

    @property
    def key(self) -> object:
        """The id (or name) that was looked up."""
        return self.args[0]

    def _default_message(self, key: object) -> str:
        return f"unknown id {key!r}"

    def __str__(self) -> str:
        return str(self.args[1]) if len(self.args) > 1 else str(self.args[0])


class UnknownTaskError(_UnknownKeyError):
    """No task has this id (or name): never submitted or registered, or pruned.

    One class for both the :class:`~threadloom.ThreadPoolManager`'s task ids and
    the :class:`~threadloom.TaskManager`'s registered tasks, so one
    ``except UnknownTaskError`` catches either.
    """

    def _default_message(self, key: object) -> str:
        return f"unknown task id {key!r} (never submitted, or pruned after finishing)"


class UnknownExecutionError(_UnknownKeyError):
    """No execution has this id (neither in memory nor in the history)."""

    def _default_message(self, key: object) -> str:
        return f"no execution has id {key!r}"


class TaskNotFinished(RuntimeError):
    """The task has not finished yet, so it has no error to report."""


class QueueFull(RuntimeError):
    """The pool's queue is at ``max_queue_size`` and the policy refused to wait."""


class HistoryError(Exception):
    """The history database cannot be used (bad path, not SQLite, locked, closed, full)."""


class TaskDependencyError(ValueError):
    """A dependency declaration is invalid."""


class UnknownDependencyError(TaskDependencyError):
    """A task depends on a task that is not registered.

    Attributes:
        task: The name of the declaring task.
        missing: The references that name no registered task.
    """

    def __init__(self, task: str, missing: Sequence[str]) -> None:
        self.task = task
        self.missing = tuple(missing)
        super().__init__(
            f"task {task!r} depends on unknown task(s): {', '.join(map(repr, self.missing))}"
        )


class DependencyCycleError(TaskDependencyError):
    """Declared dependencies would form a cycle.

    Attributes:
        cycle: The names of the tasks on the cycle, first repeated last
            (``("a", "b", "a")``: a depends on b, which depends on a).
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(f"dependency cycle: {' -> '.join(self.cycle)}")


class ClusterUnreachableError(ConnectionError):
    """The Dask scheduler at the address given could not be reached."""


class DashboardError(RuntimeError):
    """The dashboard cannot start: a port in use, a bad host, an unreadable history."""


class DesignerError(Exception):
    """The workflow designer cannot start: its workflow file cannot be created or
    read (or is not TOML), a palette module cannot be used, or the port cannot be bound."""


class PaletteError(ValueError):
    """A module of the designer's palette cannot be used (bad name, import failure)."""


class RequestRefused(Exception):
    """A request the workflow designer refuses; :attr:`status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class WorkflowProblem(NamedTuple):
    """One thing wrong with a workflow file.

    Attributes:
        file: The workflow file (or the source name given to :func:`parse_workflow`).
        task: The task the problem is in, or None for the file or ``[workflow]``.
        field: The field (dotted for nested ones, e.g. ``retry.delay``), or None.
        message: What is wrong, and what would be right.
    """

    file: str
    task: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.task is not None:
            where.append(f"task {self.task!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        if not where:
            return f"{self.file}: {self.message}"
        return f"{self.file}: {', '.join(where)}: {self.message}"


class WorkflowError(ValueError):
    """A workflow file is invalid; :attr:`problems` lists everything found wrong.

    Attributes:
        problems: Every problem, in file order (tasks first, then the graph).
    """

    def __init__(self, problems: Sequence[WorkflowProblem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        files = ", ".join(dict.fromkeys(p.file for p in self.problems))
        header = f"invalid workflow {files} ({count} problem{'s' if count != 1 else ''})"
        super().__init__(header + ":\n" + "\n".join(f"  {p}" for p in self.problems))
