"""Tests of the SQLite task history (threadloom.history)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing
import os
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadloom import TaskStatus
from threadloom.cli import main as cli_main
from threadloom.history import (
    MEMORY_RETAIN_COUNT,
    ExecutionRecord,
    HistoryError,
    TaskHistory,
    TaskRunRecord,
    run_row,
)

WAIT = 30.0


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
        traceback=(
            'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad\n'
            if status is TaskStatus.FAILED
            else None
        ),
    )


def record_runs(history: TaskHistory, runs: Iterable[TaskRunRecord]) -> None:
    for record in runs:
        history.record_run(record)


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


def test_run_rows_are_stored_as_their_records_are(history: TaskHistory) -> None:
    records = [run(1), run(2, status=TaskStatus.FAILED, tags=()), run(3, tags=("a", "b"))]
    history.record_run_rows([run_row(record) for record in records])
    assert history.query_runs() == sorted(records, key=lambda r: r.finished_at, reverse=True)


def test_many_plain_and_unusual_rows_of_several_executions_in_one_batch(tmp_path: Path) -> None:
    # Plain rows (completed, untagged, no error) are sent in a shorter form,
    # grouped by execution, in chunks of several sizes; the rest in full.
    def plain(n: int, execution: str) -> TaskRunRecord:
        task = f"t{n}"
        return run(n, task=task, execution=execution, tags=())._replace(
            run_id=f"{execution}:{task}"
        )

    records = [plain(n, "e1") for n in range(5000)]
    records += [plain(n, "e2") for n in range(3)]
    records += [
        run(1, tags=()),  # a run id that is not execution:task
        plain(9, "e1")._replace(run_id="e1:t9", attempts=3, tags=("a",)),
        run(2, status=TaskStatus.FAILED, tags=()),
        plain(7, "e2")._replace(status=TaskStatus.SKIPPED, started_at=None, duration=None),
    ]
    store = TaskHistory(tmp_path / "h.db")
    try:
        store.record_run_rows([run_row(record) for record in records])
        assert store.flush(timeout=30)
        assert store.stats() == (len(records), 0, 0)
        stored = store.query_runs(limit=None)
    finally:
        store.close()
    assert sorted(stored) == sorted(records)


def test_both_ways_of_writing_a_batch_store_the_same_rows(tmp_path: Path) -> None:
    # The native core writes a batch without the GIL; the sqlite3 module's way
    # is the twin's.  The two files must hold the same rows, in the same order.
    from threadloom.core import core
    from threadloom.history import writer as history_module

    if not (core.NATIVE and core.sqlite_bulk_write_available()):
        pytest.skip("the native core cannot drive this interpreter's SQLite")
    rows = [run_row(run(n, task=f"t{n}", tags=() if n % 3 else ("a",))) for n in range(600)]
    rows += [run_row(run(n, status=TaskStatus.FAILED)) for n in range(5)]
    executions = [
        history_module._execution_to_row(execution("e1", TaskStatus.RUNNING, None), "me"),
        history_module._execution_to_row(execution("e1", TaskStatus.COMPLETED, 60.0), "me"),
    ]
    contents = []
    for native in (True, False):
        path = tmp_path / f"{native}.db"
        TaskHistory(path).close()  # the schema
        conn = sqlite3.connect(path, isolation_level=None)
        history_module._commit(conn, rows, executions, native=native)
        contents.append(
            (
                conn.execute("SELECT * FROM task_runs ORDER BY rowid").fetchall(),
                conn.execute("SELECT * FROM executions").fetchall(),
            )
        )
        conn.close()
    assert contents[0] == contents[1]
    assert len(contents[0][0]) == len(rows) and len(contents[0][1]) == 1


def test_runs_that_did_not_complete_are_found_through_their_partial_index(
    tmp_path: Path,
) -> None:
    store = TaskHistory(tmp_path / "h.db")
    try:
        records = [run(n, task=f"t{n}") for n in range(20)]
        records += [run(n, task=f"f{n}", status=TaskStatus.FAILED) for n in range(3)]
        store.record_runs(records)
        assert store.flush(timeout=30)
        failed = store.query_runs(status=TaskStatus.FAILED)
        assert {r.task_id for r in failed} == {"f0", "f1", "f2"}
        assert len(store.query_runs(status=["completed", "failed"])) == 23
        assert len(store.query_runs(status="completed")) == 20
    finally:
        store.close()
    conn = sqlite3.connect(tmp_path / "h.db")
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM task_runs "
        "WHERE status != 'completed' AND status IN ('failed')"
    ).fetchall()
    conn.close()
    assert "task_runs_not_completed" in str(plan)


def test_a_file_with_the_old_status_index_loses_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    TaskHistory(path).close()
    conn = sqlite3.connect(path)
    conn.execute("CREATE INDEX task_runs_by_status ON task_runs (status, finished_at)")
    conn.commit()
    conn.close()
    TaskHistory(path).close()
    conn = sqlite3.connect(path)
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert "task_runs_by_status" not in names and "task_runs_not_completed" in names


@pytest.mark.parametrize(
    "row",
    [
        list(run_row(run(1))),
        run_row(run(1))[:-1],
        (*run_row(run(1)), None),
        (*run_row(run(1))[:4], "done", *run_row(run(1))[5:]),
    ],
    ids=["list", "short", "long", "unknown-status"],
)
def test_run_rows_of_the_wrong_shape_are_refused_and_nothing_is_queued(
    history: TaskHistory, row: Any
) -> None:
    with pytest.raises(TypeError, match="run row of 14 fields"):
        history.record_run_rows([run_row(run(1)), row])
    assert history.flush(timeout=10)
    assert history.query_runs() == [] and history.stats() == (0, 0, 0)


def test_one_run_row_sqlite_refuses_costs_only_itself(
    history: TaskHistory, caplog: pytest.LogCaptureFixture
) -> None:
    bad = (*run_row(run(3))[:11], object(), *run_row(run(3))[12:])
    with caplog.at_level(logging.ERROR, logger="threadloom.history"):
        history.record_run_rows([run_row(run(1)), run_row(run(2)), bad, run_row(run(4))])
        assert history.flush(timeout=10)
    assert [r.run_id for r in history.query_runs()] == ["e1:t1:4", "e1:t1:2", "e1:t1:1"]
    assert history.stats() == (3, 1, 1)
    assert "record e1:t1:3; dropped" in caplog.text


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
            target=lambda t=t: record_runs(history, (run(n, task=f"w{t}") for n in range(300)))
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


def test_recording_does_not_wait_for_a_blocked_writer(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    history = TaskHistory(path, lock_timeout=60)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        history.record_run(run(0))
        # The writer is now waiting for the lock; recorders must not wait with it.
        recorder = threading.Thread(
            target=lambda: record_runs(history, (run(n) for n in range(1, 500)))
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


# -- helpers for other processes ----------------------------------------------------


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line *proc* prints, waiting at most *timeout* seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output from the child within {timeout} s")
    return proc.stdout.readline().strip()


def _python(code: str, *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


_LOCKER = """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    print("released", flush=True)
"""


@contextlib.contextmanager
def locked_by_another_process(path: Path) -> Iterator[Callable[[], None]]:
    """Hold *path* under BEGIN EXCLUSIVE in another process until the callable is called."""
    proc = _python(_LOCKER, path)
    try:
        assert _readline(proc, 30) == "locked"

        def release() -> None:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert _readline(proc, 30) == "released"

        yield release
    finally:
        _stop(proc)


def _wait_child(pid: int, timeout: float) -> int:
    """The exit code of forked child *pid*; killed (and -9) if it outlives *timeout*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -9


