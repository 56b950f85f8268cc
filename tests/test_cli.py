"""The ``threadloom`` command, run as a subprocess the way a user runs it.

Every subprocess has a timeout, so a hang fails the test.  The history files
the commands write are read back with sqlite3 directly: the tests check what
is on disk, not what the command says is on disk.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import select
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import threadloom
from threadloom.cli import main, parse_time

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


def run_cli(
    *args: str | Path, cwd: Path, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadloom", *map(str, args)],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def call_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run the command in this process (for the cheap checks): (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def summary_numbers(stdout: str) -> dict[str, int]:
    """The "  name: N" lines of a summary."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^  (\w+): (\d+)$", stdout, re.MULTILINE)}


def rows(db: Path, sql: str) -> list[Any]:
    # As sqlite3 types them: what a row holds depends on the query.
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
        "SELECT COUNT(*) FROM task_runs"
        " WHERE execution_id NOT IN (SELECT execution_id FROM executions)",
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


def test_help(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.startswith("usage: threadloom")
    for command in ("demo", "run", "history", "stats"):
        assert command in result.stdout
    assert "exit codes: 0 success" in result.stdout


@pytest.mark.parametrize("command", ["demo", "run", "history", "stats"])
def test_help_on_every_command(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = call_main(capsys, command, "--help")

    assert code == 0
    assert out.startswith(f"usage: threadloom {command}")
    assert "exit codes: 0 success" in out


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
        ["run", "flow.toml", "--duration", "-3"],
        ["history", "--limit", "-1"],
        ["run", "flow.toml", "--stop-timeout", "1e308"],
        ["demo", "--duration", "1e308"],
        ["demo", "--workers", "10001"],
        ["stats", "--by", "colour"],
    ],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, _, err = call_main(capsys, *args)

    assert code == 2
    assert "error:" in err


def test_the_console_script_is_installed_with_the_package(tmp_path: Path) -> None:
    script = shutil.which("threadloom", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip(
            "threadloom is not installed in this environment (running from the source tree)"
        )
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
        {
            "load_eu": 1,
            "load_us": 1,
            "load_apac": 2,
            "check": 1,
            "totals": 1,
            "report": 1,
            "heartbeat": 1,
        }
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


def test_a_workflow_that_is_not_toml_exits_2(tmp_path: Path) -> None:
    flow = write_workflow(tmp_path, '[tasks.a]\ncall = "os:getcwd"\npriority = high\n')
    db = tmp_path / "h.db"

    result = run_cli("run", flow, "--once", "--db", db, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert f"  {flow}: not valid TOML" in result.stderr and "line 3" in result.stderr
    assert not db.exists()


def test_an_invalid_workflow_exits_2_listing_every_problem_before_anything_runs(
    tmp_path: Path,
) -> None:
    module = write_tasks(tmp_path)
    flow = write_workflow(
        tmp_path,
        f"""
        [tasks.unknown_field]
        call = "{module}:ok"
        colour = "red"
        [tasks.bad_import]
        call = "no_such_module_xyz:f"
        [tasks.bad_attribute]
        call = "{module}:no_such_function"
        [tasks.bad_priority]
        call = "{module}:ok"
        priority = "urgent"
        [tasks.bad_retry]
        call = "{module}:ok"
        retry = {{ delay = -1 }}
        [tasks.bad_timeout]
        call = "{module}:ok"
        timeout = 0
        [tasks.bad_rule]
        call = "{module}:ok"
        trigger_rule = "maybe"
        [tasks.bad_cron]
        call = "{module}:ok"
        schedule = "* * *"
        [tasks.bad_interval]
        call = "{module}:ok"
        schedule = {{ every = 2, unit = "fortnights" }}
        [tasks.ghost_dependency]
        call = "{module}:ok"
        depends_on = ["ghost"]
        [tasks.cycle_a]
        call = "{module}:ok"
        depends_on = ["cycle_b"]
        [tasks.cycle_b]
        call = "{module}:ok"
        depends_on = ["cycle_a"]
        """,
    )
    db = tmp_path / "h.db"

    result = run_cli("run", flow, "--once", "--db", db, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"threadloom run: error: invalid workflow {flow} (11 problems):"
    )
    expected = [
        ("unknown_field", "colour", "unknown field"),
        ("bad_import", "call", "no module named 'no_such_module_xyz'"),
        ("bad_attribute", "call", "has no attribute 'no_such_function'"),
        ("bad_priority", "priority", "unknown priority 'urgent'"),
        ("bad_retry", "retry.delay", ">= 0"),
        ("bad_timeout", "timeout", "> 0"),
        ("bad_rule", "trigger_rule", "unknown rule 'maybe'"),
        ("bad_cron", "schedule", "cron"),
        ("bad_interval", "schedule.unit", "'fortnights'"),
        ("ghost_dependency", "depends_on", "unknown task 'ghost'"),
    ]
    lines = result.stderr.splitlines()[1:]
    for (task, field, fragment), line in zip(expected, lines, strict=False):
        assert line.startswith(f"  {flow}: task {task!r}, field {field!r}: "), line
        assert fragment in line
    assert re.search(r"task 'cycle_\w', field 'depends_on': dependency cycle: cycle_", lines[-1])
    assert not db.exists()  # validated before anything ran


def test_a_missing_workflow_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = call_main(capsys, "run", tmp_path / "nope.toml", "--once")

    assert code == 2
    assert "nope.toml: no such file" in err


def test_without_once_a_workflow_needs_a_schedule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    flow = write_workflow(tmp_path, '[tasks.a]\ncall = "os:getcwd"\n')

    code, _, err = call_main(capsys, "run", flow, "--db", tmp_path / "h.db")

    assert code == 2
    assert "no task has a schedule" in err and "--once" in err
    assert not (tmp_path / "h.db").exists()


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
    """A history with one successful run of the example and one failing run.

    Both runs use the default history file of their working directory.
    """
    directory = tmp_path_factory.mktemp("history")
    assert run_cli("run", EXAMPLE, "--once", cwd=directory).returncode == 0
    module = write_tasks(directory)
    flow = write_workflow(
        directory,
        f'[tasks.bad]\ncall = "{module}:fail"\n[tasks.next]\ncall = "{module}:ok"\n'
        'depends_on = ["bad"]\n',
    )
    assert run_cli("run", flow, "--once", cwd=directory).returncode == 1
    return directory / "threadloom-history.db"


def test_the_default_history_file_is_in_the_current_directory(history_db: Path) -> None:
    assert history_db.name == "threadloom-history.db" and history_db.exists()
    assert rows(history_db, "SELECT COUNT(*) FROM executions") == [(2,)]


def test_history_queries_from_the_command_line(history_db: Path) -> None:
    everything = run_cli("history", "--json", "--limit", "0", cwd=history_db.parent)
    assert everything.returncode == 0, everything.stderr
    records = [json.loads(line) for line in everything.stdout.splitlines()]
    assert len(records) == 9
    finished = [r["finished_at"] for r in records]
    assert finished == sorted(finished, reverse=True)

    failed = run_cli(
        "history", "--db", history_db, "--status", "failed", "--task", "bad", cwd=history_db.parent
    )
    assert failed.returncode == 0, failed.stderr
    assert re.search(r"bad\s.*failed\s.*RuntimeError: this task always fails", failed.stdout)
    assert "1 run(s), newest first" in failed.stdout


def history_json(
    capsys: pytest.CaptureFixture[str], db: Path, *args: str
) -> list[dict[str, object]]:
    code, out, err = call_main(capsys, "history", "--db", db, "--json", *args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_history_filters(capsys: pytest.CaptureFixture[str], history_db: Path) -> None:
    def query(*args: str) -> list[dict[str, object]]:
        return history_json(capsys, history_db, *args)

    assert [(r["task_name"], r["attempts"], r["status"]) for r in query("--task", "load_apac")] == [
        ("load_apac", 2, "completed")
    ]
    failed = query("--status", "failed,upstream_failed")
    assert sorted((r["task_name"], r["status"], r["error_type"]) for r in failed) == [
        ("bad", "failed", "RuntimeError"),
        ("next", "upstream_failed", None),
    ]
    assert query("--status", "failed", "--status", "upstream_failed") == failed
    assert len(query("--limit", "2")) == 2
    assert len(query("--since", "1h", "--limit", "0")) == 9
    assert query("--since", "2999-01-01") == []
    assert len(query("--until", "2999-01-01T00:00", "--limit", "0")) == 9
    report = query("--task", "report")[0]
    assert len(query("--execution", str(report["execution_id"]), "--limit", "0")) == 7
    assert query("--task", "no-such-task") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "sideways"], "unknown status 'sideways'"),
        (["--since", "last tuesday"], "cannot read time 'last tuesday'"),
    ],
)
def test_history_rejects_bad_filters(
    capsys: pytest.CaptureFixture[str], history_db: Path, args: list[str], message: str
) -> None:
    code, _, err = call_main(capsys, "history", "--db", history_db, *args)

    assert code == 2
    assert message in err


