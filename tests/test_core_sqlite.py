"""The core's SQLite batches (``sqlite_bulk_write``): the native one and its twin.

The native one drives the sqlite3 module's own SQLite library on the
connection's handle, without the GIL; every assertion here holds for both.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

WAIT = 10.0


@pytest.fixture
def db(tmp_path: Path, core: ModuleType) -> Iterator[sqlite3.Connection]:
    if not core.sqlite_bulk_write_available():
        pytest.skip("this interpreter's sqlite3 module cannot be driven natively")
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (a, b, c)")
    conn.execute("CREATE TABLE u (k TEXT PRIMARY KEY, v NOT NULL)")
    yield conn
    conn.close()


def insert(rows: int, table: str = "t", width: int = 3) -> str:
    values = ", ".join([f"({', '.join('?' * width)})"] * rows)
    return f"INSERT INTO {table} VALUES {values}"


def test_rows_are_written_in_order_with_their_types(
    core: ModuleType, db: sqlite3.Connection
) -> None:
    rows: list[tuple[Any, ...]] = [
        (None, 1, 2.5),
        ("text", "é ☃ 𝄞", b"\x00bytes"),
        (True, -(2**63), 2**63 - 1),
        ("", 0.0, float("inf")),
    ]
    core.sqlite_bulk_write(db, [(insert(2), rows, 2), (insert(1), rows[:1], 1)])
    stored = db.execute("SELECT a, b, c, typeof(a) FROM t ORDER BY rowid").fetchall()
    assert [row[:3] for row in stored] == [
        (None, 1, 2.5),
        ("text", "é ☃ 𝄞", b"\x00bytes"),
        (1, -(2**63), 2**63 - 1),
        ("", 0.0, float("inf")),
        (None, 1, 2.5),
    ]
    assert [row[3] for row in stored] == ["null", "text", "integer", "text", "null"]
    assert not db.in_transaction


def test_a_failing_statement_rolls_back_the_whole_batch(
    core: ModuleType, db: sqlite3.Connection
) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        core.sqlite_bulk_write(
            db,
            [
                (insert(1), [(1, 2, 3)], 1),
                (insert(1, "u", 2), [("k", 1), ("k", 2)], 1),
            ],
        )
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM u").fetchone() == (0,)
    assert not db.in_transaction
    # The connection is usable after the error.
    core.sqlite_bulk_write(db, [(insert(1), [(1, 2, 3)], 1)])
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)


@pytest.mark.parametrize(
    ("rows", "error", "message"),
    [
        ([(1, 2)], sqlite3.ProgrammingError, "Incorrect number of bindings"),
        ([(1, 2, object())], sqlite3.ProgrammingError, "type 'object' is not supported"),
        ([(1, 2, 2**64)], OverflowError, "too large"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_written(
    core: ModuleType, db: sqlite3.Connection, rows: list[Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        core.sqlite_bulk_write(db, [(insert(1), [(7, 8, 9)], 1), (insert(1), rows, 1)])
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert not db.in_transaction


def test_bad_arguments_are_refused(core: ModuleType, db: sqlite3.Connection) -> None:
    with pytest.raises(TypeError, match=r"sqlite3\.Connection"):
        core.sqlite_bulk_write(object(), [])
    with pytest.raises(ValueError, match="group must be an int >= 1"):
        core.sqlite_bulk_write(db, [(insert(1), [(1, 2, 3)], 0)])
    with pytest.raises(ValueError, match="not a whole number of groups of 2"):
        core.sqlite_bulk_write(db, [(insert(2), [(1, 2, 3)] * 3, 2)])
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        core.sqlite_bulk_write(db, [("INSERT INTO nope VALUES (?)", [(1,)], 1)])
    db.execute("BEGIN")
    with pytest.raises(sqlite3.ProgrammingError, match="transaction is already open"):
        core.sqlite_bulk_write(db, [(insert(1), [(1, 2, 3)], 1)])
    db.execute("ROLLBACK")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_nothing_to_write_opens_no_transaction(core: ModuleType, db: sqlite3.Connection) -> None:
    core.sqlite_bulk_write(db, [(insert(1), [], 1)])
    assert db.total_changes == 0


def test_a_closed_connection_is_refused(core: ModuleType, db: sqlite3.Connection) -> None:
    db.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        core.sqlite_bulk_write(db, [(insert(1), [(1, 2, 3)], 1)])


def test_a_locked_database_waits_for_the_busy_timeout_then_raises(
    core: ModuleType, db: sqlite3.Connection, tmp_path: Path
) -> None:
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    db.execute("PRAGMA busy_timeout = 50")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        core.sqlite_bulk_write(db, [(insert(1), [(1, 2, 3)], 1)])
    assert not db.in_transaction
    # Within the busy timeout, a lock that is released lets the write through.
    db.execute(f"PRAGMA busy_timeout = {int(WAIT * 1000)}")
    writing = threading.Event()
    done: list[BaseException | None] = []

    def write() -> None:
        writing.set()
        try:
            core.sqlite_bulk_write(db, [(insert(1), [(1, 2, 3)], 1)])
        except BaseException as exc:
            done.append(exc)
        else:
            done.append(None)

    thread = threading.Thread(target=write)
    thread.start()
    assert writing.wait(WAIT)
    holder.execute("ROLLBACK")
    thread.join(WAIT)
    holder.close()
    assert done == [None]
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_the_native_batch_runs_on_the_modules_own_library(core: ModuleType) -> None:
    # Either both sides see one SQLite (same version), or the native side
    # declines: a second copy in the process would break SQLite's file locks.
    if not core.NATIVE:
        assert core.sqlite_bulk_write_available()
        return
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a)")
    if core.sqlite_bulk_write_available():
        core.sqlite_bulk_write(conn, [("INSERT INTO t VALUES (sqlite_version())", [()], 1)])
        assert conn.execute("SELECT a FROM t").fetchone() == (sqlite3.sqlite_version,)
    conn.close()


def test_rows_may_be_lists_and_one_statement_is_run_at_a_time(
    core: ModuleType, db: sqlite3.Connection
) -> None:
    core.sqlite_bulk_write(db, [(insert(1), [[1, "é", 2.0], [3, None, b"x"]], 1)])
    assert db.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall() == [
        (1, "é", 2.0),
        (3, None, b"x"),
    ]
    with pytest.raises(sqlite3.ProgrammingError, match="one statement at a time"):
        core.sqlite_bulk_write(db, [(insert(1) + "; DELETE FROM t", [(4, 5, 6)], 1)])
    # A trailing semicolon is no second statement.
    core.sqlite_bulk_write(db, [(insert(1) + " ;  ", [(7, 8, 9)], 1)])
    assert db.execute("SELECT count(*) FROM t").fetchone() == (3,)