def _in_child(func: Callable[[], Any], *, unprivileged: bool = False, timeout: float = 60) -> Any:
    """Run *func* in a forked child (as user nobody if *unprivileged* and we are root).

    Returns what *func* returned (JSON), or raises if the child failed or hung.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read)
            if unprivileged and os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
            result = json.dumps(func()).encode()
            with os.fdopen(write, "wb") as out:
                out.write(result)
            code = 0
        except BaseException as exc:
            with contextlib.suppress(Exception):
                os.write(write, json.dumps({"child error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(write)
    code = _wait_child(pid, timeout)
    with os.fdopen(read, "rb") as data:
        text = data.read().decode()
    assert code == 0, f"child exited {code}: {text}"
    return json.loads(text)


# -- 14: a locked database makes records wait, never drops them ------------------------


def test_records_wait_for_a_lock_held_by_another_process_and_all_land(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "h.db"
    history = TaskHistory(path, lock_timeout=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="threadloom.history"):
            with locked_by_another_process(path) as release:
                history.record_execution(execution("x", TaskStatus.RUNNING, None))
                for n in range(7):
                    history.record_run(run(n, execution="x"))
                history.record_execution(execution("x", TaskStatus.COMPLETED, 60.0))
                # Nothing can be committed while the other process holds the lock.
                assert not history.flush(timeout=0.2)
                release()
            assert history.flush(timeout=30)
        assert history.stats() == (9, 0, 0)
        assert len(history.query_runs(limit=None)) == 7
        assert [e.status for e in history.query_executions()] == [TaskStatus.COMPLETED]
        assert "locked by another connection; 9 record(s) wait" in caplog.text
        assert "writable again" in caplog.text
        assert "dropped" not in caplog.text
    finally:
        history.close()


def test_a_full_queue_refuses_a_record_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    history = TaskHistory(path, lock_timeout=0.05, max_pending=5, backpressure_timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for n in range(5):
            history.record_run(run(n))
        with pytest.raises(HistoryError, match="is full: 5 records wait to be written"):
            history.record_run(run(5))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert history.flush(timeout=30)
    assert [r.run_id for r in history.query_runs()] == [f"e1:t1:{n}" for n in range(4, -1, -1)]
    assert history.stats() == (5, 0, 0)
    history.close()


def test_a_full_queue_makes_producers_wait_until_the_lock_clears(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    history = TaskHistory(path, lock_timeout=0.05, max_pending=5, backpressure_timeout=None)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    producer = threading.Thread(target=lambda: record_runs(history, (run(n) for n in range(20))))
    try:
        producer.start()
        producer.join(0.2)
        # Held back by the bound, not finished: the database has taken nothing.
        assert producer.is_alive()
        assert history.stats().written == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    producer.join(30)
    assert not producer.is_alive()
    assert len(history.query_runs(limit=None)) == 20
    history.close()


def test_one_record_sqlite_refuses_costs_only_itself(
    history: TaskHistory, caplog: pytest.LogCaptureFixture
) -> None:
    bad = run(3)._replace(error_message=object())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="threadloom.history"):
        for record in (run(1), run(2), bad, run(4)):
            history.record_run(record)
        assert history.flush(timeout=10)
    assert [r.run_id for r in history.query_runs()] == ["e1:t1:4", "e1:t1:2", "e1:t1:1"]
    assert history.stats() == (3, 1, 1)
    assert "record e1:t1:3; dropped" in caplog.text


# -- 15: processes creating the same file at once -------------------------------------------


def _create_and_record(
    pattern: str, rounds: int, worker: int, barrier: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    for number in range(rounds):
        barrier.wait(60)
        try:
            with TaskHistory(pattern.format(number)) as history:
                history.record_run(run(worker, execution=f"r{number}"))
            results.put((number, worker, None))
        except Exception as exc:
            results.put((number, worker, repr(exc)))


def test_processes_creating_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    rounds, workers = 12, 4
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    results = context.Queue()
    pattern = str(tmp_path / "h{}.db")
    processes = [
        context.Process(target=_create_and_record, args=(pattern, rounds, w, barrier, results))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=120) for _ in range(rounds * workers)]
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [o for o in outcomes if o[2] is not None] == []
    for number in range(rounds):
        with TaskHistory(pattern.format(number), readonly=True) as history:
            assert len(history.query_runs(limit=None)) == workers


# -- 16: a deleted file, fork(), retention ---------------------------------------------------


def test_a_file_deleted_while_in_use_is_recreated_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "h.db"
    with TaskHistory(path) as history:
        history.record_run(run(1))
        assert history.flush(timeout=10)
        os.unlink(path)
        with caplog.at_level(logging.ERROR, logger="threadloom.history"):
            history.record_run(run(2))
            assert history.flush(timeout=10)
        assert "was deleted or replaced while in use" in caplog.text
        assert path.exists()
        assert [r.run_id for r in history.query_runs()] == ["e1:t1:2"]
        history.record_run(run(3))
        assert [r.run_id for r in history.query_runs()] == ["e1:t1:3", "e1:t1:2"]
        assert history.stats() == (3, 0, 0)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert sorted(conn.execute("SELECT run_id FROM task_runs")) == [
            ("e1:t1:2",),
            ("e1:t1:3",),
        ]
    finally:
        conn.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("where", ["memory", "file"])
def test_a_history_inherited_across_fork_works_in_the_child(tmp_path: Path, where: str) -> None:
    path = ":memory:" if where == "memory" else str(tmp_path / "h.db")
    with TaskHistory(path) as history:
        history.record_run(run(1))
        assert history.flush(timeout=10)

        def child() -> Any:
            history.record_run(run(2))
            flushed = history.flush(timeout=10)
            ids = [r.run_id for r in history.query_runs()]
            return [flushed, ids, history.close(timeout=10)]

        flushed, ids, closed = _in_child(child)
        assert flushed and closed
        # In memory, the child's store starts empty; a file is shared.
        assert ids == (["e1:t1:2"] if where == "memory" else ["e1:t1:2", "e1:t1:1"])
        parent_sees = [r.run_id for r in history.query_runs()]
        assert parent_sees == (["e1:t1:1"] if where == "memory" else ["e1:t1:2", "e1:t1:1"])


def test_an_in_memory_history_keeps_a_bounded_count_by_default() -> None:
    total = MEMORY_RETAIN_COUNT + 2_000
    with TaskHistory(batch_size=500) as history:
        for n in range(total):
            history.record_run(run(n))
        kept = history.query_runs(limit=None)
    assert MEMORY_RETAIN_COUNT <= len(kept) <= MEMORY_RETAIN_COUNT * 11 // 10 + 1
    assert kept[0].run_id == f"e1:t1:{total - 1}"
    assert [r.finished_at for r in kept] == [
        1001.0 + n for n in range(total - 1, total - 1 - len(kept), -1)
    ]


def test_retention_keeps_the_newest_runs_and_executions_and_every_running_one(
    history: TaskHistory,
) -> None:
    store = TaskHistory(history.path if history.path != ":memory:" else ":memory:", retain_count=20)
    history.close()
    with store:
        store.record_execution(execution("live", TaskStatus.RUNNING, None))
        for n in range(300):
            store.record_run(run(n, execution=f"e{n}"))
            store.record_execution(execution(f"e{n}", TaskStatus.COMPLETED, 60.0 + n))
        runs = store.query_runs(limit=None)
        executions = store.query_executions(limit=None)
    assert 20 <= len(runs) <= 23
    assert runs[0].run_id == "e299:t1:299"
    assert {r.run_id for r in runs} == {f"e{n}:t1:{n}" for n in range(300 - len(runs), 300)}
    ids = {e.execution_id for e in executions}
    assert "live" in ids
    assert 21 <= len(ids) <= 24
    assert ids - {"live"} == {f"e{n}" for n in range(300 - len(ids) + 1, 300)}


def test_retention_by_age(tmp_path: Path) -> None:
    now = time.time()
    with TaskHistory(tmp_path / "h.db", retain_seconds=3600) as history:
        old = [run(n) for n in range(5)]  # finished around epoch 1000: long ago
        new = [run(n)._replace(run_id=f"new{n}", finished_at=now - n) for n in range(5)]
        for record in old + new:
            history.record_run(record)
        assert history.flush(timeout=10)
        history.record_run(run(0)._replace(run_id="last", finished_at=now))
        kept = {r.run_id for r in history.query_runs(limit=None)}
    assert kept == {"last", *(f"new{n}" for n in range(5))}


def test_retention_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="retain_count"):
        TaskHistory(retain_count=-1)
    with pytest.raises(ValueError, match="retain_seconds"):
        TaskHistory(retain_seconds=0)
    with pytest.raises(ValueError, match="max_pending"):
        TaskHistory(max_pending=0)
    with pytest.raises(ValueError, match="backpressure_timeout"):
        TaskHistory(backpressure_timeout=-1)
    with pytest.raises(ValueError, match="read-only"):
        TaskHistory(readonly=True)


# -- 17: executions of a killed process ------------------------------------------------------------

_OWNER = """
    import sys
    from threadloom import TaskStatus
    from threadloom.history import ExecutionRecord, TaskHistory, TaskRunRecord
    history = TaskHistory(sys.argv[1])
    eid = sys.argv[2]
    history.record_execution(
        ExecutionRecord(eid, ("t1",), TaskStatus.RUNNING, "manual", 2, 50.0, None, None, None, None)
    )
    history.record_run(
        TaskRunRecord(eid + ":t0", eid, "t0", "T0", TaskStatus.COMPLETED, 1, 51.0, 52.0, 70.0,
                      18.0, None, None, ())
    )
    assert history.flush(30)
    print("recorded", flush=True)
    sys.stdin.readline()
