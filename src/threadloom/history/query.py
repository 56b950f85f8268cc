"""Queries: the filters and the paging of runs and executions, and the rows read
back into records (an execution whose process has ended read as INTERRUPTED)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._types import TaskStatus
from .owner import INTERRUPTED_TYPE, interrupted_message, owner_is_dead
from .records import ExecutionRecord, TaskRunRecord

__all__ = ["Read", "find_executions", "find_runs"]

#: How a query reaches the database: runs the function on a connection that
#: sees every record queued before the query (TaskHistory._read).
Read = Callable[[Callable[[sqlite3.Connection], list[Any]]], list[Any]]


def find_runs(
    read: Read,
    columns: str,
    *,
    task_id: str | None,
    execution_id: str | None,
    status: TaskStatus | str | Iterable[TaskStatus | str] | None,
    since: float | None,
    until: float | None,
    limit: int | None,
    offset: int,
) -> list[TaskRunRecord]:
    """TaskHistory.query_runs, selecting *columns* through *read*."""
    statuses = None if status is None else _statuses(status)
    where, params = _filters(
        [("task_id", task_id), ("execution_id", execution_id)],
        statuses,
        since,
        until,
        time_column="finished_at",
        # The literal term of task_runs_not_completed's WHERE, which SQLite
        # must find in the query to use that partial index.
        extra="status != 'completed'"
        if statuses and TaskStatus.COMPLETED.value not in statuses
        else None,
    )
    sql = f"SELECT {columns} FROM task_runs{where} ORDER BY finished_at DESC, rowid DESC"
    sql, params = _page(sql, params, limit, offset)
    rows = read(lambda conn: conn.execute(sql, params).fetchall())
    return [_run_from_row(row) for row in rows]


def find_executions(
    read: Read,
    columns: str,
    *,
    execution_id: str | None,
    status: TaskStatus | str | Iterable[TaskStatus | str] | None,
    since: float | None,
    until: float | None,
    limit: int | None,
    offset: int,
) -> list[ExecutionRecord]:
    """TaskHistory.query_executions, selecting *columns* through *read*."""
    wanted = None if status is None else _statuses(status)
    # Whether a RUNNING row is really running is only known once its owner
    # is checked, so such a filter is applied after reading, and so is the page.
    after = wanted is not None and bool(
        {TaskStatus.RUNNING.value, TaskStatus.INTERRUPTED.value} & set(wanted)
    )
    sql_status = wanted
    if after and wanted is not None:
        sql_status = [*wanted, TaskStatus.RUNNING.value, TaskStatus.INTERRUPTED.value]
    where, params = _filters(
        [("execution_id", execution_id)], sql_status, since, until, time_column="started_at"
    )
    sql = f"SELECT {columns} FROM executions{where} ORDER BY started_at DESC, execution_id"
    paged_sql, paged_params = _page(sql, params, limit, offset)
    if after:
        paged_sql, paged_params = _page(sql, params, None, 0)
    rows = read(lambda conn: conn.execute(paged_sql, paged_params).fetchall())
    liveness: dict[str, bool] = {}
    records = [_execution_from_row(row, liveness) for row in rows]
    if after and wanted is not None:
        records = [r for r in records if r.status.value in wanted]
        records = records[offset:] if limit is None else records[offset : offset + limit]
    return records


def _statuses(status: TaskStatus | str | Iterable[TaskStatus | str]) -> list[str]:
    items = [status] if isinstance(status, str) else list(status)
    try:
        return [TaskStatus(s).value for s in items]
    except ValueError as exc:
        raise ValueError(f"unknown task status in {status!r}: {exc}") from None


def _filters(
    equal: list[tuple[str, str | None]],
    status: TaskStatus | str | Iterable[TaskStatus | str] | None,
    since: float | None,
    until: float | None,
    *,
    time_column: str,
    extra: str | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = [] if extra is None else [extra]
    params: list[Any] = []
    for column, value in equal:
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if status is not None:
        values = _statuses(status)
        clauses.append(f"status IN ({', '.join('?' * len(values))})")
        params.extend(values)
    if since is not None:
        clauses.append(f"{time_column} >= ?")
        params.append(float(since))
    if until is not None:
        clauses.append(f"{time_column} < ?")
        params.append(float(until))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _page(sql: str, params: list[Any], limit: int | None, offset: int) -> tuple[str, list[Any]]:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, not {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, not {offset!r}")
    return f"{sql} LIMIT ? OFFSET ?", [*params, -1 if limit is None else limit, offset]


def _run_from_row(row: Sequence[Any]) -> TaskRunRecord:
    run_id, execution_id, task_id, task_name, status, attempts, *times_and_error, tags, tb = row
    queued_at, started_at, finished_at, duration, error_type, error_message = times_and_error
    return TaskRunRecord(
        run_id,
        execution_id,
        task_id,
        task_name,
        TaskStatus(status),
        attempts,
        queued_at,
        started_at,
        finished_at,
        duration,
        error_type,
        error_message,
        tuple(json.loads(tags)),
        tb,
    )


def _execution_from_row(row: Sequence[Any], liveness: dict[str, bool]) -> ExecutionRecord:
    record = ExecutionRecord(row[0], tuple(json.loads(row[1])), TaskStatus(row[2]), *row[3:10])
    owner = row[10]
    if record.status is TaskStatus.RUNNING and owner_is_dead(owner, liveness):
        # Not yet marked in the file (no writer has opened it since), but as true.
        record = record._replace(
            status=TaskStatus.INTERRUPTED,
            error_type=INTERRUPTED_TYPE,
            error_message=interrupted_message(owner),
        )
    return record
