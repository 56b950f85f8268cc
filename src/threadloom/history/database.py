"""The connections to a history database: the writer's, prepared (schema, WAL,
interrupted executions) and retried while another process holds the file; the
readers' (:class:`Reader`), read-write or read-only; the checks of a path and
the identity of a file; and SQLite's errors told in the history's words."""

from __future__ import annotations

import logging
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .._errors import HistoryError
from .owner import mark_interrupted
from .schema import check_readonly_schema, prepare_schema

__all__ = [
    "ABANDONED",
    "Reader",
    "check_path",
    "close_quietly",
    "connect",
    "explain",
    "file_id",
    "is_busy",
    "open_writer",
]

logger = logging.getLogger("threadloom.history")

_T = TypeVar("_T")

# Connections inherited across fork(): never used nor closed in the child (SQLite
# forbids both), only kept from being garbage-collected, which would close them.
ABANDONED: list[sqlite3.Connection] = []


def connect(path: str, lock_timeout: float) -> sqlite3.Connection:
    # isolation_level=None: transactions are begun and committed explicitly.
    # check_same_thread=False: the writer connection is prepared here and then
    # used only by the writer thread; the reader is guarded by its Reader's lock.
    return sqlite3.connect(
        path,
        timeout=lock_timeout,
        isolation_level=None,
        check_same_thread=False,
    )


def open_writer(path: str, in_memory: bool, lock_timeout: float) -> sqlite3.Connection:
    """The writer's connection to *path*, its schema prepared (and, for a file,
    the executions a process that has ended left running marked interrupted)."""
    # SQLite does not call the busy handler everywhere: a connection that
    # switches a brand-new file to WAL while another process does the same
    # gets SQLITE_BUSY at once.  So the whole preparation is retried, with a
    # short backoff, until lock_timeout has passed.
    started = time.monotonic()
    delay = 0.005
    while True:
        try:
            conn = connect(path, lock_timeout)
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot open history database {path!r}: {exc}") from exc
        try:
            prepare_schema(conn, path, in_memory)
            if not in_memory:
                mark_interrupted(conn, path)
        except HistoryError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            waited = time.monotonic() - started
            if is_busy(exc) and waited < lock_timeout:
                time.sleep(min(delay, lock_timeout - waited))
                delay = min(delay * 2, 0.1)
                continue
            raise explain(path, exc, waited) from exc
        return conn


class Reader:
    """The connection queries of a file read through, and the lock that guards it.

    A writable history's is opened on the first query; a read-only one's at once
    (:meth:`open_readonly`).
    """

    def __init__(self, path: str, lock_timeout: float) -> None:
        self._path = path
        self._lock_timeout = lock_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open_readonly(self) -> tuple[str, str]:
        """Open the file for queries only (``mode=ro``); return the select lists of
        its runs and executions (see :func:`check_readonly_schema`)."""
        path = self._path
        if not os.path.exists(path):
            raise HistoryError(f"no history database at {path!r}")
        if os.path.isdir(path):
            raise HistoryError(f"history path {path!r} is a directory, not a database file")
        uri = pathlib.Path(path).absolute().as_uri() + "?mode=ro"
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
                raise HistoryError(f"cannot open history database {path!r}: {exc}") from exc
            try:
                selects = check_readonly_schema(conn, path)
            except HistoryError:
                conn.close()
                raise
            except sqlite3.DatabaseError as exc:
                conn.close()
                error = exc
                text = str(exc)
                retry = ("readonly" in text or "unable to open" in text) and not os.path.exists(
                    path + "-wal"
                )
                if retry:
                    continue
                raise explain(path, exc, self._lock_timeout) from exc
            self._conn = conn
            return selects
        assert error is not None
        raise explain(path, error, self._lock_timeout) from error

    def read(self, func: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run *func* on the connection (opened now if it is not), under the lock."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = connect(self._path, self._lock_timeout)
                return func(self._conn)
            except sqlite3.Error as exc:
                raise explain(self._path, exc, self._lock_timeout) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def discard(self) -> None:
        """Close the connection, logging a failure (its file is gone)."""
        with self._lock:
            if self._conn is not None:
                close_quietly(self._conn)
                self._conn = None

    def reset_after_fork(self) -> None:
        """In a forked child: drop the inherited connection (see ABANDONED) and lock."""
        if self._conn is not None:
            ABANDONED.append(self._conn)
        self._conn = None
        self._lock = threading.Lock()


def explain(path: str, exc: sqlite3.Error, waited: float) -> HistoryError:
    """The HistoryError of *exc*, an SQLite error on *path* after *waited* seconds."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return HistoryError(
            f"history database {path!r} is locked by another connection "
            f"(waited {waited:.3g} s): {text}"
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return HistoryError(f"{path!r} is not an SQLite database, or is corrupt: {text}")
    return HistoryError(f"cannot use history database {path!r}: {text}")


def is_busy(exc: BaseException) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error as exc:
        logger.warning("closing a history connection failed: %s", exc)


def file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def check_path(path: str) -> None:
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
