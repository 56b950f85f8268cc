"""A persisted history of task-manager executions and task runs, in SQLite.

Every record goes through one writer thread: callers only append to a queue
(:meth:`TaskHistory.record_run` and :meth:`TaskHistory.record_execution` do not
wait for the database while fewer than *max_pending* records are queued), and
the writer commits what it finds in batches, one transaction per batch.  A file
database uses WAL, so readers (who get their own connection) never wait for the
writer.  An in-memory database (the default) lives on the writer's connection,
and queries are run by the writer thread between batches.

Every query first waits for the records enqueued before it, so a caller reads
its own writes.

Nothing accepted is lost without a word:

- A database locked by another connection makes records wait (the writer
  retries until the lock clears); producers wait once *max_pending* records are
  queued, and get a :class:`HistoryError` if the queue stays full for
  *backpressure_timeout* seconds.
- A record that cannot be written (a value SQLite cannot store) is dropped alone,
  logged and counted (:attr:`HistoryStats`); the rest of its batch is written.
- A history file deleted (or replaced) while in use is detected before the next
  batch and recreated, with an error in the log.
- An execution left RUNNING by a process that died is marked INTERRUPTED when
  the file is next opened for writing, and shown as such by readers meanwhile.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import operator
import os
import pathlib
import queue
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple, TypeVar

import psutil

from ._errors import HistoryError
from ._types import TaskStatus
from .core import core

__all__ = [
    "ExecutionRecord",
    "HistoryError",
    "HistoryStats",
    "TaskHistory",
    "TaskRunRecord",
    "run_row",
    "tags_json",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

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

_RUN_COLUMNS = (
    "run_id, execution_id, task_id, task_name, status, attempts, queued_at, started_at, "
    "finished_at, duration, error_type, error_message, tags, traceback"
)
_EXECUTION_COLUMNS = (
    "execution_id, targets, status, trigger, task_count, started_at, finished_at, duration, "
    "error_type, error_message, owner"
)
# Run ids are unique by construction (execution id + task id) and a run is
# recorded once: no unique index on run_id, one B-tree fewer per insert.
#: Run rows per INSERT statement, 14 parameters each: SQLite allows 32,766
#: parameters a statement from 3.32, and 999 before.
_RUN_CHUNK = 2048 if sqlite3.sqlite_version_info >= (3, 32) else 999 // 14


@functools.lru_cache(maxsize=16)
def _insert_runs(count: int) -> str:
    """``INSERT`` of *count* run rows in one statement."""
    row = f"({', '.join('?' * 14)})"
    return f"INSERT INTO task_runs ({_RUN_COLUMNS}) VALUES {', '.join([row] * count)}"


#: The run rows of one execution that completed, untagged and without error
#: (most rows), are sent with only what differs
#: between them: 7 parameters a row instead of 14, the execution id once, so
#: a statement holds up to 4,096 rows, and the writer waits for the GIL half
#: as often (see _commit).  SQLite numbers a bare ``?`` after the largest
#: number used so far, so the rows' parameters follow ``?1``.
_PLAIN_RUN_CHUNK = 4096 if sqlite3.sqlite_version_info >= (3, 32) else 128
_PLAIN_RUN_FIELDS = operator.itemgetter(2, 3, 5, 6, 7, 8, 9)


@functools.lru_cache(maxsize=16)
def _insert_plain_runs(count: int) -> str:
    """``INSERT`` of *count* plain run rows of execution ``?1`` (see _PLAIN_RUN_CHUNK)."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * count)
    return (
        f"INSERT INTO task_runs ({_RUN_COLUMNS}) "
        "SELECT ?1 || ':' || column1, ?1, column1, column2, 'completed', column3, column4, "
        f"column5, column6, column7, NULL, NULL, '[]', NULL FROM (VALUES {values})"
    )


def _run_statements(run_rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, tuple[Any, ...]]]:
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
        statements.append((_insert_runs(size), params))
        i += size
    return statements


_STATUS_VALUES = frozenset(status.value for status in TaskStatus)

_INSERT_EXECUTION = (
    f"INSERT OR REPLACE INTO executions ({_EXECUTION_COLUMNS}) VALUES ({', '.join('?' * 11)})"
)

#: The default *retain_count* of an in-memory history (a file keeps everything
#: unless told otherwise: it is on disk, and its user chose to keep it).
MEMORY_RETAIN_COUNT = 10_000

_BUSY_RETRY_DELAY = 0.05
_FILE_CHECK_INTERVAL = 0.25
_LOCK_LOG_INTERVAL = 30.0


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


class _Flush(NamedTuple):
    done: threading.Event


class _Call(NamedTuple):
    func: Callable[[sqlite3.Connection], Any]
    future: Future[Any]


class _Stop(NamedTuple):
    pass


class _Runs(NamedTuple):
    """Several run records queued as one item (see record_runs)."""

    records: Sequence[TaskRunRecord]


class _RunRows(NamedTuple):
    """Several runs already in row form, queued as one item (see record_run_rows)."""

    rows: Sequence[tuple[Any, ...]]


