"""A persisted history of task-manager executions and task runs, in SQLite.

Every record goes through one writer thread: callers only append to a queue
(:meth:`TaskHistory.record_run` and :meth:`TaskHistory.record_execution` never
wait for the database), and the writer commits what it finds in batches, one
transaction per batch.  A file database uses WAL, so readers (who get their own
connection) never wait for the writer.  An in-memory database (the default)
lives on the writer's connection, and queries are run by the writer thread
between batches.

Every query first waits for the records enqueued before it, so a caller reads
its own writes.  A failed write is logged and counted (:attr:`HistoryStats`);
it never raises into the code that recorded it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple, TypeVar

from ._types import TaskStatus

__all__ = [
    "ExecutionRecord",
    "HistoryError",
    "HistoryStats",
    "TaskHistory",
    "TaskRunRecord",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

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
    tags          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_runs_by_task ON task_runs (task_id, finished_at);
CREATE INDEX IF NOT EXISTS task_runs_by_status ON task_runs (status, finished_at);
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
    error_message TEXT
);
CREATE INDEX IF NOT EXISTS executions_by_time ON executions (started_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, started_at);
"""

_RUN_COLUMNS = (
    "run_id, execution_id, task_id, task_name, status, attempts, queued_at, started_at, "
    "finished_at, duration, error_type, error_message, tags"
)
_EXECUTION_COLUMNS = (
    "execution_id, targets, status, trigger, task_count, started_at, finished_at, duration, "
    "error_type, error_message"
)
# Run ids are unique by construction (execution id + task id) and a run is
# recorded once: no unique index on run_id, one B-tree fewer per insert.
_INSERT_RUN = f"INSERT INTO task_runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 13)})"
_INSERT_EXECUTION = (
    f"INSERT OR REPLACE INTO executions ({_EXECUTION_COLUMNS}) VALUES ({', '.join('?' * 10)})"
)


class HistoryError(Exception):
    """The history database cannot be used (bad path, not SQLite, locked, closed)."""


class TaskRunRecord(NamedTuple):
    """One task's run inside one execution, from queueing to its terminal state.

    Times are seconds since the epoch; ``duration`` is measured with a monotonic
    clock from the first attempt's start, and is ``None`` for a run that never
    started (cancelled while queued, or skipped for a failed upstream).
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


class ExecutionRecord(NamedTuple):
    """One execution: a set of target tasks run with their dependency closure.

    An execution is recorded when it starts (status RUNNING, no finish time) and
    recorded again, replacing that row, when it ends.
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


class _Flush(NamedTuple):
    done: threading.Event


class _Call(NamedTuple):
    func: Callable[[sqlite3.Connection], Any]
    future: Future[Any]


class _Stop(NamedTuple):
    pass


_Item = TaskRunRecord | ExecutionRecord | _Flush | _Call | _Stop


