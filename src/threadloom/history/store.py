"""The public face of the history: :class:`TaskHistory`, which checks what it is
given, hands records to its writer (:mod:`.writer`) and queries to a connection
that sees them (:mod:`.query`), and starts over in a forked child."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from .._errors import HistoryError
from .._types import TaskStatus
from .database import Reader
from .query import find_executions, find_runs
from .records import ExecutionRecord, HistoryStats, TaskRunRecord
from .schema import EXECUTION_COLUMNS, RUN_COLUMNS
from .writer import Call, Queued, RunRows, Runs, Writer

__all__ = ["AUTO", "MEMORY_RETAIN_COUNT", "TaskHistory"]

logger = logging.getLogger("threadloom.history")

_T = TypeVar("_T")

_STATUS_VALUES = frozenset(status.value for status in TaskStatus)

#: The default *retain_count* of an in-memory history (a file keeps everything
#: unless told otherwise: it is on disk, and its user chose to keep it).
MEMORY_RETAIN_COUNT = 10_000


class _Auto:
    """The type of :data:`AUTO`: a default that depends on the path."""

    def __repr__(self) -> str:
        return "AUTO"


AUTO = _Auto()

# Histories alive in this process, reset in a forked child (see _after_fork_in_child).
_LIVE: weakref.WeakSet[TaskHistory] = weakref.WeakSet()


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
        self._lock_timeout = float(lock_timeout)
        # Whether a read-only history is closed (a writable one's writer knows
        # whether it is, see _is_closed).
        self._closed = False
        # Set in a forked child: a read-only history's reader is reopened on
        # first use (a writable one's writer restarts itself).
        self._forked = False
        self._fork_lock = threading.Lock()
        self._run_select = RUN_COLUMNS
        self._execution_select = EXECUTION_COLUMNS
        self._reader = Reader(self._path, self._lock_timeout)
        self._writer: Writer | None = None
        self._enqueue: Callable[[Queued, int], None]
        if readonly:
            self._run_select, self._execution_select = self._reader.open_readonly()
            self._enqueue = _refuse_records(self._path)
        else:
            self._writer = Writer(
                self._path,
                batch_size=batch_size,
                lock_timeout=self._lock_timeout,
                retain_count=retain_count,
                retain_seconds=None if retain_seconds is None else float(retain_seconds),
                max_pending=max_pending,
                backpressure_timeout=backpressure_timeout,
                reader=self._reader,
                owner=weakref.ref(self),
            )
            # The writer's own method, bound once: recording a record is one
            # call, into the writer's queue (the hot path of record_run_rows).
            self._enqueue = self._writer.enqueue
        _LIVE.add(self)

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
        self._enqueue(record, 1)

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
            self._enqueue(Runs(records), len(records))

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
            self._enqueue(RunRows(rows), len(rows))

    def record_execution(self, record: ExecutionRecord) -> None:
        """Queue *record* (replacing any earlier row of the same execution) for writing.

        Waits as :meth:`record_run` does when the queue is full.

        Raises:
            TypeError: *record* is not an ExecutionRecord with a TaskStatus.
            HistoryError: As for :meth:`record_run`.
        """
        if type(record) is not ExecutionRecord or not isinstance(record.status, TaskStatus):
            raise TypeError(f"expected an ExecutionRecord with a TaskStatus, not {record!r}")
        self._enqueue(record, 1)

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
        writer = self._writer
        if writer is None:
            return True
        return writer.flush(timeout)

    def stats(self) -> HistoryStats:
        """Return the writer's counters."""
        writer = self._writer
        return HistoryStats(0, 0, 0) if writer is None else writer.stats()

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
        return find_runs(
            self._read,
            self._run_select,
            task_id=task_id,
            execution_id=execution_id,
            status=status,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

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
        return find_executions(
            self._read,
            self._execution_select,
            execution_id=execution_id,
            status=status,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )

    def _read(self, func: Callable[[sqlite3.Connection], _T]) -> _T:
        writer = self._writer
        if writer is None:
            self._ensure_started()
        elif self._in_memory:
            # In memory, the data lives on the writer's connection: the writer runs
            # the query after committing everything queued before it.
            future: Future[_T] = Future()
            writer.put_control(Call(func, future))
            return future.result()
        else:
            writer.catch_up()
        return self._reader.read(func)

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
        writer = self._writer
        if writer is None:
            self._closed = True
            finished = True
        else:
            finished = writer.close(timeout)
        if finished:
            self._reader.close()
        return finished

    def __enter__(self) -> TaskHistory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._is_closed() else "read-only" if self._readonly else "open"
        return f"<TaskHistory {self._path!r} {state} {self.stats()}>"

    def _is_closed(self) -> bool:
        writer = self._writer
        return self._closed if writer is None else writer.closed

    # -- fork -------------------------------------------------------------------

    def _reset_after_fork(self) -> None:
        # In a forked child only the forking thread exists: the writer thread is
        # gone, and any lock it held stays held.  So every lock, the queue and the
        # connections are replaced (the inherited connections must be neither used
        # nor closed in the child), and the writer is restarted on first use, not
        # here: a child that only calls exec() pays nothing.  (The writer's
        # side: Writer.reset_after_fork.)
        if self._writer is not None:
            self._writer.reset_after_fork()
        self._reader.reset_after_fork()
        self._fork_lock = threading.Lock()
        # A writable history's writer restarts itself; a read-only one's reader
        # is reopened here, on first use.
        self._forked = self._writer is None and not self._closed

    def _ensure_started(self) -> None:
        if not self._forked:
            return
        with self._fork_lock:
            if not self._forked:
                return
            try:
                self._run_select, self._execution_select = self._reader.open_readonly()
            except HistoryError:
                self._closed = True
                logger.exception("history %r cannot be reopened after fork()", self._path)
                raise
            finally:
                self._forked = False


def _after_fork_in_child() -> None:
    for history in list(_LIVE):
        history._reset_after_fork()  # noqa: SLF001 (same module)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _refuse_records(path: str) -> Callable[[Queued, int], None]:
    """A read-only history's recording: a refusal (not a method of the history:
    bound to it, that would keep the history in a reference cycle)."""

    def refuse(record: Queued, count: int) -> None:
        raise HistoryError(f"history {path!r} is opened read-only")

    return refuse


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")
