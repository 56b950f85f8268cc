"""The dashboard from the command line: demo/run serve it, ``threadloom dashboard --db``."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from threadloom.task_manager import TaskManager

from .test_cli import cli_env, run_cli

WAIT = 20.0
URL = re.compile(r"^dashboard: (http://127\.0\.0\.1:(\d+)/\S*)$", re.MULTILINE)


@pytest.fixture
def history_db(tmp_path: Path) -> Path:
    db = tmp_path / "h.db"
    with TaskManager(history=db) as manager:
        task = manager.register_task("recorded", lambda: None)
        manager.execute_task(task, wait=True)
    return db


@pytest.fixture
def served(history_db: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "threadloom", "dashboard", "--db", str(history_db)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()  # blocks until printed; the process has a timeout below
        match = URL.match(line.strip())
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        yield process, match[1]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=WAIT)


def test_dashboard_command_serves_the_history_until_interrupted(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = served
    runs = httpx.get(url + "api/history/runs", timeout=WAIT).json()["runs"]
    assert [r["task_name"] for r in runs] == ["recorded"]
    assert httpx.get(url + "api/info", timeout=WAIT).json()["live"] is False
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=WAIT) == 0


def test_dashboard_command_errors_exit_2(history_db: Path, tmp_path: Path) -> None:
    missing = run_cli("dashboard", "--db", tmp_path / "nope.db", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no history database at" in missing.stderr
    assert "Traceback" not in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = run_cli("dashboard", "--db", history_db, "--dashboard", str(port), cwd=tmp_path)
    assert busy.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in busy.stderr
    bad_host = run_cli(
        "dashboard", "--db", history_db, "--dashboard", "no-such-host.invalid:0", cwd=tmp_path
    )
    assert bad_host.returncode == 2
    assert "cannot use host 'no-such-host.invalid'" in bad_host.stderr
    bad_port = run_cli("dashboard", "--db", history_db, "--dashboard", "70000", cwd=tmp_path)
    assert bad_port.returncode == 2
    assert "out of range" in bad_port.stderr


def test_demo_prints_its_dashboard_and_can_go_without(tmp_path: Path) -> None:
    shown = run_cli("demo", "--duration", "1", "--db", tmp_path / "a.db", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert URL.search(shown.stdout), shown.stdout
    hidden = run_cli(
        "demo", "--duration", "1", "--no-dashboard", "--db", tmp_path / "b.db", cwd=tmp_path
    )
    assert hidden.returncode == 0, hidden.stderr
    assert "dashboard:" not in hidden.stdout


def test_a_non_loopback_bind_prints_a_url_with_a_generated_token(
    history_db: Path, tmp_path: Path
) -> None:
    done = run_cli(
        "dashboard",
        "--db",
        history_db,
        "--dashboard",
        "0.0.0.0:0",
        "--duration",
        "0.5",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/\?token=\S{20,}$", done.stdout, re.M)
    assert "generated access token" in done.stdout
