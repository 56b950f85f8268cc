"""The records a history keeps, its writer's counters, and the row form of a run
that a producer hands over (:meth:`TaskHistory.record_run_rows`)."""

from __future__ import annotations

import functools
import json
from typing import Any, NamedTuple

from .._types import TaskStatus

__all__ = ["ExecutionRecord", "HistoryStats", "TaskRunRecord", "run_row", "tags_json"]


class TaskRunRecord(NamedTuple):
    """One task's run inside one execution, from queueing to its terminal state.

    Times are seconds since the epoch; ``duration`` is measured with a monotonic
    clock from the first attempt's start, and is ``None`` for a run that never
    started (cancelled while queued, or skipped for a failed upstream).
    ``traceback`` is the formatted traceback of the last failed attempt
    (``"".join(traceback.format_exception(error))``), or ``None``.
    """

    run_id: str
    execution_id: str
    task_id: str
    task_name: str
    status: TaskStatus
    attempts: int
    queued_at: float | None
    started_at: float | None
    finished_at: float
    duration: float | None
    error_type: str | None
    error_message: str | None
    tags: tuple[str, ...]
    traceback: str | None = None


class ExecutionRecord(NamedTuple):
    """One execution: a set of target tasks run with their dependency closure.

    An execution is recorded when it starts (status RUNNING, no finish time) and
    recorded again, replacing that row, when it ends.  One whose process died
    before it ended reads as INTERRUPTED.
    """

    execution_id: str
    targets: tuple[str, ...]
    status: TaskStatus
    trigger: str
    task_count: int
    started_at: float
    finished_at: float | None
    duration: float | None
    error_type: str | None
    error_message: str | None


class HistoryStats(NamedTuple):
    """Counters of the writer: rows committed, rows lost to failed writes, failed batches."""

    written: int
    dropped: int
    write_errors: int


@functools.lru_cache(maxsize=4096)
def tags_json(tags: tuple[str, ...]) -> str:
    """The ``tags`` column of a run row: the tags as a JSON list."""
    # Cached: a task's runs all carry the same tags tuple, and json.dumps is
    # most of the cost of turning a record into a row.
    return json.dumps(list(tags))


def run_row(record: TaskRunRecord) -> tuple[Any, ...]:
    """The row of *record* that :meth:`TaskHistory.record_run_rows` takes."""
    # The status's plain str: sqlite3 binds an exact str without looking for
    # an adapter first.
    return (
        *record[:4],
        record.status.value,
        *record[5:12],
        tags_json(record.tags),
        record.traceback,
    )