_Item = TaskRunRecord | ExecutionRecord | _Runs | _RunRows | _Flush | _Call | _Stop


class _Auto:
    """The type of :data:`AUTO`: a default that depends on the path."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO = _Auto()

# Histories alive in this process, reset in a forked child (see _after_fork_in_child).
_LIVE: weakref.WeakSet[TaskHistory] = weakref.WeakSet()
# Connections inherited across fork(): never used nor closed in the child (SQLite
# forbids both), only kept from being garbage-collected, which would close them.
_ABANDONED: list[sqlite3.Connection] = []


class TaskHistory:
    """A SQLite store of task runs and executions, written by one background thread.

    Args:
        path: A database file (created if missing; its directory must exist), or
            ``":memory:"`` for a store that lives as long as this object (and
            starts empty in a forked child).
        batch_size: The most records committed in one transaction.
        lock_timeout: Seconds to wait for a database locked by another connection
            at construction before giving up, and for each write attempt (writes
            are retried until the lock clears).
        readonly: Open an existing history for queries only (``mode=ro``): works
            on a read-only file or directory, never writes (not even a schema);
            recording raises :class:`HistoryError`.
        retain_count: Keep at most this many task runs and this many finished
            executions, deleting the oldest (``None``: no limit).  The default,
            :data:`AUTO`, is :data:`MEMORY_RETAIN_COUNT` in memory and no limit
            for a file.
        retain_seconds: Delete task runs and finished executions older than this
            (``None``: no age limit).
        max_pending: The most records queued for the writer; beyond it, recording
            waits for the writer (backpressure).
        backpressure_timeout: Seconds a recording call waits for room in a full
            queue before raising :class:`HistoryError` (``None``: no limit).

    Raises:
        HistoryError: *path* is a directory, its parent directory does not exist,
            the file is not an SQLite database (or is corrupt), it holds tables
            that are not a threadloom history (or, *readonly*, none at all), or
            it stays locked for *lock_timeout* seconds.
        ValueError: An argument is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        batch_size: int = 4096,
        lock_timeout: float = 5.0,
        readonly: bool = False,
        retain_count: int | _Auto | None = AUTO,
        retain_seconds: float | None = None,
        max_pending: int = 100_000,
        backpressure_timeout: float | None = 60.0,
    ) -> None:
        _check_count("batch_size", batch_size, minimum=1)
        _check_count("max_pending", max_pending, minimum=1)
        if not lock_timeout >= 0:
            raise ValueError(f"lock_timeout must be >= 0 seconds, not {lock_timeout!r}")
        if backpressure_timeout is not None and not backpressure_timeout >= 0:
            raise ValueError(
                f"backpressure_timeout must be >= 0 seconds or None, not {backpressure_timeout!r}"
            )
        if retain_seconds is not None and not retain_seconds > 0:
            raise ValueError(f"retain_seconds must be > 0 or None, not {retain_seconds!r}")
        self._path = os.fspath(path)
        self._in_memory = self._path == ":memory:"
        if readonly and self._in_memory:
            raise ValueError("an in-memory history cannot be opened read-only")
        if isinstance(retain_count, _Auto):
            retain_count = MEMORY_RETAIN_COUNT if self._in_memory else None
        if retain_count is not None:
            _check_count("retain_count", retain_count, minimum=0)
        self._readonly = readonly
        self._batch_size = batch_size
        self._lock_timeout = float(lock_timeout)
        self._retain_count = retain_count
        self._retain_seconds = None if retain_seconds is None else float(retain_seconds)
        self._max_pending = max_pending
        self._backpressure_timeout = backpressure_timeout
        # _state guards _closed, _pending and the counters; producers wait on it
        # for room in the queue, the writer notifies it as it drains.
        self._state = threading.Condition(threading.Lock())
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._pending = 0
        self._written = 0
        self._dropped = 0
        self._write_errors = 0
        self._closed = False
        self._blocked_since: float | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._writer_conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._forked = False
        self._fork_lock = threading.Lock()
        # (st_dev, st_ino) of the database file and of its -wal and -shm files,
        # as opened: how a deleted or replaced file is recognised.
        self._identity: tuple[int, int] | None = None
        self._sidecars: dict[str, tuple[int, int]] = {}
        self._run_select = _RUN_COLUMNS
        self._execution_select = _EXECUTION_COLUMNS
        self._since_prune = 0
        self._last_prune = -float("inf")
        self._file_checked = -float("inf")
        self._reopen_failed = False

        if readonly:
            self._reader = self._open_readonly()
        else:
            if not self._in_memory:
                _check_path(self._path)
            self._writer_conn = self._open_writer()
            self._start_writer()
        _LIVE.add(self)

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

    def _start_writer(self) -> None:
        self._thread = threading.Thread(
            target=self._writer_loop, name="threadloom-history-writer", daemon=True
        )
        self._thread.start()

    def _open_writer(self) -> sqlite3.Connection:
        # SQLite does not call the busy handler everywhere: a connection that
        # switches a brand-new file to WAL while another process does the same
        # gets SQLITE_BUSY at once.  So the whole preparation is retried, with a
        # short backoff, until lock_timeout has passed.
        started = time.monotonic()
        delay = 0.005
        while True:
            try:
                conn = self._connect()
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot open history database {self._path!r}: {exc}") from exc
            try:
                self._prepare_schema(conn)
                if not self._in_memory:
                    self._mark_interrupted(conn)
            except HistoryError:
                conn.close()
                raise
            except sqlite3.DatabaseError as exc:
                conn.close()
                waited = time.monotonic() - started
                if _is_busy(exc) and waited < self._lock_timeout:
                    time.sleep(min(delay, self._lock_timeout - waited))
                    delay = min(delay * 2, 0.1)
                    continue
                raise self._explain(exc, waited) from exc
            break
        if not self._in_memory:
            self._identity = _file_id(self._path)
            self._sidecars = {
                suffix: ident
                for suffix in ("-wal", "-shm")
                if (ident := _file_id(self._path + suffix)) is not None
            }
        return conn

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        # Reading the schema is what detects a file that is not SQLite at all,
        # before anything (WAL mode included) is written into it.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = _tables(conn)
        if version not in (0, SCHEMA_VERSION) or (
            tables and not {"task_runs", "executions"} <= tables
        ):
            raise self._foreign(version, tables)
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
            _rollback(conn)
            raise

    def _mark_interrupted(self, conn: sqlite3.Connection) -> None:
        running = conn.execute(
            "SELECT execution_id, owner, started_at FROM executions "
            "WHERE status = 'running' AND owner IS NOT NULL"
        ).fetchall()
        liveness: dict[str, bool] = {}
        dead = [row for row in running if _owner_is_dead(row[1], liveness)]
        if not dead:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for execution_id, owner, started_at in dead:
                last = conn.execute(
                    "SELECT MAX(finished_at) FROM task_runs WHERE execution_id = ?",
                    (execution_id,),
                ).fetchone()[0]
                # The end is unknown: the last thing known of it is its last run's end.
                finished_at = started_at if last is None else max(started_at, last)
                conn.execute(
                    "UPDATE executions SET status = ?, finished_at = ?, duration = ?, "
                    "error_type = ?, error_message = ? "
                    "WHERE execution_id = ? AND status = 'running'",
                    (
                        TaskStatus.INTERRUPTED.value,
                        finished_at,
                        finished_at - started_at,
                        _INTERRUPTED_TYPE,
                        _interrupted_message(owner),
                        execution_id,
                    ),
                )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        logger.warning(
            "history %r: %d execution(s) left running by a process that has ended "
            "are marked interrupted",
            self._path,
            len(dead),
        )

    def _open_readonly(self) -> sqlite3.Connection:
        if not os.path.exists(self._path):
            raise HistoryError(f"no history database at {self._path!r}")
        if os.path.isdir(self._path):
            raise HistoryError(f"history path {self._path!r} is a directory, not a database file")
        uri = pathlib.Path(self._path).absolute().as_uri() + "?mode=ro"
        # A reader of a WAL database needs its -shm file, and creates it if it can.
        # In a read-only directory without one, nobody can be writing (a writer
        # would have created it), so the file is read as immutable.
        candidates = [uri, uri + "&immutable=1"]
        error: sqlite3.Error | None = None
        for candidate in candidates:
            try:
                conn = sqlite3.connect(
                    candidate,
                    uri=True,
                    timeout=self._lock_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise HistoryError(f"cannot open history database {self._path!r}: {exc}") from exc
            try:
                self._check_readonly_schema(conn)
            except HistoryError:
                conn.close()
                raise
            except sqlite3.DatabaseError as exc:
                conn.close()
                error = exc
                text = str(exc)
                retry = ("readonly" in text or "unable to open" in text) and not os.path.exists(
                    self._path + "-wal"
                )
                if retry:
                    continue
                raise self._explain(exc, self._lock_timeout) from exc
            return conn
        assert error is not None
        raise self._explain(error, self._lock_timeout) from error

    def _check_readonly_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = _tables(conn)
        if not tables and version == 0:
            raise HistoryError(
                f"{self._path!r} is empty: it holds no threadloom history "
                "(a run creates one; a read-only command does not)"
            )
        if version != SCHEMA_VERSION or not {"task_runs", "executions"} <= tables:
            raise self._foreign(version, tables)
        present = {table: _columns(conn, table) for table in ("task_runs", "executions")}
        # A file from before a column was added is read with NULL in its place.
        self._run_select = _select_list(_RUN_COLUMNS, present["task_runs"])
        self._execution_select = _select_list(_EXECUTION_COLUMNS, present["executions"])

    def _foreign(self, version: int, tables: set[str]) -> HistoryError:
        return HistoryError(
            f"{self._path!r} is an SQLite database but not a threadloom history "
            f"(schema version {version}, tables {sorted(tables)})"
        )

    def _explain(self, exc: sqlite3.Error, waited: float) -> HistoryError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return HistoryError(
                f"history database {self._path!r} is locked by another connection "
                f"(waited {waited:.3g} s): {text}"
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return HistoryError(f"{self._path!r} is not an SQLite database, or is corrupt: {text}")
        return HistoryError(f"cannot use history database {self._path!r}: {text}")

    # -- recording ------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database path, or ``":memory:"``."""
        return self._path

    @property
    def readonly(self) -> bool:
        """True if this history was opened for queries only."""
        return self._readonly

    def record_run(self, record: TaskRunRecord) -> None:
        """Queue *record* for writing.

        Does not wait for the database unless *max_pending* records are already
        queued (the database is locked, or slower than the producers); then it
        waits for room, at most *backpressure_timeout* seconds.  A record queued
        after :meth:`close` is logged and counted as dropped.

        Raises:
            TypeError: *record* is not a TaskRunRecord with a TaskStatus and a
                tuple of tags.
            HistoryError: The queue stayed full for *backpressure_timeout*
                seconds (the record is not accepted), or the history is read-only.
        """
        if (
            type(record) is not TaskRunRecord
            or not isinstance(record.status, TaskStatus)
            or type(record.tags) is not tuple
        ):
            raise TypeError(f"expected a TaskRunRecord (TaskStatus, tuple tags), not {record!r}")
        self._enqueue(record)

    def record_runs(self, records: Sequence[TaskRunRecord]) -> None:
        """:meth:`record_run` for several records at once (one queue operation).

        Raises:
            TypeError: a record is not a TaskRunRecord with a TaskStatus and a
                tuple of tags (nothing is queued then).
            HistoryError: As for :meth:`record_run`.
        """
        for record in records:
            if (
                type(record) is not TaskRunRecord
                or not isinstance(record.status, TaskStatus)
                or type(record.tags) is not tuple
            ):
                raise TypeError(
                    f"expected a TaskRunRecord (TaskStatus, tuple tags), not {record!r}"
                )
        if records:
            self._enqueue(_Runs(records), len(records))

    def record_run_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """:meth:`record_runs` for runs already in row form: the fast path of a producer
        that makes its rows natively (a task graph's engine does).

        Each row is a tuple of the :class:`TaskRunRecord` fields in their order,
        with the status as its string value and the tags as JSON text
        (``'["a", "b"]'``); :func:`run_row` makes one from a record.

        Raises:
            TypeError: a row is not a tuple of that length, or its status is
                not a status value (nothing is queued then).
            HistoryError: As for :meth:`record_run`.
        """
        width = len(TaskRunRecord._fields)
        for row in rows:
            if type(row) is not tuple or len(row) != width or row[4] not in _STATUS_VALUES:
                raise TypeError(f"expected a run row of {width} fields (see run_row), not {row!r}")
        if rows:
            self._enqueue(_RunRows(rows), len(rows))

    def record_execution(self, record: ExecutionRecord) -> None:
        """Queue *record* (replacing any earlier row of the same execution) for writing.

        Waits as :meth:`record_run` does when the queue is full.

        Raises:
            TypeError: *record* is not an ExecutionRecord with a TaskStatus.
            HistoryError: As for :meth:`record_run`.
        """
        if type(record) is not ExecutionRecord or not isinstance(record.status, TaskStatus):
            raise TypeError(f"expected an ExecutionRecord with a TaskStatus, not {record!r}")
        self._enqueue(record)

    def _enqueue(
        self, record: TaskRunRecord | ExecutionRecord | _Runs | _RunRows, count: int = 1
    ) -> None:
        if self._readonly:
            raise HistoryError(f"history {self._path!r} is opened read-only")
        self._ensure_started()
        with self._state:
            if self._pending >= self._max_pending and not self._closed:
                self._wait_for_room()
            # Under the lock, so that nothing is queued behind the writer's stop
            # marker, where it would be lost without a count.
            if not self._closed:
                self._pending += count
                self._queue.put(record)
                return
            self._dropped += count
        # Recording must never raise into a worker: a late record is only reported.
        first = (
            record.records[0]
            if isinstance(record, _Runs)
            else record.rows[0]
            if isinstance(record, _RunRows)
            else record
        )
        logger.warning(
            "history %r is closed; %d record(s) from %s dropped", self._path, count, first[0]
        )

    def _wait_for_room(self) -> None:
        # Called with _state held.  The writer notifies _state each time it
        # takes a batch off the count, and close() notifies it too.
        timeout = self._backpressure_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pending >= self._max_pending and not self._closed:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                blocked = self._blocked_since
                why = (
                    "the database has been unwritable (locked by another connection, "
                    f"or its file is gone) for {time.monotonic() - blocked:.0f} s"
                    if blocked is not None
                    else "the writer has not caught up yet"
                )
                raise HistoryError(
                    f"history {self._path!r} is full: {self._pending} records wait to be "
                    f"written ({why}); this record was not accepted after waiting "
                    f"{timeout:g} s"
                )
            self._state.wait(remaining)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record queued before this call is committed (or dropped).

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes
                (while the database is locked by another connection, that is
                until the lock clears).

        Returns:
            True once the records are written, False if *timeout* expired first.

        Raises:
            HistoryError: The history is closed.
        """
        if self._readonly:
            return True
        done = threading.Event()
        self._put_control(_Flush(done))
        return done.wait(timeout)

    def stats(self) -> HistoryStats:
        """Return the writer's counters."""
        with self._state:
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
            HistoryError: The history is closed, or records queued before the
                query wait for a database locked by another connection.
        """
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
        sql = (
            f"SELECT {self._run_select} FROM task_runs{where} ORDER BY finished_at DESC, rowid DESC"
        )
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

        An execution recorded as RUNNING by a process that has since ended is
        returned as INTERRUPTED (and matches that status), even before a writer
        has marked it so in the file.

        Raises:
            ValueError: *limit*, *offset* or *status* is invalid.
            HistoryError: As for :meth:`query_runs`.
        """
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
        sql = (
            f"SELECT {self._execution_select} FROM executions{where} "
            "ORDER BY started_at DESC, execution_id"
        )
        paged_sql, paged_params = _page(sql, params, limit, offset)
        if after:
            paged_sql, paged_params = _page(sql, params, None, 0)
        rows = self._read(lambda conn: conn.execute(paged_sql, paged_params).fetchall())
        liveness: dict[str, bool] = {}
        records = [_execution_from_row(row, liveness) for row in rows]
        if after and wanted is not None:
            records = [r for r in records if r.status.value in wanted]
            records = records[offset:] if limit is None else records[offset : offset + limit]
        return records

    def _read(self, func: Callable[[sqlite3.Connection], _T]) -> _T:
        self._ensure_started()
        if self._in_memory:
            # In memory, the data lives on the writer's connection: the writer runs
            # the query after committing everything queued before it.
            future: Future[_T] = Future()
            self._put_control(_Call(func, future))
            return future.result()
        if not self._readonly:
            self._catch_up()
        with self._reader_lock:
            try:
                if self._reader is None:
                    self._reader = self._connect()
                return func(self._reader)
            except sqlite3.Error as exc:
                raise self._explain(exc, self._lock_timeout) from exc

    def _catch_up(self) -> None:
        # A query reads its caller's writes, so it waits for them; but not
        # forever behind a lock held elsewhere: that is reported instead.
        step = max(self._lock_timeout, 0.1)
        while not self.flush(timeout=step):
            blocked = self._blocked_since
            if blocked is not None:
                raise HistoryError(
                    f"history {self._path!r}: {self._pending} record(s) wait for the "
                    f"database, locked by another connection (or gone) for "
                    f"{time.monotonic() - blocked:.0f} s; the query would miss them"
                )

    def _put_control(self, item: _Flush | _Call) -> None:
        self._ensure_started()
        with self._state:
            if not self._closed:
                self._queue.put(item)
                return
        raise HistoryError(f"history {self._path!r} is closed")

    # -- lifecycle ------------------------------------------------------------

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, stop the writer and close the database.

        Args:
            timeout: Seconds to wait for the writer; ``None`` waits as long as it
                takes (while the database is locked elsewhere, until it is not).

        Returns:
            True if the writer finished (everything queued is written), False if
            *timeout* expired; the writer then finishes in the background (and
            what it still holds is lost if the process exits first: that is
            logged).
        """
        with self._state:
            if not self._closed:
                self._closed = True
                if self._thread is not None:
                    self._queue.put(_Stop())
                self._state.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        finished = thread is None or not thread.is_alive()
        if finished:
            with self._reader_lock:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
        else:
            logger.warning(
                "history %r: closing with %d record(s) not yet written (the database is "
                "locked by another connection, or busy); they are written if it frees "
                "up before this process exits",
                self._path,
                self._pending,
            )
        return finished

    def __enter__(self) -> TaskHistory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "read-only" if self._readonly else "open"
        return f"<TaskHistory {self._path!r} {state} {self.stats()}>"

    # -- fork -------------------------------------------------------------------

    def _reset_after_fork(self) -> None:
        # In a forked child only the forking thread exists: the writer thread is
        # gone, and any lock it held stays held.  So every lock, the queue and the
        # connections are replaced (the inherited connections must be neither used
        # nor closed in the child), and the writer is restarted on first use, not
        # here: a child that only calls exec() pays nothing.
        for conn in (self._writer_conn, self._reader):
            if conn is not None:
                _ABANDONED.append(conn)
        self._writer_conn = None
        self._reader = None
        self._state = threading.Condition(threading.Lock())
        self._reader_lock = threading.Lock()
        self._fork_lock = threading.Lock()
        self._queue = queue.SimpleQueue()
        self._pending = 0
        self._blocked_since = None
        self._thread = None
        self._forked = not self._closed

    def _ensure_started(self) -> None:
        if not self._forked:
            return
        with self._fork_lock:
            if not self._forked:
                return
            try:
                if self._readonly:
                    self._reader = self._open_readonly()
                else:
                    # In memory, the child's store starts empty: the parent's
                    # lives on a connection the child must not touch.
                    self._writer_conn = self._open_writer()
                    self._start_writer()
            except HistoryError:
                with self._state:
                    self._closed = True
                logger.exception("history %r cannot be reopened after fork()", self._path)
                raise
            finally:
                self._forked = False

    # -- the writer thread -----------------------------------------------------

    def _writer_loop(self) -> None:
        stopping = False
        while not stopping:
            runs: list[TaskRunRecord | tuple[Any, ...]] = []
            executions: list[ExecutionRecord] = []
            controls: list[_Flush | _Call] = []
            item: _Item = self._queue.get()
            while True:
                if isinstance(item, _RunRows):
                    runs.extend(item.rows)
                elif isinstance(item, TaskRunRecord):
                    runs.append(item)
                elif isinstance(item, _Runs):
                    runs.extend(item.records)
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
            if not self._in_memory and (
                len(runs) + len(executions) < self._batch_size
                or time.monotonic() - self._file_checked >= _FILE_CHECK_INTERVAL
            ):
                # A full batch means records keep coming: then the file is
                # looked at a few times a second, not at every batch (the stat
                # releases the GIL, and taking it back while the workers run
                # costs the writer a switch interval or more).
                self._file_checked = time.monotonic()
                self._check_file()
            if runs or executions:
                self._write_batch(runs, executions)
            # Controls are answered only after the batch holding every record
            # queued before them is committed: that is what flush() promises.
            for control in controls:
                if isinstance(control, _Flush):
                    control.done.set()
                elif self._writer_conn is not None:
                    _run_call(self._writer_conn, control)
                else:
                    control.future.set_exception(
                        HistoryError(f"history {self._path!r} is not open")
                    )
        if self._writer_conn is not None:
            self._writer_conn.close()

    def _write_batch(
        self,
        runs: Sequence[TaskRunRecord | tuple[Any, ...]],
        executions: Sequence[ExecutionRecord],
    ) -> None:
        run_rows: list[tuple[Any, ...]] = []
        execution_rows: list[tuple[Any, ...]] = []
        dropped = 0
        owner = _this_owner()
        for run in runs:
            if type(run) is tuple:
                run_rows.append(run)
                continue
            try:
                run_rows.append(run_row(run))  # type: ignore[arg-type]
            except Exception:
                dropped += 1
                logger.exception("history record %s cannot be stored; dropped", run[0])
        for execution in executions:
            try:
                execution_rows.append(_execution_to_row(execution, owner))
            except Exception:
                dropped += 1
                logger.exception(
                    "history record %s cannot be stored; dropped", execution.execution_id
                )
        written = 0
        errors = 1 if dropped else 0
        if run_rows or execution_rows:
            error = self._commit_until_unlocked(run_rows, execution_rows)
            if error is None:
                written = len(run_rows) + len(execution_rows)
            else:
                # One record SQLite refuses must cost only itself: the batch is
                # written again one record per transaction.
                errors += 1
                singles: list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]
                singles = [([row], []) for row in run_rows]
                singles += [([], [row]) for row in execution_rows]
                for single_runs, single_executions in singles:
                    row_error = self._commit_until_unlocked(single_runs, single_executions)
                    if row_error is None:
                        written += 1
                    else:
                        dropped += 1
                        logger.error(
                            "history write to %r failed for record %s; dropped: %s",
                            self._path,
                            (single_runs or single_executions)[0][0],
                            row_error,
                        )
        with self._state:
            self._pending -= len(runs) + len(executions)
            self._written += written
            self._dropped += dropped
            self._write_errors += errors
            self._state.notify_all()
        if written:
            self._prune(written)

    def _commit_until_unlocked(
        self, run_rows: Sequence[tuple[Any, ...]], execution_rows: Sequence[tuple[Any, ...]]
    ) -> BaseException | None:
        """Commit the rows in one transaction, retrying while the database is busy.

        Returns None once committed, or the error that is not a lock.
        """
        last_log = -float("inf")
        while True:
            conn = self._writer_conn
            if conn is None:
                conn = self._reopen()
            if conn is not None:
                try:
                    _commit(conn, run_rows, execution_rows)
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        return exc
                    reason = "is locked by another connection"
                except Exception as exc:
                    return exc
                else:
                    if self._blocked_since is not None:
                        logger.warning(
                            "history %r is writable again after %.1f s; the waiting "
                            "records are being written",
                            self._path,
                            time.monotonic() - self._blocked_since,
                        )
                        self._blocked_since = None
                    return None
            else:
                reason = "was deleted and cannot be recreated"
            now = time.monotonic()
            if self._blocked_since is None:
                self._blocked_since = now
            if now - last_log >= _LOCK_LOG_INTERVAL:
                last_log = now
                logger.warning(
                    "history database %r %s; %d record(s) wait for it%s",
                    self._path,
                    reason,
                    self._pending,
                    f" (for {now - self._blocked_since:.0f} s so far)"
                    if now - self._blocked_since >= 1
                    else "",
                )
            time.sleep(_BUSY_RETRY_DELAY)

    def _check_file(self) -> None:
        """Notice a database file deleted or replaced since it was opened."""
        if self._writer_conn is None or self._identity is None:
            return
        if _file_id(self._path) == self._identity:
            return
        logger.error(
            "history file %r was deleted or replaced while in use: what it held is gone "
            "with it; records from now on go to a new history at that path",
            self._path,
        )
        self._abandon_file()
        self._reopen()

    def _abandon_file(self) -> None:
        if self._writer_conn is not None:
            _close_quietly(self._writer_conn)
            self._writer_conn = None
        with self._reader_lock:
            if self._reader is not None:
                _close_quietly(self._reader)
                self._reader = None
        # The old file's -wal and -shm stay behind (SQLite leaves them when its
        # file was unlinked), and a new database at the path would take them for
        # its own: the WAL-index of another file is corruption.  Only the files
        # recorded at open are removed (same inode); one a new database made since
        # is someone else's.  A process still holding the old files keeps them open.
        for suffix, ident in self._sidecars.items():
            if _file_id(self._path + suffix) == ident:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path + suffix)
        self._sidecars = {}
        self._identity = None

    def _reopen(self) -> sqlite3.Connection | None:
        # Why recreate rather than only report: a deleted history usually means
        # "start over", and records written into the unlinked file would reach no
        # reader, so they would be lost all the same.
        try:
            _check_path(self._path)
            conn = self._open_writer()
        except HistoryError as exc:
            if not self._reopen_failed:
                self._reopen_failed = True
                logger.error("history %r cannot be reopened: %s", self._path, exc)
            return None
        self._reopen_failed = False
        self._writer_conn = conn
        logger.warning("history %r reopened (a new file if it was deleted)", self._path)
        return conn

    def _prune(self, written: int) -> None:
        count, seconds = self._retain_count, self._retain_seconds
        if count is None and seconds is None:
            return
        self._since_prune += written
        now = time.monotonic()
        due_by_count = count is not None and self._since_prune > max(1, count // 10)
        due_by_age = seconds is not None and now - self._last_prune >= min(60.0, seconds / 10)
        conn = self._writer_conn
        if not (due_by_count or due_by_age) or conn is None:
            return
        self._since_prune = 0
        self._last_prune = now
        statements: list[tuple[str, tuple[Any, ...]]] = []
        if count is not None:
            statements += [
                (
                    "DELETE FROM task_runs WHERE rowid <= "
                    "(SELECT rowid FROM task_runs ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                    (count,),
                ),
                (
                    "DELETE FROM executions WHERE status != 'running' AND rowid <= "
                    "(SELECT rowid FROM executions WHERE status != 'running' "
                    "ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                    (count,),
                ),
            ]
        if seconds is not None:
            horizon = time.time() - seconds
            statements += [
                ("DELETE FROM task_runs WHERE finished_at < ?", (horizon,)),
                (
                    "DELETE FROM executions WHERE status != 'running' "
                    "AND COALESCE(finished_at, started_at) < ?",
                    (horizon,),
                ),
            ]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            # Retention is best effort: a busy database is pruned next time.
            logger.warning("history %r: pruning old records failed: %s", self._path, exc)


def _after_fork_in_child() -> None:
    for history in list(_LIVE):
        history._reset_after_fork()  # noqa: SLF001 (same module)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- helpers -------------------------------------------------------------------------

_INTERRUPTED_TYPE = "Interrupted"


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")


def _is_busy(exc: BaseException) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _rollback(conn: sqlite3.Connection) -> None:
    # Suppressed: SQLite may have ended the transaction with the error already.
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error as exc:
        logger.warning("closing a history connection failed: %s", exc)


#: The history's batches go through the native core when it can drive SQLite:
#: the whole transaction then runs without the GIL, which the sqlite3 module
#: releases and takes back at every step (see core._core_sqlite.pxi).
_NATIVE_WRITES = core.NATIVE and core.sqlite_bulk_write_available()
#: Run rows per native INSERT: SQLite inserts rows of one VALUES list faster
#: than as many statements (it keeps the table's and indexes' cursors open).
_NATIVE_RUN_GROUP = 256 if sqlite3.sqlite_version_info >= (3, 32) else 999 // 14


def _commit(
    conn: sqlite3.Connection,
    run_rows: Sequence[tuple[Any, ...]],
    execution_rows: Sequence[tuple[Any, ...]],
    native: bool = _NATIVE_WRITES,
) -> None:
    if native:
        batches: list[tuple[str, Sequence[tuple[Any, ...]], int]] = []
        whole = len(run_rows) - len(run_rows) % _NATIVE_RUN_GROUP
        if whole:
            batches.append((_insert_runs(_NATIVE_RUN_GROUP), run_rows[:whole], _NATIVE_RUN_GROUP))
        if whole < len(run_rows):
            batches.append((_insert_runs(1), run_rows[whole:], 1))
        if execution_rows:
            # In order, after the runs: an execution's end replaces its start.
            batches.append((_INSERT_EXECUTION, execution_rows, 1))
        core.sqlite_bulk_write(conn, batches)
        return
    # Few statements for many rows (see _run_statements), and a batch that is
    # one statement is its own transaction: SQLite releases the GIL for each
    # step (BEGIN and COMMIT are steps too), and the writer then waits for the
    # GIL while the pool's workers hold it, up to a switch interval each time,
    # so steps are what the writer's throughput is counted in.  Runs go before
    # executions: an execution's end is queued after its runs, and a reader
    # who sees it must find them.
    statements = _run_statements(run_rows)
    if len(statements) == 1 and not execution_rows:
        conn.execute(*statements[0])
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            conn.execute(sql, params)
        if execution_rows:
            # In order: an execution's end replaces its start.
            conn.executemany(_INSERT_EXECUTION, execution_rows)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _select_list(columns: str, present: set[str]) -> str:
    return ", ".join(
        name if name in present else f"NULL AS {name}"
        for name in (c.strip() for c in columns.split(","))
    )


# -- owners: which process wrote an execution, and is it still alive ---------------

_OWNER_CACHE: dict[int, str] = {}


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.readline().strip()
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def _machine() -> tuple[str, str]:
    """(host name, machine id): two processes with both equal share a process table."""
    machine_id = _read_first_line("/etc/machine-id") or _read_first_line("/var/lib/dbus/machine-id")
    return socket.gethostname(), machine_id


def _boot() -> str:
    # Linux names each boot; elsewhere the boot time stands in for it (in
    # whole seconds: it is derived from the wall clock, which may be stepped).
    return _read_first_line("/proc/sys/kernel/random/boot_id") or f"t{round(psutil.boot_time())}"


def _seconds_since_boot(process: psutil.Process) -> float:
    # create_time() is boot time + a count of ticks since boot: the difference
    # is what identifies the process, immune to steps of the wall clock.
    return float(process.create_time() - psutil.boot_time())


def _this_owner() -> str:
    """Who this process is, durably: machine, boot, pid and the pid's start."""
    pid = os.getpid()
    owner = _OWNER_CACHE.get(pid)
    if owner is None:
        # A pid is reused, a pid and its start time since boot are not; the boot
        # tells a pid of this boot from the same pid before a reboot.
        host, machine = _machine()
        owner = json.dumps(
            {
                "host": host,
                "machine": machine,
                "boot": _boot(),
                "pid": pid,
                "start": _seconds_since_boot(psutil.Process(pid)),
            },
            separators=(",", ":"),
        )
        _OWNER_CACHE[pid] = owner
    return owner


def _owner_is_dead(owner: str | None, cache: dict[str, bool]) -> bool:
    """True only if *owner* is known to have ended; unknown owners count as alive."""
    if owner is None:
        return False
    if owner in cache:
        return cache[owner]
    cache[owner] = dead = _check_owner_dead(owner)
    return dead


def _check_owner_dead(owner: str) -> bool:
    try:
        info = json.loads(owner)
        machine, boot, pid, start = (
            (info["host"], info["machine"]),
            info["boot"],
            int(info["pid"]),
            float(info["start"]),
        )
    except (ValueError, TypeError, KeyError):
        return False
    if machine != _machine():
        return False  # another machine's (or container's) process: nothing here can tell
    here = _boot()
    if boot != here:
        if boot.startswith("t") and here.startswith("t"):
            # Boot times read at different moments differ by clock steps, not
            # by a reboot's minutes.
            return abs(float(boot[1:]) - float(here[1:])) > 60
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        # Start times are counted in clock ticks (1/100 s on Linux).
        return abs(_seconds_since_boot(process) - start) > 0.05
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # it exists, but is not ours to inspect


def _interrupted_message(owner: str | None) -> str:
    try:
        pid = json.loads(owner or "")["pid"]
    except (ValueError, TypeError, KeyError):
        pid = "?"
    return f"the process that ran it (pid {pid}) ended before recording its end"


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


def _execution_to_row(record: ExecutionRecord, owner: str) -> tuple[Any, ...]:
    return (
        record.execution_id,
        json.dumps(list(record.targets)),
        *record[2:],
        owner,
    )


def _execution_from_row(row: Sequence[Any], liveness: dict[str, bool]) -> ExecutionRecord:
    record = ExecutionRecord(row[0], tuple(json.loads(row[1])), TaskStatus(row[2]), *row[3:10])
    owner = row[10]
    if record.status is TaskStatus.RUNNING and _owner_is_dead(owner, liveness):
        # Not yet marked in the file (no writer has opened it since), but as true.
        record = record._replace(
            status=TaskStatus.INTERRUPTED,
            error_type=_INTERRUPTED_TYPE,
            error_message=_interrupted_message(owner),
        )
    return record
