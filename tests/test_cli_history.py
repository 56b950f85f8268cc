"""The read path of `threadloom history` and `threadloom stats` over a history file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from threadloom import TaskStatus
from threadloom.cli import main
from threadloom.history import ExecutionRecord, TaskHistory, TaskRunRecord

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "tasks.py", line 3, in explode\n'
    "    raise ZeroDivisionError('[bold]boom[/]')\n"
    "ZeroDivisionError: [bold]boom[/]\n"
)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("THREADLOOM_DB", raising=False)


def call(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def failed_run(n: int) -> TaskRunRecord:
    return TaskRunRecord(
        f"e1:explode:{n}",
        "e1",
        "explode",
        "explode",
        TaskStatus.FAILED,
        2,
        1000.0 + n,
        1000.5 + n,
        1001.0 + n,
        0.5,
        "ZeroDivisionError",
        "[bold]boom[/]",
        (),
        TRACEBACK.replace("line 3", f"line {n}"),
    )


def test_history_of_a_task_shows_its_stored_tracebacks_literally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "h.db"
    with TaskHistory(db) as history:
        for n in range(5):
            history.record_run(failed_run(n))
    code, out, _ = call(capsys, "history", "--db", db, "--task", "explode")
    assert code == 0
    # The newest three, newest first, printed as stored (markup included).
    assert out.count("Traceback (most recent call last):") == 3
    assert out.count("    raise ZeroDivisionError('[bold]boom[/]')") == 3
    assert out.index("line 4, in explode") < out.index("line 3, in explode")
    assert "line 1, in explode" not in out
    assert "2 older traceback(s) not shown" in out
    code, out, _ = call(capsys, "history", "--db", db, "--task", "explode", "--json")
    assert [json.loads(line)["traceback"] for line in out.splitlines()] == [
        failed_run(n).traceback for n in range(4, -1, -1)
    ]


_KILLED = """
import os, signal, sys
from threadloom import TaskStatus
from threadloom.history import ExecutionRecord, TaskHistory
history = TaskHistory(sys.argv[1])
history.record_execution(
    ExecutionRecord("killed", ("t",), TaskStatus.RUNNING, "manual", 1, 20.0, None, None, None, None)
)
assert history.flush(30)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_history_and_stats_show_an_interrupted_execution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "h.db"
    with TaskHistory(db) as history:
        history.record_execution(
            ExecutionRecord(
                "done", ("t",), TaskStatus.COMPLETED, "manual", 1, 10.0, 11.0, 1.0, None, None
            )
        )
        history.record_run(failed_run(1)._replace(execution_id="done"))
    killed = subprocess.run([sys.executable, "-c", _KILLED, str(db)], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    code, out, _ = call(capsys, "stats", "--db", db, "--json")
    assert code == 0
    assert json.loads(out)["executions_by_status"] == {"completed": 1, "interrupted": 1}
    code, out, _ = call(capsys, "stats", "--db", db)
    assert code == 0 and "1 interrupted" in out
    code, out, _ = call(capsys, "history", "--db", db)
    assert code == 0
    assert "1 execution(s) interrupted" in out and "killed" in out
    # Read-only commands leave the file as it was.
    conn = sqlite3.connect(db)
    assert conn.execute(
        "SELECT status FROM executions WHERE execution_id = 'killed'"
    ).fetchone() == ("running",)
    conn.close()


def test_history_and_stats_refuse_an_empty_file_and_leave_it_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    for command in ("history", "stats"):
        code, _, err = call(capsys, command, "--db", db)
        assert code == 2
        assert "is empty" in err
    assert db.stat().st_size == 0
    assert os.listdir(tmp_path) == ["empty.db"]