"""


def test_an_execution_left_running_by_a_killed_process_is_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    TaskHistory(path).close()
    killed = _python(_OWNER, path, "dead")
    alive = _python(_OWNER, path, "alive")
    try:
        assert _readline(killed, 60) == "recorded"
        assert _readline(alive, 60) == "recorded"
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)

        def raw() -> dict[str, tuple[Any, ...]]:
            conn = sqlite3.connect(path)
            try:
                return {
                    row[0]: row[1:]
                    for row in conn.execute(
                        "SELECT execution_id, status, finished_at, error_message FROM executions"
                    )
                }
            finally:
                conn.close()

        # A reader tells the truth before any writer has opened the file again...
        with TaskHistory(path, readonly=True) as reader:
            statuses = {e.execution_id: e.status for e in reader.query_executions()}
            assert statuses == {"dead": TaskStatus.INTERRUPTED, "alive": TaskStatus.RUNNING}
            assert [e.execution_id for e in reader.query_executions(status="interrupted")] == [
                "dead"
            ]
            assert [e.execution_id for e in reader.query_executions(status="running")] == ["alive"]
        assert raw()["dead"][0] == "running"
        # ... and the next writer marks it in the file; the live owner's stays running.
        TaskHistory(path).close()
        rows = raw()
        assert rows["dead"][:2] == ("interrupted", 70.0)
        assert f"pid {killed.pid}" in rows["dead"][2]
        assert rows["alive"] == ("running", None, None)
    finally:
        _stop(killed)
        _stop(alive)


# -- 18: read-only opening ---------------------------------------------------------------------


def test_readonly_open_of_an_empty_file_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    path.touch()
    with pytest.raises(HistoryError, match="is empty"):
        TaskHistory(path, readonly=True)
    assert path.stat().st_size == 0
    assert os.listdir(tmp_path) == ["h.db"]


def test_readonly_open_refuses_recording_and_other_files(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with pytest.raises(HistoryError, match="no history database"):
        TaskHistory(path, readonly=True)
    with TaskHistory(path) as history:
        history.record_run(run(1))
    with TaskHistory(path, readonly=True) as reader:
        assert reader.readonly
        assert reader.flush()
        with pytest.raises(HistoryError, match="read-only"):
            reader.record_run(run(2))
        assert reader.query_runs() == [run(1)]
    foreign = tmp_path / "app.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(HistoryError, match="not a threadloom history"):
        TaskHistory(foreign, readonly=True)
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    with pytest.raises(HistoryError, match="not an SQLite database"):
        TaskHistory(text, readonly=True)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_history_and_stats_read_a_read_only_file_in_a_read_only_directory() -> None:
    # Not tmp_path: its parents are private to this user, and as root the read
    # runs as user nobody (root ignores file modes), who must reach the file.
    directory = tempfile.mkdtemp(prefix="threadloom-ro-")
    path = os.path.join(directory, "h.db")
    try:
        with TaskHistory(path) as history:
            history.record_run(run(1, status=TaskStatus.FAILED))
            history.record_execution(execution("e1", TaskStatus.COMPLETED, 60.0))
        assert sorted(os.listdir(directory)) == ["h.db"]
        # Once here first: as user nobody the child may not read this Python's
        # installation, so every module the commands import must be loaded already.
        # (On a copy: a reader leaves -wal and -shm files in a writable directory.)
        warm = tempfile.mkdtemp(prefix="threadloom-warm-")
        shutil.copy(path, warm)
        with contextlib.redirect_stdout(io.StringIO()):
            for command in ("history", "stats"):
                assert cli_main([command, "--db", os.path.join(warm, "h.db"), "--json"]) == 0
        shutil.rmtree(warm)
        os.chmod(path, 0o444)
        os.chmod(directory, 0o555)

        def read() -> Any:
            with TaskHistory(path, readonly=True) as reader:
                ids = [r.run_id for r in reader.query_runs()]
            outputs = []
            for command in ("history", "stats"):
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    code = cli_main([command, "--db", path, "--json"])
                outputs.append([code, out.getvalue()])
            return [os.geteuid(), os.access(path, os.W_OK), ids, outputs]

        uid, writable, ids, outputs = _in_child(read, unprivileged=True)
        assert uid != 0 and not writable  # the read really was unprivileged
        assert ids == ["e1:t1:1"]
        (history_code, history_out), (stats_code, stats_out) = outputs
        assert history_code == 0 and json.loads(history_out)["run_id"] == "e1:t1:1"
        assert stats_code == 0 and json.loads(stats_out)["runs"] == 1
        assert sorted(os.listdir(directory)) == ["h.db"]
    finally:
        os.chmod(directory, 0o755)
        os.chmod(path, 0o644)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


# -- 19: tracebacks, and files from before the column ---------------------------------------

_OLD_SCHEMA = """
CREATE TABLE task_runs (
    run_id TEXT NOT NULL, execution_id TEXT NOT NULL, task_id TEXT NOT NULL,
    task_name TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
    queued_at REAL, started_at REAL, finished_at REAL NOT NULL, duration REAL,
    error_type TEXT, error_message TEXT, tags TEXT NOT NULL
);
CREATE TABLE executions (
    execution_id TEXT PRIMARY KEY, targets TEXT NOT NULL, status TEXT NOT NULL,
    trigger TEXT NOT NULL, task_count INTEGER NOT NULL, started_at REAL NOT NULL,
    finished_at REAL, duration REAL, error_type TEXT, error_message TEXT
);
INSERT INTO task_runs VALUES
    ('old', 'e0', 't1', 'T1', 'failed', 1, 1.0, 2.0, 3.0, 1.0, 'KeyError', 'k', '[]');
