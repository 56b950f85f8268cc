"""The history's SQLite schema and its SQL: the tables and indexes, the columns
added since the first release (and how a file gets them), the check of a file
opened read-only, and the INSERT statements of a batch of rows."""

from __future__ import annotations

import contextlib
import functools
import itertools
import operator
import sqlite3
from collections.abc import Sequence
from typing import Any

from .._errors import HistoryError

__all__ = [
    "EXECUTION_COLUMNS",
    "INSERT_EXECUTION",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "check_readonly_schema",
    "insert_runs",
    "prepare_schema",
    "rollback",
    "run_statements",
]

# The schema only ever gains nullable columns (added by ALTER TABLE on open), so
# the version stays 1: a file written by this version is still read and written
# by an older threadloom, which names its columns explicitly.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS task_runs (
    run_id        TEXT NOT NULL,
    execution_id  TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    task_name     TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    queued_at     REAL,
    started_at    REAL,
    finished_at   REAL NOT NULL,
    duration      REAL,
    error_type    TEXT,
    error_message TEXT,
    tags          TEXT NOT NULL,
    traceback     TEXT
);
CREATE INDEX IF NOT EXISTS task_runs_by_task ON task_runs (task_id, finished_at);
CREATE INDEX IF NOT EXISTS task_runs_not_completed ON task_runs (status, finished_at)
    WHERE status != 'completed';
CREATE INDEX IF NOT EXISTS task_runs_by_time ON task_runs (finished_at);
CREATE INDEX IF NOT EXISTS task_runs_by_execution ON task_runs (execution_id);
CREATE TABLE IF NOT EXISTS executions (
    execution_id  TEXT PRIMARY KEY,
    targets       TEXT NOT NULL,
    status        TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    task_count    INTEGER NOT NULL,
    started_at    REAL NOT NULL,
    finished_at   REAL,
    duration      REAL,
    error_type    TEXT,
    error_message TEXT,
    owner         TEXT
);
CREATE INDEX IF NOT EXISTS executions_by_time ON executions (started_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, started_at);
"""

#: Columns added after the first release: (table, column, type).  A file
#: without them gets them on its next read-write open; a read-only reader
#: selects NULL in their place.
_ADDED_COLUMNS = (("task_runs", "traceback", "TEXT"), ("executions", "owner", "TEXT"))

RUN_COLUMNS = (
    "run_id, execution_id, task_id, task_name, status, attempts, queued_at, started_at, "
    "finished_at, duration, error_type, error_message, tags, traceback"
)
EXECUTION_COLUMNS = (
    "execution_id, targets, status, trigger, task_count, started_at, finished_at, duration, "
    "error_type, error_message, owner"
)
# Run ids are unique by construction (execution id + task id) and a run is
# recorded once: no unique index on run_id, one B-tree fewer per insert.
#: Run rows per INSERT statement, 14 parameters each: SQLite allows 32,766
#: parameters a statement from 3.32, and 999 before.
_RUN_CHUNK = 2048 if sqlite3.sqlite_version_info >= (3, 32) else 999 // 14


@functools.lru_cache(maxsize=16)
def insert_runs(count: int) -> str:
    """``INSERT`` of *count* run rows in one statement."""
    row = f"({', '.join('?' * 14)})"
    return f"INSERT INTO task_runs ({RUN_COLUMNS}) VALUES {', '.join([row] * count)}"


#: The run rows of one execution that completed, untagged and without error
#: (most rows), are sent with only what differs
#: between them: 7 parameters a row instead of 14, the execution id once, so
#: a statement holds up to 4,096 rows, and the writer waits for the GIL half
#: as often (see writer._commit).  SQLite numbers a bare ``?`` after the largest
#: number used so far, so the rows' parameters follow ``?1``.
_PLAIN_RUN_CHUNK = 4096 if sqlite3.sqlite_version_info >= (3, 32) else 128
_PLAIN_RUN_FIELDS = operator.itemgetter(2, 3, 5, 6, 7, 8, 9)


@functools.lru_cache(maxsize=16)
def _insert_plain_runs(count: int) -> str:
    """``INSERT`` of *count* plain run rows of execution ``?1`` (see _PLAIN_RUN_CHUNK)."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * count)
    return (
        f"INSERT INTO task_runs ({RUN_COLUMNS}) "
        "SELECT ?1 || ':' || column1, ?1, column1, column2, 'completed', column3, column4, "
        f"column5, column6, column7, NULL, NULL, '[]', NULL FROM (VALUES {values})"
    )


