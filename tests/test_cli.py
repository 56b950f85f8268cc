"""The ``threadloom`` command, run as a subprocess the way a user runs it.

Every subprocess has a timeout, so a hang fails the test.  The history files
the commands write are read back with sqlite3 directly: the tests check what
is on disk, not what the command says is on disk.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import threadloom
from threadloom.cli import parse_time

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "workflow.toml"
RUN_TIMEOUT = 60.0
WAIT = 20.0
TERMINAL = {"completed", "failed", "timed_out", "cancelled", "upstream_failed", "skipped"}


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    # The commands run in a temporary directory: a relative PYTHONPATH (src)
    # would not resolve there.
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p
        )
    env.pop("THREADLOOM_DB", None)
    env.pop("COLUMNS", None)
    return env


def run_cli(*args: str | Path, cwd: Path, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadloom", *map(str, args)],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def summary_numbers(stdout: str) -> dict[str, int]:
    """The "  name: N" lines of a summary."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^  (\w+): (\d+)$", stdout, re.MULTILINE)}


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def assert_history_is_consistent(db: Path) -> None:
    """Every execution and every task run recorded has ended."""
    executions = rows(db, "SELECT status, finished_at FROM executions")
    assert executions, "no executions recorded"
    assert all(status in TERMINAL and finished is not None for status, finished in executions)
    runs = rows(db, "SELECT status FROM task_runs")
    assert all(status in TERMINAL for (status,) in runs)
    # Every run belongs to a recorded execution.
    orphans = rows(
        db,
        "SELECT COUNT(*) FROM task_runs WHERE execution_id NOT IN (SELECT execution_id FROM executions)",
    )
    assert orphans == [(0,)]