def test_history_needs_an_existing_history_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = call_main(capsys, "history", "--db", tmp_path / "none.db")
    assert code == 2
    assert "no history database at" in err
    assert not (tmp_path / "none.db").exists()  # reading never creates one

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    code, _, err = call_main(capsys, "stats", "--db", other)
    assert code == 2
    assert "not a threadloom history" in err


def test_stats_from_the_command_line(history_db: Path) -> None:
    result = run_cli("stats", "--db", history_db, cwd=history_db.parent)

    assert result.returncode == 0, result.stderr
    assert "runs: 9 from " in result.stdout
    assert "executions: 2 (1 completed, 1 failed)" in result.stdout
    # task, runs, completed, failed, not run, retries
    assert re.search(r"^load_apac +1 +1 +0 +0 +1 ", result.stdout, re.MULTILINE)
    assert re.search(r"^next +1 +0 +0 +1 +0 ", result.stdout, re.MULTILINE)


def test_stats_json_agrees_with_the_history(
    capsys: pytest.CaptureFixture[str], history_db: Path
) -> None:
    code, out, err = call_main(capsys, "stats", "--db", history_db, "--json")

    assert code == 0, err
    stats = json.loads(out)
    assert stats["runs"] == 9
    assert stats["executions"] == 2
    assert stats["executions_by_status"] == {"completed": 1, "failed": 1}
    assert stats["runs_by_status"] == {
        "completed": 7,
        "failed": 1,
        "timed_out": 0,
        "cancelled": 0,
        "upstream_failed": 1,
        "skipped": 0,
    }
    assert stats["retries"] == 1
    by_task = {g["task"]: g for g in stats["groups"]}
    assert by_task["load_apac"]["retries"] == 1 and by_task["load_apac"]["runs"] == 1
    assert by_task["bad"]["failed"] == 1
    assert by_task["load_us"]["duration_p50"] >= 0.3  # it waits 0.3 s for its "service"