class TaskHistory:
    """A SQLite store of task runs and executions, written by one background thread.

    Args:
        path: A database file (created if missing; its directory must exist), or
            ``":memory:"`` for a store that lives as long as this object.
        batch_size: The most records committed in one transaction.
        lock_timeout: Seconds to wait for a database locked by another connection,
            at construction and on each write, before giving up.

    Raises:
        HistoryError: *path* is a directory, its parent directory does not exist,
            the file is not an SQLite database (or is corrupt), it holds tables
            that are not a threadloom history, or it stays locked for
            *lock_timeout* seconds.
        ValueError: *batch_size* or *lock_timeout* is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        batch_size: int = 500,
        lock_timeout: float = 5.0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
        if not lock_timeout >= 0:
            raise ValueError(f"lock_timeout must be >= 0 seconds, not {lock_timeout!r}")
        self._path = os.fspath(path)
        self._in_memory = self._path == ":memory:"
        self._batch_size = batch_size
        self._lock_timeout = float(lock_timeout)
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._written = 0
        self._dropped = 0
        self._write_errors = 0
        self._closed = False
        self._close_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()

        if not self._in_memory:
            _check_path(self._path)
        self._writer_conn = self._open_and_prepare()
        if not self._in_memory:
            try:
                self._reader = self._connect()
            except sqlite3.Error as exc:
                self._writer_conn.close()
                raise HistoryError(f"cannot open history database {self._path!r}: {exc}") from exc
        self._thread = threading.Thread(
            target=self._writer_loop, name="threadloom-history-writer", daemon=True
        )
        self._thread.start()

    # -- construction ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun and committed explicitly.
        # check_same_thread=False: the writer connection is prepared here and then
        # used only by the writer thread; the reader is guarded by _reader_lock.
        return sqlite3.connect(
            self._path,
            timeout=self._lock_timeout,
            isolation_level=None,
            check_same_thread=False,
        )

    def _open_and_prepare(self) -> sqlite3.Connection:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot open history database {self._path!r}: {exc}") from exc
        try:
            self._prepare_schema(conn)
        except HistoryError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._explain(exc) from exc
        return conn

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        # Reading the schema is what detects a file that is not SQLite at all.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        ours = {"task_runs", "executions"}
        if version not in (0, SCHEMA_VERSION) or (tables and not ours <= tables):
            raise HistoryError(
                f"{self._path!r} is an SQLite database but not a threadloom history "
                f"(schema version {version}, tables {sorted(tables)})"
            )
        if not self._in_memory:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise HistoryError(f"cannot switch {self._path!r} to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=NORMAL")
        # BEGIN IMMEDIATE takes the write lock now, so a database another
        # connection keeps locked is reported here, not on the first write.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _explain(self, exc: sqlite3.Error) -> HistoryError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return HistoryError(
                f"history database {self._path!r} is locked by another connection "
                f"(waited {self._lock_timeout:g} s): {text}"
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return HistoryError(f"{self._path!r} is not an SQLite database, or is corrupt: {text}")
        return HistoryError(f"cannot use history database {self._path!r}: {text}")

    # -- recording ------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database path, or ``":memory:"``."""
        return self._path

    def record_run(self, record: TaskRunRecord) -> None:
        """Queue *record* for writing.  Never waits for the database.

        A record queued after :meth:`close` is logged and counted as dropped.

        Raises:
            TypeError: *record* is not a TaskRunRecord with a TaskStatus and a
                tuple of tags.
        """
        if (
            type(record) is not TaskRunRecord
            or not isinstance(record.status, TaskStatus)
            or type(record.tags) is not tuple
        ):
            raise TypeError(f"expected a TaskRunRecord (TaskStatus, tuple tags), not {record!r}")
        self._enqueue(record)

    def record_execution(self, record: ExecutionRecord) -> None:
        """Queue *record* (replacing any earlier row of the same execution) for writing.

        Raises:
            TypeError: *record* is not an ExecutionRecord with a TaskStatus.
        """
        if type(record) is not ExecutionRecord or not isinstance(record.status, TaskStatus):
            raise TypeError(f"expected an ExecutionRecord with a TaskStatus, not {record!r}")
        self._enqueue(record)

    def _enqueue(self, record: TaskRunRecord | ExecutionRecord) -> None:
        # Under the lock, so that nothing is queued behind the writer's stop
        # marker, where it would be lost without a count.  Held for one append.
        with self._close_lock:
            if not self._closed:
                self._queue.put(record)
                return
            self._dropped += 1
        # Recording must never raise into a worker: a late record is only reported.
        logger.warning("history %r is closed; record %s dropped", self._path, record[0])

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record queued before this call is committed (or dropped).

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            True once the records are written, False if *timeout* expired first.

        Raises:
            HistoryError: The history is closed.
        """
        done = threading.Event()
        self._put_control(_Flush(done))
        return done.wait(timeout)

    def stats(self) -> HistoryStats:
        """Return the writer's counters."""
        return HistoryStats(self._written, self._dropped, self._write_errors)

    # -- querying -------------------------------------------------------------

    def query_runs(
        self,
        *,
        task_id: str | None = None,
        execution_id: str | None = None,
        status: TaskStatus | str | Iterable[TaskStatus | str] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[TaskRunRecord]:
        """Return task runs, newest (by finish time) first.

        Args:
            task_id: Only runs of this task.
            execution_id: Only runs of this execution.
            status: Only runs that ended in this status (or any of these statuses).
            since: Only runs that finished at or after this time (epoch seconds).
            until: Only runs that finished before this time (epoch seconds).
            limit: The most records to return (``None``: all).
            offset: Records to skip first, for paging.

        Returns:
            The matching records, newest first.

        Raises:
            ValueError: *limit*, *offset* or *status* is invalid.
            HistoryError: The history is closed.
        """
        where, params = _filters(
            [("task_id", task_id), ("execution_id", execution_id)],
            status,
            since,
            until,
            time_column="finished_at",
        )
        sql = f"SELECT {_RUN_COLUMNS} FROM task_runs{where} ORDER BY finished_at DESC, rowid DESC"
        sql, params = _page(sql, params, limit, offset)
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [_run_from_row(row) for row in rows]

    def query_executions(
        self,
        *,
        execution_id: str | None = None,
        status: TaskStatus | str | Iterable[TaskStatus | str] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[ExecutionRecord]:
        """Return executions, newest (by start time) first; filters as in :meth:`query_runs`.

        Raises:
            ValueError: *limit*, *offset* or *status* is invalid.
            HistoryError: The history is closed.
        """
        where, params = _filters(
            [("execution_id", execution_id)], status, since, until, time_column="started_at"
        )
        sql = (
            f"SELECT {_EXECUTION_COLUMNS} FROM executions{where} "
            "ORDER BY started_at DESC, execution_id"
        )
        sql, params = _page(sql, params, limit, offset)
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [_execution_from_row(row) for row in rows]

    def _read(self, func: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._reader is None:
            # In memory, the data lives on the writer's connection: the writer runs
            # the query after committing everything queued before it.
            future: Future[_T] = Future()
            self._put_control(_Call(func, future))
            return future.result()
        self.flush()
        with self._reader_lock:
            try:
                return func(self._reader)
            except sqlite3.Error as exc:
                raise self._explain(exc) from exc

    def _put_control(self, item: _Flush | _Call) -> None:
        with self._close_lock:
            if not self._closed:
                self._queue.put(item)
                return
        raise HistoryError(f"history {self._path!r} is closed")

    # -- lifecycle ------------------------------------------------------------

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, stop the writer and close the database.

        Args:
            timeout: Seconds to wait for the writer; ``None`` waits as long as it takes.

        Returns:
            True if the writer finished (everything queued is written), False if
            *timeout* expired; the writer then finishes in the background.
        """
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_Stop())
        self._thread.join(timeout)
        finished = not self._thread.is_alive()
        if finished and self._reader is not None:
            with self._reader_lock:
                self._reader.close()
        return finished

    def __enter__(self) -> TaskHistory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<TaskHistory {self._path!r} {state} {self.stats()}>"

    # -- the writer thread -----------------------------------------------------

    def _writer_loop(self) -> None:
        conn = self._writer_conn
        stopping = False
        while not stopping:
            runs: list[TaskRunRecord] = []
            executions: list[ExecutionRecord] = []
            controls: list[_Flush | _Call] = []
            item: _Item = self._queue.get()
            while True:
                if isinstance(item, TaskRunRecord):
                    runs.append(item)
                elif isinstance(item, ExecutionRecord):
                    executions.append(item)
                elif isinstance(item, _Stop):
                    stopping = True
                else:
                    controls.append(item)
                if len(runs) + len(executions) >= self._batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if runs or executions:
                self._write_batch(conn, runs, executions)
            # Controls are answered only after the batch holding every record
            # queued before them is committed: that is what flush() promises.
            for control in controls:
                if isinstance(control, _Flush):
                    control.done.set()
                else:
                    _run_call(conn, control)
        conn.close()

    def _write_batch(
        self,
        conn: sqlite3.Connection,
        runs: Sequence[TaskRunRecord],
        executions: Sequence[ExecutionRecord],
    ) -> None:
        count = len(runs) + len(executions)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if runs:
                    conn.executemany(_INSERT_RUN, [_run_to_row(r) for r in runs])
                if executions:
                    conn.executemany(_INSERT_EXECUTION, [_execution_to_row(e) for e in executions])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except Exception:
            # A failed batch must not kill the writer (and never reaches the
            # workers that recorded it): it is logged and counted.
            self._write_errors += 1
            self._dropped += count
            logger.exception("history write to %r failed; %d record(s) dropped", self._path, count)
        else:
            self._written += count


def _run_call(conn: sqlite3.Connection, call: _Call) -> None:
    if not call.future.set_running_or_notify_cancel():
        return
    try:
        result = call.func(conn)
    except BaseException as exc:
        call.future.set_exception(exc)
    else:
        call.future.set_result(result)


def _check_path(path: str) -> None:
    if not path:
        raise HistoryError("history path is empty; use ':memory:' for an in-memory history")
    if os.path.isdir(path):
        raise HistoryError(f"history path {path!r} is a directory, not a database file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise HistoryError(f"the directory of history path {path!r} does not exist: {parent!r}")
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise HistoryError(f"history database {path!r} is not readable and writable")
    if not os.path.exists(path) and not os.access(parent, os.W_OK | os.X_OK):
        raise HistoryError(f"cannot create history database {path!r}: {parent!r} is not writable")


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
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
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


@functools.lru_cache(maxsize=4096)
def _tags_json(tags: tuple[str, ...]) -> str:
    # Cached: a task's runs all carry the same tags tuple, and json.dumps is
    # most of the cost of turning a record into a row.
    return json.dumps(list(tags))


def _run_to_row(record: TaskRunRecord) -> tuple[Any, ...]:
    # A TaskStatus is a str subclass: sqlite3 binds its value as is.
    return (*record[:12], _tags_json(record.tags))


def _run_from_row(row: Sequence[Any]) -> TaskRunRecord:
    run_id, execution_id, task_id, task_name, status, attempts, *times_and_error, tags = row
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
    )


def _execution_to_row(record: ExecutionRecord) -> tuple[Any, ...]:
    return (
        record.execution_id,
        json.dumps(list(record.targets)),
        *record[2:],
    )


def _execution_from_row(row: Sequence[Any]) -> ExecutionRecord:
    return ExecutionRecord(row[0], tuple(json.loads(row[1])), TaskStatus(row[2]), *row[3:])