def write_tasks(directory: Path, name: str = "cli_tasks") -> str:
    (directory / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from threadloom import current_task

            def ok(value=1):
                return value

            def fail():
                raise RuntimeError("this task always fails")

            def add(upstream):
                return sum(upstream.values())

            def slow(marker):
                # Tell the test we are running, then wait to be cancelled.
                Path(marker).write_text("started")
                task = current_task()
                task.wait_cancelled(60)
                task.check_cancelled()
            """
        )
    )
    return name


def write_workflow(directory: Path, text: str, name: str = "flow.toml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------- basics


def test_version(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.strip() == f"threadloom {threadloom.__version__}"


@pytest.mark.parametrize("command", [[], ["demo"], ["run"], ["history"], ["stats"]])
def test_help_on_every_command(tmp_path: Path, command: list[str]) -> None:
    result = run_cli(*command, "--help", cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.startswith("usage: threadloom")
    assert "exit codes: 0 success" in result.stdout


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)

    assert result.returncode == 2
    assert "usage: threadloom" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["demo", "--duration", "0"],
        ["demo", "--workers", "zero"],
        ["run"],
        ["history", "--limit", "-1"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(*args, cwd=tmp_path)

    assert result.returncode == 2
    assert "error:" in result.stderr


def test_the_console_script_is_installed_with_the_package(tmp_path: Path) -> None:
    script = shutil.which("threadloom", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("threadloom is not installed in this environment (running from the source tree)")
    result = subprocess.run(
        [script, "--version"], env=cli_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert result.returncode == 0 and result.stdout.strip().startswith("threadloom ")


# --------------------------------------------------------------------------- run


def test_run_once_runs_the_example_graph(tmp_path: Path) -> None:
    db = tmp_path / "history.db"

    result = run_cli("run", EXAMPLE, "--once", "--db", db, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    numbers = summary_numbers(result.stdout)
    assert numbers["tasks"] == 7
    assert numbers["completed"] == 7
    assert numbers["failed"] == 0
    assert numbers["retries"] == 1  # load_apac fails its first attempt
    assert numbers["executions"] == 1
    assert f"history: {db}" in result.stdout
    assert "result: completed" in result.stdout
    # The table shows the report's result.
    assert re.search(r"report\s.*completed\s.*'sales", result.stdout)
    assert Counter(dict(rows(db, "SELECT task_name, attempts FROM task_runs"))) == Counter(
        {"load_eu": 1, "load_us": 1, "load_apac": 2, "check": 1, "totals": 1, "report": 1, "heartbeat": 1}
    )
    assert rows(db, "SELECT status, trigger, task_count FROM executions") == [
        ("completed", "manual", 7)
    ]
    assert_history_is_consistent(db)


def test_run_once_exits_1_when_a_task_fails(tmp_path: Path) -> None:
    module = write_tasks(tmp_path)
    flow = write_workflow(
        tmp_path,
        f"""
        [tasks.good]
        call = "{module}:ok"
        [tasks.bad]
        call = "{module}:fail"
        retry = {{ max_retries = 1, delay = 0.01, backoff = 1.0 }}
        [tasks.after_bad]
        call = "{module}:add"
        depends_on = ["good", "bad"]
        results_param = "upstream"
        [tasks.cleanup]
        call = "{module}:ok"
        depends_on = ["bad"]
        trigger_rule = "all_done"
        """,
    )
    db = tmp_path / "h.db"

    result = run_cli("run", flow, "--once", "--db", db, cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    numbers = summary_numbers(result.stdout)
    assert (numbers["completed"], numbers["failed"], numbers["upstream_failed"]) == (2, 1, 1)
    assert numbers["retries"] == 1
    assert "RuntimeError: this task always fails" in result.stdout
    assert "result: failed" in result.stdout
    assert dict(rows(db, "SELECT task_name, status FROM task_runs")) == {
        "good": "completed",
        "bad": "failed",
        "after_bad": "upstream_failed",
        "cleanup": "completed",
    }
    assert_history_is_consistent(db)


@pytest.mark.parametrize(
    ("text", "task", "field"),
    [
        ('[tasks.a]\ncall = "os:getcwd"\npriority = high\n', None, None),  # TOML syntax
        ('[tasks.a]\ncall = "os:getcwd"\ncolour = "red"\n', "a", "colour"),
        ('[tasks.a]\ncall = "no_such_module_xyz:f"\n', "a", "call"),
        ('[tasks.a]\ncall = "os:getcwd"\nretry = { delay = -1 }\n', "a", "retry.delay"),
        ('[tasks.a]\ncall = "os:getcwd"\ntimeout = 0\n', "a", "timeout"),
        ('[tasks.a]\ncall = "os:getcwd"\ntrigger_rule = "maybe"\n', "a", "trigger_rule"),
        ('[tasks.a]\ncall = "os:getcwd"\nschedule = "* * *"\n', "a", "schedule"),
        ('[tasks.a]\ncall = "os:getcwd"\ndepends_on = ["ghost"]\n', "a", "depends_on"),
        (
            '[tasks.a]\ncall = "os:getcwd"\ndepends_on = ["b"]\n'
            '[tasks.b]\ncall = "os:getcwd"\ndepends_on = ["a"]\n',
            None,
            "depends_on",
        ),
    ],
)
def test_an_invalid_workflow_exits_2_before_anything_runs(
    tmp_path: Path, text: str, task: str | None, field: str | None
) -> None:
    flow = write_workflow(tmp_path, text)
    db = tmp_path / "h.db"

    result = run_cli("run", flow, "--once", "--db", db, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert f"threadloom run: error: invalid workflow {flow}" in result.stderr
    assert f"  {flow}: " in result.stderr
    if task is not None:
        assert f"task {task!r}" in result.stderr
    if field is not None:
        assert f"field {field!r}" in result.stderr
    assert not db.exists()  # validated before anything ran


def test_a_missing_workflow_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("run", tmp_path / "nope.toml", "--once", cwd=tmp_path)

    assert result.returncode == 2
    assert "nope.toml: no such file" in result.stderr


def test_without_once_a_workflow_needs_a_schedule(tmp_path: Path) -> None:
    flow = write_workflow(tmp_path, '[tasks.a]\ncall = "os:getcwd"\n')

    result = run_cli("run", flow, "--db", tmp_path / "h.db", cwd=tmp_path)

    assert result.returncode == 2
    assert "no task has a schedule" in result.stderr and "--once" in result.stderr


def test_scheduled_tasks_fire_until_the_duration_ends(tmp_path: Path) -> None:
    module = write_tasks(tmp_path)
    flow = write_workflow(
        tmp_path,
        f"""
        [tasks.source]
        call = "{module}:ok"
        args = [20]
        [tasks.tick]
        call = "{module}:add"
        depends_on = ["source"]
        results_param = "upstream"
        schedule = {{ every = 1, unit = "seconds" }}
        [tasks.never]
        call = "{module}:ok"
        """,
    )
    db = tmp_path / "h.db"

    result = run_cli("run", flow, "--duration", "2.5", "--db", db, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "tick: IntervalSchedule(every(1).seconds" in result.stdout
    assert "not needed by a scheduled task (run them with --once): never" in result.stdout
    executions = rows(db, "SELECT trigger, status, task_count FROM executions")
    assert len(executions) >= 1
    assert set(executions) == {("schedule", "completed", 2)}
    assert summary_numbers(result.stdout)["executions"] == len(executions)
    names = {name for (name,) in rows(db, "SELECT DISTINCT task_name FROM task_runs")}
    assert names == {"source", "tick"}
    assert_history_is_consistent(db)


def _read_lines(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by a test; killed if the test fails before they end."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT)


def test_sigint_during_a_run_leaves_a_consistent_history(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    module = write_tasks(tmp_path)
    marker = tmp_path / "started"
    flow = write_workflow(
        tmp_path,
        f"""
        [tasks.quick]
        call = "{module}:ok"
        [tasks.slow]
        call = "{module}:slow"
        args = ["{marker}"]
        depends_on = ["quick"]
        [tasks.after]
        call = "{module}:ok"
        depends_on = ["slow"]
        """,
    )
    db = tmp_path / "h.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "threadloom", "run", str(flow), "--once", "--db", str(db)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    spawn.append(process)
    deadline = time.monotonic() + WAIT
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the slow task never started"
        time.sleep(0.02)

    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=WAIT)

    assert process.returncode == 130, stderr
    assert "interrupted (SIGINT): stopped cleanly" in stdout
    assert "left: 1 execution(s) cancelled; 1 task(s) cancelled before they started, " in stdout
    assert_history_is_consistent(db)
    assert dict(rows(db, "SELECT task_name, status FROM task_runs")) == {
        "quick": "completed",
        "slow": "cancelled",
        "after": "cancelled",
    }
    assert rows(db, "SELECT status FROM executions") == [("cancelled",)]
    numbers = summary_numbers(stdout)
    assert (numbers["completed"], numbers["cancelled"]) == (1, 2)


# --------------------------------------------------------------------------- history and stats


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A history with one successful run of the example and one failing run."""
    directory = tmp_path_factory.mktemp("history")
    db = directory / "shared.db"
    assert run_cli("run", EXAMPLE, "--once", "--db", db, cwd=directory).returncode == 0
    module = write_tasks(directory)
    flow = write_workflow(
        directory,
        f'[tasks.bad]\ncall = "{module}:fail"\n[tasks.next]\ncall = "{module}:ok"\n'
        'depends_on = ["bad"]\n',
    )
    assert run_cli("run", flow, "--once", "--db", db, cwd=directory).returncode == 1
    return db


def history_json(db: Path, *args: str) -> list[dict[str, object]]:
    result = run_cli("history", "--db", db, "--json", *args, cwd=db.parent)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_history_lists_every_run_newest_first(history_db: Path) -> None:
    records = history_json(history_db, "--limit", "0")

    assert len(records) == 9
    finished = [r["finished_at"] for r in records]
    assert finished == sorted(finished, reverse=True)  # type: ignore[type-var]
    assert {r["task_name"] for r in records} >= {"load_apac", "report", "bad", "next"}


def test_history_filters(history_db: Path) -> None:
    by_task = history_json(history_db, "--task", "load_apac")
    assert [(r["task_name"], r["attempts"], r["status"]) for r in by_task] == [
        ("load_apac", 2, "completed")
    ]
    failed = history_json(history_db, "--status", "failed,upstream_failed")
    assert sorted((r["task_name"], r["status"]) for r in failed) == [
        ("bad", "failed"),
        ("next", "upstream_failed"),
    ]
    assert failed[-1]["error_type"] in (None, "RuntimeError")
    assert len(history_json(history_db, "--limit", "2")) == 2
    assert len(history_json(history_db, "--since", "1h", "--limit", "0")) == 9
    assert history_json(history_db, "--since", "2999-01-01") == []
    assert len(history_json(history_db, "--until", "2999-01-01T00:00", "--limit", "0")) == 9
    one = history_json(history_db, "--task", "report")[0]
    same_execution = history_json(history_db, "--execution", str(one["execution_id"]), "--limit", "0")
    assert len(same_execution) == 7


def test_history_table(history_db: Path) -> None:
    result = run_cli("history", "--db", history_db, "--status", "failed", cwd=history_db.parent)

    assert result.returncode == 0
    assert re.search(r"bad\s.*failed\s.*RuntimeError: this task always fails", result.stdout)
    assert "1 run(s), newest first" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "sideways"], "unknown status 'sideways'"),
        (["--since", "last tuesday"], "cannot read time 'last tuesday'"),
    ],
)
def test_history_rejects_bad_filters(history_db: Path, args: list[str], message: str) -> None:
    result = run_cli("history", "--db", history_db, *args, cwd=history_db.parent)

    assert result.returncode == 2
    assert message in result.stderr


