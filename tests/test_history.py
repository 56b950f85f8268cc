"""Tests of the SQLite task history (threadloom.history)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from threadloom import TaskStatus
from threadloom.history import (
    ExecutionRecord,
    HistoryError,
    TaskHistory,
    TaskRunRecord,
)


def run(
    n: int,
    *,
    task: str = "t1",
    status: TaskStatus = TaskStatus.COMPLETED,
    execution: str = "e1",
    tags: tuple[str, ...] = ("etl",),
) -> TaskRunRecord:
    return TaskRunRecord(
        run_id=f"{execution}:{task}:{n}",
        execution_id=execution,
        task_id=task,
        task_name=task.upper(),
        status=status,
        attempts=1 + n % 3,
        queued_at=1000.0 + n,
        started_at=1000.5 + n,
        finished_at=1001.0 + n,
        duration=0.5,
        error_type="ValueError" if status is TaskStatus.FAILED else None,
        error_message="bad" if status is TaskStatus.FAILED else None,
        tags=tags,
    )


def execution(eid: str, status: TaskStatus, finished: float | None) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=eid,
        targets=("t1", "t2"),
        status=status,
        trigger="manual",
        task_count=3,
        started_at=50.0,
        finished_at=finished,
        duration=None if finished is None else finished - 50.0,
        error_type=None,
        error_message=None,
    )


@pytest.fixture(params=["memory", "file"])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskHistory]:
    path = ":memory:" if request.param == "memory" else tmp_path / "history.db"
    store = TaskHistory(path, batch_size=7)
    yield store
    store.close()


def test_records_round_trip(history: TaskHistory) -> None:
    records = [run(1), run(2, status=TaskStatus.FAILED, tags=()), run(3, tags=("a", "b"))]
    for record in records:
        history.record_run(record)
    got = history.query_runs()
    assert got == sorted(records, key=lambda r: r.finished_at, reverse=True)
    assert all(isinstance(r.status, TaskStatus) for r in got)


def test_filters_by_task_status_execution_and_time(history: TaskHistory) -> None:
    for n in range(30):
        history.record_run(
            run(
                n,
                task=f"t{n % 3}",
                execution=f"e{n % 2}",
                status=TaskStatus.FAILED if n % 5 == 0 else TaskStatus.COMPLETED,
            )
        )
    assert {r.run_id for r in history.query_runs(task_id="t1", limit=None)} == {
        f"e{n % 2}:t1:{n}" for n in range(30) if n % 3 == 1
    }
    failed = history.query_runs(status=TaskStatus.FAILED)
    assert [r.finished_at for r in failed] == [1026.0, 1021.0, 1016.0, 1011.0, 1006.0, 1001.0]
    both = history.query_runs(status=["failed", TaskStatus.COMPLETED], limit=None)
    assert len(both) == 30
    window = history.query_runs(since=1010.0, until=1015.0)
    assert [r.finished_at for r in window] == [1014.0, 1013.0, 1012.0, 1011.0, 1010.0]
    assert len(history.query_runs(execution_id="e0", task_id="t0", limit=None)) == 5


def test_pages_cover_everything_once_newest_first(history: TaskHistory) -> None:
    for n in range(25):
        history.record_run(run(n))
    pages = [history.query_runs(limit=10, offset=offset) for offset in (0, 10, 20)]
    assert [len(p) for p in pages] == [10, 10, 5]
    finished = [r.finished_at for page in pages for r in page]
    assert finished == sorted((1001.0 + n for n in range(25)), reverse=True)


def test_an_execution_row_is_replaced_when_it_ends(history: TaskHistory) -> None:
    history.record_execution(execution("x", TaskStatus.RUNNING, None))
    assert history.query_executions()[0].status is TaskStatus.RUNNING
    history.record_execution(execution("x", TaskStatus.COMPLETED, 60.0))
    (only,) = history.query_executions()
    assert only == execution("x", TaskStatus.COMPLETED, 60.0)
    assert history.query_executions(status="running") == []


def test_many_threads_recording_lose_nothing(history: TaskHistory) -> None:
    threads = [
        threading.Thread(
            target=lambda t=t: [history.record_run(run(n, task=f"w{t}")) for n in range(300)]
        )
        for t in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(history.query_runs(limit=None)) == 1800
    assert history.stats().written == 1800


def test_file_history_uses_wal_and_flush_commits_to_disk(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with TaskHistory(path) as history:
        history.record_run(run(1))
        assert history.flush(timeout=10)
        other = sqlite3.connect(path)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert other.execute("SELECT run_id FROM task_runs").fetchall() == [("e1:t1:1",)]
        finally:
            other.close()


def test_history_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "h.db")
    with TaskHistory(path) as first:
        first.record_run(run(1))
        first.record_execution(execution("e1", TaskStatus.COMPLETED, 51.0))
    with TaskHistory(path) as second:
        assert second.query_runs() == [run(1)]
        assert [e.execution_id for e in second.query_executions()] == ["e1"]
        second.record_run(run(2))
        assert len(second.query_runs()) == 2


# -- construction errors ------------------------------------------------------


def test_directory_path_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="is a directory"):
        TaskHistory(tmp_path)


def test_missing_parent_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="does not exist"):
        TaskHistory(tmp_path / "missing" / "h.db")


def test_empty_path_is_rejected() -> None:
    with pytest.raises(HistoryError, match="empty"):
        TaskHistory("")


def test_a_file_that_is_not_sqlite_is_rejected_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 50)
    before = path.read_bytes()
    with pytest.raises(HistoryError, match="not an SQLite database"):
        TaskHistory(path)
    assert path.read_bytes() == before


def test_a_corrupt_database_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    with TaskHistory(path) as history:
        for n in range(200):
            history.record_run(run(n))
    data = bytearray(path.read_bytes())
    data[100:4096] = os.urandom(3996)  # the schema page, after the file header
    path.write_bytes(bytes(data))
    with pytest.raises(HistoryError, match="corrupt"):
        TaskHistory(path)


def test_a_foreign_sqlite_database_is_rejected_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(HistoryError, match="not a threadloom history"):
        TaskHistory(path)
    assert path.read_bytes() == before


def test_a_locked_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    TaskHistory(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(HistoryError, match="is locked by another connection"):
            TaskHistory(path, lock_timeout=0.05)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"batch_size": 0}, "batch_size"), ({"lock_timeout": -1}, "lock_timeout")],
)
def test_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskHistory(**kwargs)  # type: ignore[arg-type]


def test_bad_query_arguments(history: TaskHistory) -> None:
    with pytest.raises(ValueError, match="limit"):
        history.query_runs(limit=-1)
    with pytest.raises(ValueError, match="offset"):
        history.query_runs(offset=-1)
    with pytest.raises(ValueError, match="unknown task status"):
        history.query_runs(status="exploded")


# -- failures while running ------------------------------------------------------


def test_a_failed_write_is_logged_and_counted_and_the_writer_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "h.db"
    history = TaskHistory(path, lock_timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.ERROR, logger="threadloom.history"):
            history.record_run(run(1))
            assert history.flush(timeout=10)
        assert history.stats() == (0, 1, 1)
        assert "1 record(s) dropped" in caplog.text
        holder.execute("ROLLBACK")
        history.record_run(run(2))
        assert [r.run_id for r in history.query_runs()] == ["e1:t1:2"]
        assert history.stats() == (1, 1, 1)
    finally:
        holder.close()
        history.close()


def test_recording_does_not_wait_for_a_blocked_writer(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    history = TaskHistory(path, lock_timeout=60)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        history.record_run(run(0))
        # The writer is now waiting for the lock; recorders must not wait with it.
        recorder = threading.Thread(
            target=lambda: [history.record_run(run(n)) for n in range(1, 500)]
        )
        recorder.start()
        recorder.join(30)
        assert not recorder.is_alive()
        assert not history.flush(timeout=0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(history.query_runs(limit=None)) == 500
    history.close()


def test_after_close_records_are_counted_and_queries_refused(
    history: TaskHistory, caplog: pytest.LogCaptureFixture
) -> None:
    history.record_run(run(1))
    assert history.close(timeout=10)
    with caplog.at_level(logging.WARNING, logger="threadloom.history"):
        history.record_run(run(2))
    assert "closed" in caplog.text
    assert history.stats() == (1, 1, 0)
    with pytest.raises(HistoryError, match="closed"):
        history.flush()
    with pytest.raises(HistoryError, match="closed"):
        history.query_runs()
    assert history.close()


def test_records_of_the_wrong_shape_are_refused_at_the_call(history: TaskHistory) -> None:
    with pytest.raises(TypeError, match="TaskRunRecord"):
        history.record_run(run(1)._replace(status="completed"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TaskRunRecord"):
        history.record_run(run(1)._replace(tags=["a"]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ExecutionRecord"):
        history.record_execution(("e1",))  # type: ignore[arg-type]
    assert history.query_runs() == []