INSERT INTO executions VALUES
    ('e0', '["t1"]', 'running', 'manual', 1, 1.0, NULL, NULL, NULL, NULL);
PRAGMA user_version = 1;
"""


def test_a_failed_runs_traceback_is_stored(history: TaskHistory) -> None:
    failed = run(1, status=TaskStatus.FAILED)
    assert failed.traceback is not None
    history.record_run(failed)
    history.record_run(run(2))
    by_id = {r.run_id: r.traceback for r in history.query_runs()}
    assert by_id == {"e1:t1:1": failed.traceback, "e1:t1:2": None}


def test_a_file_from_before_the_new_columns_is_read_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    conn.close()
    with TaskHistory(path, readonly=True) as reader:
        (old,) = reader.query_runs()
        assert (old.run_id, old.error_type, old.traceback) == ("old", "KeyError", None)
        # No owner is known: it may be running still, so it is left as it is.
        assert reader.query_executions()[0].status is TaskStatus.RUNNING
    with TaskHistory(path) as history:
        history.record_run(run(1, status=TaskStatus.FAILED))
        got = {r.run_id: r.traceback for r in history.query_runs()}
    assert got["old"] is None and "ValueError: bad" in (got["e1:t1:1"] or "")
    conn = sqlite3.connect(path)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(task_runs)")}
        assert "traceback" in columns
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    finally:
        conn.close()


def test_a_history_dropped_unclosed_lives_while_its_writer_runs(tmp_path: Path) -> None:
    # Its writer still holds records and its file; the fork hook must still
    # find it (and the records get written at close, or at exit).
    import gc
    import weakref

    store = TaskHistory(tmp_path / "h.db")
    store.record_run(run(1))
    assert store.flush(timeout=30)
    alive = weakref.ref(store)
    del store
    gc.collect()
    kept = alive()
    assert kept is not None
    assert kept.query_runs() == [run(1)]
    assert kept.close(timeout=30)


@given(st.lists(st.text() | st.sampled_from(["t1", "a b", "é", 'q"', "b\\s", "\t"])))
def test_execution_targets_are_stored_as_json_dumps_writes_them(targets: list[str]) -> None:
    from threadloom.history.writer import _json_strings

    assert _json_strings(tuple(targets)) == json.dumps(targets)
    assert json.loads(_json_strings(tuple(targets))) == targets


# -- order and flush under a stream of batches ---------------------------------


def plain_rows(start: int, count: int, execution: str = "e1") -> list[tuple[Any, ...]]:
    return [
        run_row(run(n, task=f"t{n}", execution=execution, tags=()))
        for n in range(start, start + count)
    ]


def test_records_are_committed_in_the_order_they_were_queued(tmp_path: Path) -> None:
    store = TaskHistory(tmp_path / "h.db", batch_size=64)
    stop = threading.Event()
    flushed: list[bool] = []

    def flusher() -> None:
        # Flush markers between the records, from another thread.
        while not stop.is_set():
            flushed.append(store.flush(timeout=WAIT))

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        queued = 0
        for batch in range(200):
            store.record_run_rows(plain_rows(queued, 37))
            queued += 37
            if batch % 20 == 19:
                store.record_execution(execution(f"x{batch}", TaskStatus.COMPLETED, 60.0))
    finally:
        stop.set()
        thread.join(WAIT)
    assert store.flush(timeout=WAIT)
    assert store.stats() == (queued + 10, 0, 0)
    store.close()
    assert all(flushed)
    conn = sqlite3.connect(tmp_path / "h.db")
    order = [row[0] for row in conn.execute("SELECT task_id FROM task_runs ORDER BY rowid")]
    executions = conn.execute("SELECT count(*) FROM executions").fetchone()
    conn.close()
    assert order == [f"t{n}" for n in range(queued)]
    assert executions == (10,)


def test_a_flush_sees_every_record_queued_before_it(tmp_path: Path) -> None:
    store = TaskHistory(tmp_path / "h.db", batch_size=64)
    try:
        total = 0
        for _ in range(30):
            store.record_run_rows(plain_rows(total, 50))
            total += 50
            assert store.flush(timeout=WAIT)
            assert len(store.query_runs(limit=None)) == total
    finally:
        store.close()