def run_statements(run_rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, tuple[Any, ...]]]:
    """The INSERT statements of *run_rows*: plain rows by execution, the others in full."""
    plain: dict[str, list[tuple[Any, ...]]] = {}
    full: list[tuple[Any, ...]] = []
    for row in run_rows:
        if (
            row[4] == "completed"
            and row[10] is None  # error_type
            and row[11] is None  # error_message
            and row[12] == "[]"  # tags
            and row[13] is None  # traceback
            and type(row[1]) is str
            and type(row[2]) is str
            and row[0] == f"{row[1]}:{row[2]}"  # run_id
        ):
            group = plain.get(row[1])
            if group is None:
                group = plain[row[1]] = []
            group.append(row)
        else:
            full.append(row)
    statements: list[tuple[str, tuple[Any, ...]]] = []
    # Chunks of the largest size, then powers of two: few statements to cache.
    for execution_id, rows in plain.items():
        i = 0
        while i < len(rows):
            size = min(_PLAIN_RUN_CHUNK, 1 << ((len(rows) - i).bit_length() - 1))
            fields = map(_PLAIN_RUN_FIELDS, rows[i : i + size])
            params = (execution_id, *itertools.chain.from_iterable(fields))
            statements.append((_insert_plain_runs(size), params))
            i += size
    i = 0
    while i < len(full):
        size = min(_RUN_CHUNK, 1 << ((len(full) - i).bit_length() - 1))
        params = tuple(itertools.chain.from_iterable(full[i : i + size]))
        statements.append((insert_runs(size), params))
        i += size
    return statements


INSERT_EXECUTION = (
    f"INSERT OR REPLACE INTO executions ({EXECUTION_COLUMNS}) VALUES ({', '.join('?' * 11)})"
)


WAL_CHECKPOINT_PAGES = 10_000
WAL_SIZE_LIMIT = 64 * 1024 * 1024


def prepare_schema(conn: sqlite3.Connection, path: str, in_memory: bool) -> None:
    """Check that *conn* holds a history (or nothing), and bring its schema up to date."""
    # Reading the schema is what detects a file that is not SQLite at all,
    # before anything (WAL mode included) is written into it.
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = _tables(conn)
    if version not in (0, SCHEMA_VERSION) or (tables and not {"task_runs", "executions"} <= tables):
        raise _foreign(path, version, tables)
    if not in_memory:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise HistoryError(f"cannot switch {path!r} to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints every 10,000 pages rather than SQLite's 1,000: index
        # pages that many batches change are copied into the file once, not
        # at every checkpoint (a quarter less work a row on large graphs).
        # The WAL file is cut back to 64 MiB after a checkpoint.
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    # BEGIN IMMEDIATE takes the write lock now, so a database another
    # connection keeps locked is reported here, not on the first write.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        # Runs are indexed by status only where they did not complete (most
        # do): a file from before that had every run in this index, which
        # cost each insert a B-tree for the one query a completed run
        # needs no index for (by time: task_runs_by_time).
        conn.execute("DROP INDEX IF EXISTS task_runs_by_status")
        for table, column, kind in _ADDED_COLUMNS:
            if column not in _columns(conn, table):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def check_readonly_schema(conn: sqlite3.Connection, path: str) -> tuple[str, str]:
    """Check that *conn* holds a history, without writing; return the select lists
    of its runs and its executions (see RUN_COLUMNS and EXECUTION_COLUMNS)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = _tables(conn)
    if not tables and version == 0:
        raise HistoryError(
            f"{path!r} is empty: it holds no threadloom history "
            "(a run creates one; a read-only command does not)"
        )
    if version != SCHEMA_VERSION or not {"task_runs", "executions"} <= tables:
        raise _foreign(path, version, tables)
    present = {table: _columns(conn, table) for table in ("task_runs", "executions")}
    # A file from before a column was added is read with NULL in its place.
    return (
        _select_list(RUN_COLUMNS, present["task_runs"]),
        _select_list(EXECUTION_COLUMNS, present["executions"]),
    )


def _foreign(path: str, version: int, tables: set[str]) -> HistoryError:
    return HistoryError(
        f"{path!r} is an SQLite database but not a threadloom history "
        f"(schema version {version}, tables {sorted(tables)})"
    )


def rollback(conn: sqlite3.Connection) -> None:
    # Suppressed: SQLite may have ended the transaction with the error already.
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _select_list(columns: str, present: set[str]) -> str:
    return ", ".join(
        name if name in present else f"NULL AS {name}"
        for name in (c.strip() for c in columns.split(","))
    )
