"""One execution's state, its snapshot, and its rows in the history.

:class:`Execution` is what the manager keeps about an execution in flight (and
a few finished ones): its core ``GraphRunner`` and what is recorded about it.
The rest turns an execution into what is kept or shown: its history row
(:func:`execution_record`), a run's error as its row's columns
(:func:`describe_error`), and an :class:`ExecutionInfo` from the live runner
(:meth:`Execution.snapshot`) or from the history
(:func:`execution_from_history`).
"""

from __future__ import annotations

import threading
import time
import traceback
from types import MappingProxyType
from typing import Any

from .._errors import UnknownExecutionError
from .._types import TaskStatus
from ..history import ExecutionRecord, TaskHistory
from .records import EMPTY, ExecutionInfo, TaskRunInfo

# The runner's node codes (see GraphRunner.node_status_code).
_CODE_COMPLETED = 2
_CODE_CANCELLED = 4
_CODE_SKIPPED = 6


class Execution:
    """One execution: its graph run and what is recorded about it."""

    __slots__ = (
        "_index",
        "done",
        "execution_id",
        "finished_at",
        "first_error",
        "job_id",
        "runner",
        "start_perf",
        "started_at",
        "status",
        "targets",
        "trigger",
    )

    def __init__(
        self,
        execution_id: str,
        targets: tuple[str, ...],
        runner: Any,
        trigger: str,
        job_id: str | None,
    ) -> None:
        self.execution_id = execution_id
        self.targets = targets
        self.runner = runner
        self.trigger = trigger
        self.job_id = job_id
        self.started_at = time.time()
        self.start_perf = time.perf_counter()
        self.finished_at: float | None = None
        self.status = TaskStatus.RUNNING
        self.first_error: tuple[str, BaseException] | None = None
        self.done = threading.Event()
        self._index: dict[str, int] | None = None

    def index_of(self, task_id: str) -> int | None:
        """The node of task *task_id* in this execution, or None."""
        index = self._index
        if index is None:
            runner = self.runner
            index = self._index = {runner.task(i).task_id: i for i in range(runner.size)}
        return index.get(task_id)

    def final_status(self) -> TaskStatus:
        """The status the execution ends in, once every node has ended."""
        runner = self.runner
        codes = {runner.node_status_code(i) for i in range(runner.size)}
        if runner.cancel_requested and _CODE_CANCELLED in codes:
            return TaskStatus.CANCELLED
        if codes <= {_CODE_COMPLETED, _CODE_SKIPPED}:
            return TaskStatus.COMPLETED
        return TaskStatus.FAILED

    def snapshot(self) -> ExecutionInfo:
        """The execution as it is now: every task's run, the results of those that completed."""
        runner = self.runner
        tasks: dict[str, TaskRunInfo] = {}
        results: dict[str, Any] = {}
        for i in range(runner.size):
            task = runner.task(i)
            status, priority, attempts, queued, started, finished, duration, error = (
                runner.node_record(i)
            )
            tasks[task.task_id] = TaskRunInfo(
                task.task_id,
                task.name,
                status,
                priority,
                attempts,
                queued,
                started,
                finished,
                duration,
                error,
            )
            if status is TaskStatus.COMPLETED:
                results[task.name] = runner.result(i)
        return ExecutionInfo(
            execution_id=self.execution_id,
            status=self.status,
            targets=self.targets,
            trigger=self.trigger,
            started_at=self.started_at,
            finished_at=self.finished_at,
            tasks=MappingProxyType(tasks),
            results=MappingProxyType(results),
        )


def execution_from_history(history: TaskHistory, execution_id: str) -> ExecutionInfo:
    """The snapshot of an execution as *history* recorded it (no results, no errors).

    Raises:
        UnknownExecutionError: The history has no such execution.
    """
    records = history.query_executions(execution_id=execution_id)
    if not records:
        raise UnknownExecutionError(execution_id)
    (record,) = records
    runs = history.query_runs(execution_id=execution_id, limit=None)
    return ExecutionInfo(
        execution_id=execution_id,
        status=record.status,
        targets=record.targets,
        trigger=record.trigger,
        started_at=record.started_at,
        finished_at=record.finished_at,
        tasks=MappingProxyType(
            {
                r.task_id: TaskRunInfo(
                    r.task_id,
                    r.task_name,
                    r.status,
                    0,
                    r.attempts,
                    r.queued_at,
                    r.started_at,
                    r.finished_at,
                    r.duration,
                    None,
                )
                for r in runs
            }
        ),
        results=EMPTY,
    )


def execution_record(execution: Execution) -> ExecutionRecord:
    """The execution's row in the history, as it stands (running or ended)."""
    finished = execution.finished_at
    error = execution.first_error
    return ExecutionRecord(
        execution.execution_id,
        execution.targets,
        execution.status,
        execution.trigger,
        execution.runner.size,
        execution.started_at,
        finished,
        None if finished is None else time.perf_counter() - execution.start_perf,
        None if error is None else type(error[1]).__qualname__,
        None if error is None else f"task {error[0]!r}: {safe_str(error[1])}",
    )


def describe_error(error: BaseException) -> tuple[str, str, str | None]:
    """``(error_type, error_message, traceback)`` of a run's error, for its history row."""
    return type(error).__qualname__, safe_str(error), format_traceback(error)


def safe_str(error: BaseException) -> str:
    """``str(error)``, or a stand-in if the exception's own ``__str__`` raises."""
    try:
        return str(error)
    except Exception as exc:
        return f"<{type(error).__qualname__}: str() raised {type(exc).__qualname__}>"


def format_traceback(error: BaseException) -> str | None:
    """The formatted traceback of *error*, or None if formatting it raises."""
    try:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:
        return None