def test_history_needs_an_existing_history_file(tmp_path: Path) -> None:
    missing = run_cli("history", "--db", tmp_path / "none.db", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no history database at" in missing.stderr
    assert not (tmp_path / "none.db").exists()  # reading never creates one

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    not_ours = run_cli("history", "--db", other, cwd=tmp_path)
    assert not_ours.returncode == 2
    assert "not a threadloom history" in not_ours.stderr


def test_the_default_history_file_is_in_the_current_directory(tmp_path: Path) -> None:
    assert run_cli("run", EXAMPLE, "--once", cwd=tmp_path).returncode == 0
    assert (tmp_path / "threadloom-history.db").exists()

    records = run_cli("history", "--json", cwd=tmp_path)
    assert records.returncode == 0 and len(records.stdout.splitlines()) == 7


def test_stats_json_agrees_with_the_history(history_db: Path) -> None:
    result = run_cli("stats", "--db", history_db, "--json", cwd=history_db.parent)

    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["runs"] == 9
    assert stats["executions"] == 2
    assert stats["executions_by_status"] == {"completed": 1, "failed": 1}
    assert stats["runs_by_status"]["completed"] == 7
    assert stats["runs_by_status"]["failed"] == 1
    assert stats["runs_by_status"]["upstream_failed"] == 1
    assert stats["retries"] == 1
    by_task = {g["task"]: g for g in stats["groups"]}
    assert by_task["load_apac"]["retries"] == 1 and by_task["load_apac"]["runs"] == 1
    assert by_task["bad"]["failed"] == 1


def test_stats_by_tag(history_db: Path) -> None:
    result = run_cli("stats", "--db", history_db, "--json", "--by", "tag", cwd=history_db.parent)

    groups = {g["tag"]: g["runs"] for g in json.loads(result.stdout)["groups"]}
    # The example tags its tasks; untagged tasks are grouped by name.
    assert groups == {"load": 3, "check": 1, "report": 2, "heartbeat": 1, "bad": 1, "next": 1}


def test_stats_table(history_db: Path) -> None:
    result = run_cli("stats", "--db", history_db, cwd=history_db.parent)

    assert result.returncode == 0
    assert "runs: 9 from " in result.stdout
    assert "executions: 2 (1 completed, 1 failed)" in result.stdout
    assert re.search(r"load_apac\s+│\s+1\s+│\s+1\s+│\s+0\s+│\s+0\s+│\s+1\s", result.stdout)


# --------------------------------------------------------------------------- parse_time


def test_parse_time_forms() -> None:
    now = 1_800_000_000.0
    assert parse_time("90s", now=now) == now - 90
    assert parse_time("10m", now=now) == now - 600
    assert parse_time("2h ago", now=now) == now - 7200
    assert parse_time("1.5d", now=now) == now - 1.5 * 86400
    assert parse_time("1w", now=now) == now - 604800
    assert parse_time("1700000000", now=now) == 1_700_000_000.0
    assert parse_time("2026-01-31T09:30:00+00:00") == 1_769_851_800.0
    local = parse_time("2026-01-31")
    assert time.localtime(local)[:6] == (2026, 1, 31, 0, 0, 0)
    with pytest.raises(ValueError, match="cannot read time 'soon'"):
        parse_time("soon")
