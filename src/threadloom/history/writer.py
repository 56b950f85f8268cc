"""The writer: the queue every record goes through, and the one thread that
drains it, committing what it finds in batches, one transaction per batch.

It waits out a database locked by another connection (the records wait, and
producers wait for room once *max_pending* are queued), writes again one by one
the records of a batch SQLite refused so that only the bad one is dropped,
recreates a file deleted while in use, and prunes what the retention limits no
longer keep.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple

from .._errors import HistoryError
from ..core import core
from .database import (
    ABANDONED,
    Reader,
    check_path,
    close_quietly,
    file_id,
    is_busy,
    open_writer,
)
from .owner import this_owner
from .records import ExecutionRecord, HistoryStats, TaskRunRecord, run_row
from .schema import INSERT_EXECUTION, insert_runs, rollback, run_statements

__all__ = ["Call", "Flush", "Queued", "RunRows", "Runs", "Writer"]

logger = logging.getLogger("threadloom.history")

_BUSY_RETRY_DELAY = 0.05
_FILE_CHECK_INTERVAL = 0.25
_LOCK_LOG_INTERVAL = 30.0


class Flush(NamedTuple):
    done: threading.Event


class Call(NamedTuple):
    func: Callable[[sqlite3.Connection], Any]
    future: Future[Any]


class Stop(NamedTuple):
    pass


class Runs(NamedTuple):
    """Several run records queued as one item (see TaskHistory.record_runs)."""

    records: Sequence[TaskRunRecord]


class RunRows(NamedTuple):
    """Several runs already in row form, queued as one item (see TaskHistory.record_run_rows)."""

    rows: Sequence[tuple[Any, ...]]


#: What a producer queues.
Queued = TaskRunRecord | ExecutionRecord | Runs | RunRows
Item = Queued | Flush | Call | Stop


def _nothing() -> None:
    return None


class Writer:
    """The queue of a writable history and its writer thread (see TaskHistory for
    the arguments); opens the database (HistoryError if it cannot) and starts.

    *reader* is the history's reader, closed by the writer when the file is
    found deleted or replaced.
    """

    def __init__(
        self,
        path: str,
        *,
        batch_size: int,
        lock_timeout: float,
        retain_count: int | None,
        retain_seconds: float | None,
        max_pending: int,
        backpressure_timeout: float | None,
        reader: Reader,
        owner: Callable[[], object] = _nothing,
    ) -> None:
        self._path = path
        # What the thread keeps alive while it runs: a weak reference to the
        # owner, so that the two are no cycle once the thread has stopped.
        self._owner = owner
        self._in_memory = path == ":memory:"
        self._batch_size = batch_size
        self._lock_timeout = lock_timeout
        self._retain_count = retain_count
        self._retain_seconds = retain_seconds
        self._max_pending = max_pending
        self._backpressure_timeout = backpressure_timeout
        # _state guards _closed, _pending and the counters; producers wait on it
        # for room in the queue, the writer notifies it as it drains.
        self._state = threading.Condition(threading.Lock())
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._pending = 0
        self._written = 0
        self._dropped = 0
        self._write_errors = 0
        self._closed = False
        self._blocked_since: float | None = None
        self._reader = reader
        self._conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._forked = False
        self._fork_lock = threading.Lock()
        # (st_dev, st_ino) of the database file and of its -wal and -shm files,
        # as opened: how a deleted or replaced file is recognised.
        self._identity: tuple[int, int] | None = None
        self._sidecars: dict[str, tuple[int, int]] = {}
        self._since_prune = 0
        self._last_prune = -float("inf")
        self._file_checked = -float("inf")
        self._reopen_failed = False

        if not self._in_memory:
            check_path(path)
        self._conn = self._open()
        self._start()

    def _open(self) -> sqlite3.Connection:
        conn = open_writer(self._path, self._in_memory, self._lock_timeout)
        if not self._in_memory:
            self._identity = file_id(self._path)
            self._sidecars = {
                suffix: ident
                for suffix in ("-wal", "-shm")
                if (ident := file_id(self._path + suffix)) is not None
            }
        return conn

    def _start(self) -> None:
        # The thread holds the writer's owner (its TaskHistory) while it runs:
        # a history dropped unclosed stays alive, and in _LIVE for the fork
        # hook, until its writer has stopped, as when the thread ran one of
        # the history's own methods.
        self._thread = threading.Thread(
            target=self._run,
            args=(self._owner(),),
            name="threadloom-history-writer",
            daemon=True,
        )
        self._thread.start()

    def _run(self, owner: object) -> None:
        self._loop()

    @property
    def closed(self) -> bool:
        """True once the writer takes no more records (closed, or not reopened after fork)."""
        return self._closed

    # -- the producers' side --------------------------------------------------

    def enqueue(self, record: Queued, count: int) -> None:
        """Queue *record* (*count* records) for writing (see TaskHistory.record_run)."""
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
            if isinstance(record, Runs)
            else record.rows[0]
            if isinstance(record, RunRows)
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

    def put_control(self, item: Flush | Call) -> None:
        self._ensure_started()
        with self._state:
            if not self._closed:
                self._queue.put(item)
                return
        raise HistoryError(f"history {self._path!r} is closed")

    def flush(self, timeout: float | None) -> bool:
        """Wait until every record queued before this call is committed (see TaskHistory.flush)."""
        done = threading.Event()
        self.put_control(Flush(done))
        return done.wait(timeout)

    def catch_up(self) -> None:
        """Wait for the records queued before a query, which reads its caller's writes."""
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

    def stats(self) -> HistoryStats:
        with self._state:
            return HistoryStats(self._written, self._dropped, self._write_errors)

    def close(self, timeout: float | None) -> bool:
        """Take no more records, and wait for the thread to write what is queued
        and stop (see TaskHistory.close); True if it did within *timeout*."""
        with self._state:
            if not self._closed:
                self._closed = True
                if self._thread is not None:
                    self._queue.put(Stop())
                self._state.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        finished = thread is None or not thread.is_alive()
        if not finished:
            logger.warning(
                "history %r: closing with %d record(s) not yet written (the database is "
                "locked by another connection, or busy); they are written if it frees "
                "up before this process exits",
                self._path,
                self._pending,
            )
        return finished

    # -- fork -------------------------------------------------------------------

    def reset_after_fork(self) -> None:
        """In a forked child (see TaskHistory._reset_after_fork)."""
        # Only the forking thread exists: the writer thread is gone, and any lock
        # it held stays held.  So the locks, the queue and the connection are
        # replaced (the inherited connection must be neither used nor closed in
        # the child), and the writer is restarted on first use, not here: a child
        # that only calls exec() pays nothing.
        if self._conn is not None:
            ABANDONED.append(self._conn)
        self._conn = None
        self._state = threading.Condition(threading.Lock())
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
                # In memory, the child's store starts empty: the parent's
                # lives on a connection the child must not touch.
                self._conn = self._open()
                self._start()
            except HistoryError:
                with self._state:
                    self._closed = True
                logger.exception("history %r cannot be reopened after fork()", self._path)
                raise
            finally:
                self._forked = False

    # -- the writer thread -----------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            runs: list[TaskRunRecord | tuple[Any, ...]] = []
            executions: list[ExecutionRecord] = []
            controls: list[Flush | Call] = []
            item: Item = self._queue.get()
            while True:
                if isinstance(item, RunRows):
                    runs.extend(item.rows)
                elif isinstance(item, TaskRunRecord):
                    runs.append(item)
                elif isinstance(item, Runs):
                    runs.extend(item.records)
                elif isinstance(item, ExecutionRecord):
                    executions.append(item)
                elif isinstance(item, Stop):
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
                if isinstance(control, Flush):
                    control.done.set()
                elif self._conn is not None:
                    _run_call(self._conn, control)
                else:
                    control.future.set_exception(
                        HistoryError(f"history {self._path!r} is not open")
                    )
        if self._conn is not None:
            self._conn.close()

    def _write_batch(
        self,
        runs: Sequence[TaskRunRecord | tuple[Any, ...]],
        executions: Sequence[ExecutionRecord],
    ) -> None:
        run_rows: list[tuple[Any, ...]] = []
        execution_rows: list[tuple[Any, ...]] = []
        dropped = 0
        owner = this_owner()
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
            conn = self._conn
            if conn is None:
                conn = self._reopen()
            if conn is not None:
                try:
                    _commit(conn, run_rows, execution_rows)
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
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
        if self._conn is None or self._identity is None:
            return
        if file_id(self._path) == self._identity:
            return
        logger.error(
            "history file %r was deleted or replaced while in use: what it held is gone "
            "with it; records from now on go to a new history at that path",
            self._path,
        )
        self._abandon_file()
        self._reopen()

    def _abandon_file(self) -> None:
        if self._conn is not None:
            close_quietly(self._conn)
            self._conn = None
        self._reader.discard()
        # The old file's -wal and -shm stay behind (SQLite leaves them when its
        # file was unlinked), and a new database at the path would take them for
        # its own: the WAL-index of another file is corruption.  Only the files
        # recorded at open are removed (same inode); one a new database made since
        # is someone else's.  A process still holding the old files keeps them open.
        for suffix, ident in self._sidecars.items():
            if file_id(self._path + suffix) == ident:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path + suffix)
        self._sidecars = {}
        self._identity = None

    def _reopen(self) -> sqlite3.Connection | None:
        # Why recreate rather than only report: a deleted history usually means
        # "start over", and records written into the unlinked file would reach no
        # reader, so they would be lost all the same.
        try:
            check_path(self._path)
            conn = self._open()
        except HistoryError as exc:
            if not self._reopen_failed:
                self._reopen_failed = True
                logger.error("history %r cannot be reopened: %s", self._path, exc)
            return None
        self._reopen_failed = False
        self._conn = conn
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
        conn = self._conn
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
                rollback(conn)
                raise
        except sqlite3.Error as exc:
            # Retention is best effort: a busy database is pruned next time.
            logger.warning("history %r: pruning old records failed: %s", self._path, exc)


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
            batches.append((insert_runs(_NATIVE_RUN_GROUP), run_rows[:whole], _NATIVE_RUN_GROUP))
        if whole < len(run_rows):
            batches.append((insert_runs(1), run_rows[whole:], 1))
        if execution_rows:
            # In order, after the runs: an execution's end replaces its start.
            batches.append((INSERT_EXECUTION, execution_rows, 1))
        core.sqlite_bulk_write(conn, batches)
        return
    # Few statements for many rows (see schema.run_statements), and a batch that is
    # one statement is its own transaction: SQLite releases the GIL for each
    # step (BEGIN and COMMIT are steps too), and the writer then waits for the
    # GIL while the pool's workers hold it, up to a switch interval each time,
    # so steps are what the writer's throughput is counted in.  Runs go before
    # executions: an execution's end is queued after its runs, and a reader
    # who sees it must find them.
    statements = run_statements(run_rows)
    if len(statements) == 1 and not execution_rows:
        conn.execute(*statements[0])
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            conn.execute(sql, params)
        if execution_rows:
            # In order: an execution's end replaces its start.
            conn.executemany(INSERT_EXECUTION, execution_rows)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def _execution_to_row(record: ExecutionRecord, owner: str) -> tuple[Any, ...]:
    return (
        record.execution_id,
        _json_strings(record.targets),
        *record[2:],
        owner,
    )


def _json_strings(items: Sequence[str]) -> str:
    """``json.dumps(list(items))``, at join speed for plain ASCII strings.

    An execution of a 100,000-task graph names 100,000 targets, in its start
    record and its end record: json.dumps took 20 ms each.
    """
    try:
        plain = "".join(items)
    except TypeError:
        return json.dumps(list(items))
    if not items:
        return "[]"
    if plain.isascii() and plain.isprintable() and '"' not in plain and "\\" not in plain:
        # Nothing to escape: the text json.dumps writes, item for item.
        return '["' + '", "'.join(items) + '"]'
    return json.dumps(list(items))


def _run_call(conn: sqlite3.Connection, call: Call) -> None:
    if not call.future.set_running_or_notify_cancel():
        return
    try:
        result = call.func(conn)
    except BaseException as exc:
        call.future.set_exception(exc)
    else:
        call.future.set_result(result)