def test_stats_by_tag_and_for_one_task(
    capsys: pytest.CaptureFixture[str], history_db: Path
) -> None:
    code, out, _ = call_main(capsys, "stats", "--db", history_db, "--json", "--by", "tag")
    assert code == 0
    groups = {g["tag"]: g["runs"] for g in json.loads(out)["groups"]}
    # The example tags its tasks; untagged tasks are grouped by name.
    assert groups == {"load": 3, "check": 1, "report": 2, "heartbeat": 1, "bad": 1, "next": 1}

    code, out, _ = call_main(capsys, "stats", "--db", history_db, "--json", "--task", "bad")
    assert [g["task"] for g in json.loads(out)["groups"]] == ["bad"]


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


# --------------------------------------------------------------------------- robustness (issue 11)


def run_cli_env(
    *args: str | Path, cwd: Path, env: dict[str, str], timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadloom", *map(str, args)],
        cwd=cwd,
        env={**cli_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


LONG_MESSAGE = "the upstream service answered with something nobody expected " * 5


@pytest.fixture(scope="module")
def long_errors_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A history whose runs have long error messages, long names and every common status."""
    directory = tmp_path_factory.mktemp("long")
    (directory / "long_tasks.py").write_text(
        textwrap.dedent(
            f"""
            def fail():
                raise RuntimeError({LONG_MESSAGE!r})

            def ok():
                return 1
            """
        )
    )
    flow = write_workflow(
        directory,
        """
        [tasks.a_task_with_a_rather_long_name_that_keeps_going]
        call = "long_tasks:fail"
        [tasks.ok]
        call = "long_tasks:ok"
        [tasks.after]
        call = "long_tasks:ok"
        depends_on = ["a_task_with_a_rather_long_name_that_keeps_going"]
        """,
    )
    for _ in range(2):
        assert run_cli("run", flow, "--once", "--db", "h.db", cwd=directory).returncode == 1
    return directory / "h.db"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1.0 else f"{seconds:.2f} s"


@pytest.mark.parametrize("columns", ["120", "80", "40"])
def test_history_shows_every_status_and_time_at_any_width(
    long_errors_db: Path, columns: str
) -> None:
    result = run_cli_env(
        "history", "--db", long_errors_db, cwd=long_errors_db.parent, env={"COLUMNS": columns}
    )

    assert result.returncode == 0, result.stderr
    statuses = Counter(status for (status,) in rows(long_errors_db, "SELECT status FROM task_runs"))
    assert statuses == {"failed": 2, "completed": 2, "upstream_failed": 2}
    for status, count in statuses.items():
        assert len(re.findall(rf"(?<!\w){status}(?!\w)", result.stdout)) == count, result.stdout
    for (duration,) in rows(
        long_errors_db, "SELECT duration FROM task_runs WHERE duration IS NOT NULL"
    ):
        assert _ms(duration) in result.stdout
    # The error message is all there, folded over lines (in a table, in its column).
    lines = result.stdout.splitlines()
    start = lines[0].find("error") if lines[0].startswith("finished") else 0
    unfolded = re.sub(r"\s+", "", "".join(line[start:] for line in lines))
    assert re.sub(r"\s+", "", LONG_MESSAGE) in unfolded
    assert all(len(line) <= int(columns) for line in result.stdout.splitlines())


@pytest.mark.parametrize("columns", ["120", "80", "40"])
def test_stats_shows_every_number_in_full_at_any_width(long_errors_db: Path, columns: str) -> None:
    stats = json.loads(
        run_cli_env(
            "stats", "--db", long_errors_db, "--json", cwd=long_errors_db.parent, env={}
        ).stdout
    )
    result = run_cli_env(
        "stats", "--db", long_errors_db, cwd=long_errors_db.parent, env={"COLUMNS": columns}
    )

    assert result.returncode == 0, result.stderr
    for group in stats["groups"]:
        for key in ("duration_p50", "duration_p90", "duration_max"):
            assert _ms(group[key]) in result.stdout, (columns, result.stdout)
    # The long name is all there, folded in its column (or on its own line).
    lines = result.stdout.splitlines()
    header = next((line for line in lines if re.match(r"task +runs", line)), None)
    end = header.index("runs") if header else None
    unfolded = re.sub(r"\s+", "", "".join(line[:end] for line in lines))
    assert "a_task_with_a_rather_long_name_that_keeps_going" in unfolded


def _read_lines(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


def test_task_output_and_logs_appear_above_the_live_display(tmp_path: Path) -> None:
    pyte = pytest.importorskip("pyte")
    if sys.platform == "win32":
        pytest.skip("needs a POSIX pseudo-terminal")
    import fcntl
    import pty
    import termios

    (tmp_path / "noisy_tasks.py").write_text(
        textwrap.dedent(
            """
            import logging, sys, time

            def noisy():
                # Speak only once the live display is up (it swaps sys.stdout for
                # rich's proxy): the output must then go above it.
                deadline = time.monotonic() + 20
                while type(sys.stdout).__name__ != "FileProxy":
                    assert time.monotonic() < deadline, "the live display never started"
                    time.sleep(0.01)
                print("hello from the task")
                logging.getLogger("myapp.loader").warning("careful: a user warning")
                return 1
            """
        )
    )
    flow = write_workflow(tmp_path, '[tasks.noisy]\ncall = "noisy_tasks:noisy"\n')
    rows_, cols = 100, 120
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows_, cols, 0, 0))
    env = {**cli_env(), "TERM": "xterm-256color"}
    env.pop("LINES", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "threadloom", "run", str(flow), "--once", "--db", "h.db"],
        cwd=tmp_path,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], WAIT)
            assert ready, "no output for too long"
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    screen = pyte.Screen(cols, rows_)
    pyte.Stream(screen).feed(b"".join(chunks).decode("utf-8", "replace"))
    lines = [line.rstrip() for line in screen.display]

    assert "hello from the task" in lines, "\n".join(lines)
    assert "myapp.loader: WARNING: careful: a user warning" in lines, "\n".join(lines)
    # No stale copy of the display was left behind.
    assert sum(line.startswith("flow · ") for line in lines) == 1, "\n".join(lines)


@pytest.fixture
def stuck_flow(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "stuck_tasks.py").write_text(
        textwrap.dedent(
            """
            import time
            from pathlib import Path

            def stuck(marker):
                Path(marker).write_text("started")
                time.sleep(60)  # ignores cancellation, as blocking calls do
            """
        )
    )
    marker = tmp_path / "started"
    flow = write_workflow(
        tmp_path, f'[tasks.stuck_in_sleep]\ncall = "stuck_tasks:stuck"\nargs = ["{marker}"]\n'
    )
    return flow, marker


def _start_and_wait_for(
    tmp_path: Path, spawn: list[subprocess.Popen[str]], marker: Path, *args: str | Path
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "threadloom", *map(str, args)],
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
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.02)
    return process


def test_the_first_ctrl_c_says_what_it_waits_for_and_the_second_exits(
    tmp_path: Path, spawn: list[subprocess.Popen[str]], stuck_flow: tuple[Path, Path]
) -> None:
    flow, marker = stuck_flow
    process = _start_and_wait_for(tmp_path, spawn, marker, "run", flow, "--once", "--db", "h.db")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stderr, lines), daemon=True).start()

    process.send_signal(signal.SIGINT)
    while True:
        line = lines.get(timeout=WAIT)  # queue.Empty fails the test: no message
        if "stopping" in line:
            break
    assert "waiting up to 30 s for 1 running task(s) to stop: stuck_in_sleep" in line
    assert "Ctrl-C again to exit at once" in line
    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=WAIT) == 130


def test_tasks_that_do_not_stop_are_abandoned_after_the_stop_timeout(
    tmp_path: Path, spawn: list[subprocess.Popen[str]], stuck_flow: tuple[Path, Path]
) -> None:
    flow, marker = stuck_flow
    process = _start_and_wait_for(
        tmp_path, spawn, marker, "run", flow, "--once", "--db", "h.db", "--stop-timeout", "0.5"
    )

    process.send_signal(signal.SIGINT)
    # The task sleeps for a minute: exiting well before means it was not waited for.
    stdout, stderr = process.communicate(timeout=WAIT)

    assert process.returncode == 130, stderr
    assert "abandoned: 1 task(s) still running did not stop in time" in stdout
    assert "stuck_in_sleep" in stdout
    assert "stopped cleanly" not in stdout


def _assert_clear_usage_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def test_a_workflow_that_is_not_utf8_exits_2(tmp_path: Path) -> None:
    flow = tmp_path / "latin1.toml"
    flow.write_bytes('[tasks.a]\ncall = "os:getcwd"\ndescription = "café"\n'.encode("latin-1"))

    _assert_clear_usage_error(run_cli("run", flow, "--once", cwd=tmp_path), "not UTF-8")


def test_deeply_nested_arrays_exit_2(tmp_path: Path) -> None:
    flow = write_workflow(
        tmp_path, '[tasks.a]\ncall = "os:getcwd"\nargs = ' + "[" * 5000 + "]" * 5000
    )

    _assert_clear_usage_error(run_cli("run", flow, "--once", cwd=tmp_path), "nested too deeply")


def test_a_huge_worker_count_in_the_file_exits_2(tmp_path: Path) -> None:
    flow = write_workflow(
        tmp_path, '[workflow]\nworkers = 99999999999999999999\n[tasks.a]\ncall = "os:getcwd"\n'
    )

    _assert_clear_usage_error(
        run_cli("run", flow, "--once", cwd=tmp_path), "must be an integer from 1 to 10000"
    )


def test_a_huge_workers_option_exits_2(tmp_path: Path) -> None:
    flow = write_workflow(tmp_path, '[tasks.a]\ncall = "os:getcwd"\n')

    _assert_clear_usage_error(
        run_cli("run", flow, "--once", "--workers", "99999999999999999999", cwd=tmp_path),
        "must be at most 10000",
    )


def test_a_huge_jitter_exits_2(tmp_path: Path) -> None:
    flow = write_workflow(
        tmp_path, '[tasks.a]\ncall = "os:getcwd"\nretry = { max_retries = 1, jitter = 1e308 }\n'
    )

    _assert_clear_usage_error(run_cli("run", flow, "--once", cwd=tmp_path), "retry.jitter")


def test_a_huge_history_limit_exits_2(history_db: Path) -> None:
    result = run_cli(
        "history", "--db", history_db, "--limit", "99999999999999999999999", cwd=history_db.parent
    )

    _assert_clear_usage_error(result, "must be at most 1000000000")


@pytest.mark.parametrize("columns", ["abc", "-5", "99999999999999999999", ""])
def test_an_unreadable_columns_variable_is_ignored(history_db: Path, columns: str) -> None:
    result = run_cli_env(
        "stats", "--db", history_db, cwd=history_db.parent, env={"COLUMNS": columns}
    )

    assert result.returncode == 0, result.stderr
    assert "load_apac" in result.stdout


def test_a_result_whose_repr_raises_is_shown_as_such(tmp_path: Path) -> None:
    (tmp_path / "repr_tasks.py").write_text(
        textwrap.dedent(
            """
            class Awkward:
                def __repr__(self):
                    raise RuntimeError("no repr for you")

            def make():
                return Awkward()
            """
        )
    )
    flow = write_workflow(tmp_path, '[tasks.a]\ncall = "repr_tasks:make"\n')

    result = run_cli("run", flow, "--once", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "<Awkward object: its repr() raised RuntimeError>" in result.stdout


def test_a_module_that_exits_at_import_exits_2(tmp_path: Path) -> None:
    (tmp_path / "exiting.py").write_text("import sys\nsys.exit(42)\n")
    flow = write_workflow(tmp_path, '[tasks.a]\ncall = "exiting:f"\n')

    _assert_clear_usage_error(
        run_cli("run", flow, "--once", cwd=tmp_path),
        "importing module 'exiting' called sys.exit(42)",
    )


def test_markup_and_control_characters_from_users_are_printed_literally(tmp_path: Path) -> None:
    (tmp_path / "odd_tasks.py").write_text(
        textwrap.dedent(
            """
            class Loud:
                def __repr__(self):
                    return "\\x1b[31m[bold red]result[/]\\x1b[0m"

            def loud():
                return Loud()

            def fail():
                raise RuntimeError("\\x1b]0;pwned\\x07[blink]error[/blink]")
            """
        )
    )
    flow = write_workflow(
        tmp_path,
        """
        [tasks."[bold red]x[/]"]
        call = "odd_tasks:loud"
        [tasks."bell\\u0007\\u001b[2J"]
        call = "odd_tasks:fail"
        """,
    )
    db = tmp_path / "h.db"

    run = run_cli("run", flow, "--once", "--db", db, cwd=tmp_path)
    history = run_cli("history", "--db", db, cwd=tmp_path)
    stats = run_cli("stats", "--db", db, cwd=tmp_path)

    assert run.returncode == 1, run.stderr
    for result in (run, history, stats):
        output = result.stdout + result.stderr
        assert "\x1b" not in output and "\x07" not in output, output
        assert "[bold red]x[/]" in output
        assert "bell\\x07\\x1b[2J" in output
    assert "\\x1b[31m[bold red]result[/]\\x1b[0m" in run.stdout
    assert "RuntimeError: \\x1b]0;pwned\\x07[blink]error[/blink]" in run.stdout
    assert "RuntimeError: \\x1b]0;pwned\\x07[blink]error[/blink]" in history.stdout


def test_check_validates_without_importing(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "side_effects.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "def f():\n    pass\n"
    )
    flow = write_workflow(
        tmp_path,
        """
        [tasks.first]
        call = "side_effects:f"
        [tasks.second]
        call = "side_effects:f"
        depends_on = ["first"]
        schedule = "*/5 * * * *"
        """,
    )

    result = run_cli("run", "--check", flow, "--db", "h.db", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert not (tmp_path / "h.db").exists()
    assert "valid workflow 'flow': 2 task(s) in dependency order: first, second" in result.stdout
    assert "scheduled: second" in result.stdout


def test_check_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    flow = write_workflow(
        tmp_path,
        """
        [tasks.a]
        call = "os system"
        depends_on = ["b"]
        [tasks.b]
        call = "os:system"
        depends_on = ["a"]
        schedule = { once = 2001-01-01T00:00:00 }
        """,
    )

    result = run_cli("run", "--check", flow, cwd=tmp_path)

    _assert_clear_usage_error(result, "(3 problems)")
    assert "task 'a', field 'call': 'os system' is not an import path" in result.stderr
    assert "dependency cycle" in result.stderr
    assert "field 'schedule.once'" in result.stderr and "in the past" in result.stderr


def test_threadloom_log_records_keep_control_characters_off_the_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from threadloom.cli.console import StderrHandler as _StderrHandler

    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    for name in ("threadloom.task_manager", "myapp"):
        handler.handle(
            logging.LogRecord(name, logging.WARNING, __file__, 1, "x\x1b[2Jy", None, None)
        )

    err = capsys.readouterr().err
    assert err.splitlines() == ["threadloom.task_manager: x\\x1b[2Jy", "myapp: x\x1b[2Jy"]
