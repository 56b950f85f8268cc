"""Tests of threadloom.distributed on a real Dask LocalCluster of two worker processes.

One cluster serves the whole module (starting one costs seconds).  The task
manager's behaviour tests run on the local pool and on the cluster with the
same assertions.  Tasks coordinate with the test through Dask's own ``Event``
and ``Variable`` (on the scheduler), which work from the test process, from
the local pool's threads and from the worker processes alike.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

from threadloom import RetryPolicy, TaskPriority, TaskStatus, current_task  # noqa: E402
from threadloom.distributed import (  # noqa: E402
    ClusterUnreachableError,
    DaskBackend,
    DaskExecutor,
    connect,
    dask_priority,
    parse_cluster,
)
from threadloom.task_manager import TaskManager, TriggerRule  # noqa: E402

WAIT = 30.0  # bound on every wait: a bug fails the test instead of hanging it
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED
SKIPPED = TaskStatus.SKIPPED
UPSTREAM_FAILED = TaskStatus.UPSTREAM_FAILED
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        pids = list(client.run(os.getpid).values())
        client.close()
        cluster.close()
        # Torn down cleanly: no worker process is left running.
        for pid in pids:
            deadline = time.monotonic() + WAIT
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(pid), f"worker process {pid} outlived its cluster"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie awaiting its parent's reap is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(params=["local", "dask"])
def manager(request: pytest.FixtureRequest, client: Any) -> Iterator[TaskManager]:
    """A running TaskManager on the local pool, then on the cluster."""
    backend = DaskBackend(client) if request.param == "dask" else None
    with TaskManager(cluster=backend) as manager:
        yield manager
    if backend is not None:
        backend.close()


# -- tasks (module level: the worker processes import them by name) ---------------


def flag(name: str) -> Any:
    """A Dask Event, set by a task and waited on by the test (or the other way)."""
    return distributed.Event(name)


def mark(name: str, value: Any = None) -> Any:
    flag(name).set()
    return value if value is not None else name


def ok() -> str:
    return "ok"


def boom() -> None:
    raise RuntimeError("boom")


def pid() -> int:
    return os.getpid()


def add_up(up: Any) -> int:
    return int(sum(up.values()))


def value_of(n: int) -> int:
    return n


def from_context() -> dict[str, Any]:
    return dict(current_task().upstream_results)


def always_fails() -> None:
    raise ValueError(f"attempt {current_task().attempt} failed")


def lucky_second_time() -> str:
    if current_task().attempt < 2:
        raise OSError("transient")
    return "ok"


def raising(kind: str) -> None:
    raise OSError("disk") if kind == "os" else ValueError("bad input")


def cooperative(started: str, stopped: str) -> None:
    flag(started).set()
    # A long job that checks in: it stops once asked to.
    if current_task().wait_cancelled(WAIT):
        flag(stopped).set()
    current_task().check_cancelled()


def gated(gate: str, value: Any = None) -> Any:
    assert flag(gate).wait(WAIT)
    return value


def blocker(started: str, gate: str) -> None:
    flag(started).set()
    assert flag(gate).wait(WAIT)


def started_at() -> int:
    return time.time_ns()


def victim(pid_variable: str, gate: str) -> int:
    distributed.Variable(pid_variable).set(os.getpid())
    assert flag(gate).wait(WAIT)
    return os.getpid()


def _ready_count(dask_worker: Any) -> int:
    return len(dask_worker.state.ready)


def keyword_echo(priority: Any = None, key: Any = None, pure: Any = None) -> tuple[Any, ...]:
    return (priority, key, pure)


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


# -- helpers --------------------------------------------------------------------------


def uid() -> str:
    return uuid.uuid4().hex


def statuses(manager: TaskManager, execution_id: str) -> dict[str, TaskStatus]:
    info = manager.get_execution_status(execution_id)
    return {run.name: run.status for run in info.tasks.values()}


def run_to_end(manager: TaskManager, *targets: str) -> str:
    (execution,) = manager.execute_tasks(list(targets))
    assert manager.wait_for_execution(execution, timeout=WAIT)
    return execution


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- the task manager on both backends ------------------------------------------------


def test_results_pass_between_tasks_and_priority_is_inherited(manager: TaskManager) -> None:
    one = manager.register_task("one", value_of, 1)
    two = manager.register_task("two", value_of, 2)
    total = manager.register_task(
        "total", add_up, dependencies=[one, two], results_param="up", priority=TaskPriority.HIGH
    )
    seen = manager.register_task("seen", from_context, dependencies=[total])
    execution = run_to_end(manager, seen)
    info = manager.get_execution_status(execution)
    assert info.status is COMPLETED
    assert info.results == {"one": 1, "two": 2, "total": 3, "seen": {"total": 3}}
    # The upstreams of a HIGH task run at HIGH.
    assert info.tasks[one].priority == TaskPriority.HIGH
    assert info.tasks[seen].priority == TaskPriority.NORMAL
    records = manager.get_task_history(execution_id=execution)
    assert sorted((r.task_name, r.status, r.attempts) for r in records) == [
        ("one", COMPLETED, 1),
        ("seen", COMPLETED, 1),
        ("total", COMPLETED, 1),
        ("two", COMPLETED, 1),
    ]
    assert all(r.started_at is not None and r.started_at <= r.finished_at for r in records)


@pytest.mark.parametrize(
    ("rule", "upstream_outcomes", "expected"),
    [
        (TriggerRule.ALL_SUCCESS, ("ok", "ok"), COMPLETED),
        (TriggerRule.ALL_SUCCESS, ("ok", "fail"), UPSTREAM_FAILED),
        (TriggerRule.ALL_DONE, ("fail", "fail"), COMPLETED),
        (TriggerRule.ONE_SUCCESS, ("ok", "fail"), COMPLETED),
        (TriggerRule.ONE_SUCCESS, ("fail", "fail"), UPSTREAM_FAILED),
        (TriggerRule.ONE_FAILED, ("ok", "fail"), COMPLETED),
        (TriggerRule.ONE_FAILED, ("ok", "ok"), SKIPPED),
        (TriggerRule.NONE_FAILED, ("ok", "fail"), UPSTREAM_FAILED),
    ],
)
def test_trigger_rules(
    manager: TaskManager,
    rule: TriggerRule,
    upstream_outcomes: tuple[str, str],
    expected: TaskStatus,
) -> None:
    ups = [
        manager.register_task(f"up{i}", ok if outcome == "ok" else boom)
        for i, outcome in enumerate(upstream_outcomes)
    ]
    ran = f"ran-{uid()}"
    manager.register_task("down", mark, ran, dependencies=ups, trigger_rule=rule.value)
    execution = run_to_end(manager, "down")
    assert statuses(manager, execution)["down"] is expected
    assert flag(ran).is_set() == (expected is COMPLETED)


def test_none_failed_runs_past_a_skip_that_stops_all_success(manager: TaskManager) -> None:
    start = manager.register_task("start", ok)
    gate = manager.register_task("on_failure", ok, dependencies=[start], trigger_rule="one_failed")
    manager.register_task("strict", ok, dependencies=[gate])
    manager.register_task("lenient", ok, dependencies=[gate], trigger_rule="none_failed")
    manager.register_task("off", ok, enabled=False)
    manager.register_task("after_off", ok, dependencies=["off"])
    execution = run_to_end(manager, "strict", "lenient", "after_off")
    assert statuses(manager, execution) == {
        "start": COMPLETED,
        "on_failure": SKIPPED,
        "strict": SKIPPED,
        "lenient": COMPLETED,
        "off": SKIPPED,
        "after_off": SKIPPED,
    }
    assert manager.get_execution_status(execution).status is COMPLETED


def test_failure_after_retries_marks_dependents_upstream_failed(manager: TaskManager) -> None:
    bad = manager.register_task("bad", always_fails, max_retries=2, retry_delay=0.01)
    manager.register_task("mid", ok, dependencies=[bad])
    manager.register_task("end", ok, dependencies=["mid"])
    execution = run_to_end(manager, "end")
    assert statuses(manager, execution) == {
        "bad": FAILED,
        "mid": UPSTREAM_FAILED,
        "end": UPSTREAM_FAILED,
    }
    info = manager.get_execution_status(execution)
    assert info.status is FAILED
    assert info.tasks[bad].attempts == 3
    assert isinstance(info.tasks[bad].error, ValueError)
    (record,) = manager.get_task_history("bad")
    assert (record.status, record.attempts, record.error_type) == (FAILED, 3, "ValueError")
    # Each attempt saw its number: the third is the one recorded.
    assert record.error_message == "attempt 3 failed"


def test_a_retry_that_succeeds_lets_dependents_run(manager: TaskManager) -> None:
    flaky = manager.register_task("flaky", lucky_second_time, max_retries=3, retry_delay=0.01)
    after = manager.register_task("after", add_up_text, dependencies=[flaky], results_param="up")
    execution = run_to_end(manager, after)
    info = manager.get_execution_status(execution)
    assert info.results == {"flaky": "ok", "after": "okok"}
    assert info.tasks[flaky].attempts == 2


def add_up_text(up: Any) -> str:
    return str(up["flaky"]) * 2


def test_a_full_retry_policy_decides_what_is_retried(manager: TaskManager) -> None:
    policy = RetryPolicy(max_retries=2, delay=0.01, backoff=2.0, retry_on=(OSError,))
    manager.register_task("os", raising, "os", retry=policy)
    manager.register_task("value", raising, "value", retry=policy)
    execution = run_to_end(manager, "os", "value")
    info = manager.get_execution_status(execution)
    assert {run.name: (run.status, run.attempts) for run in info.tasks.values()} == {
        "os": (FAILED, 3),
        "value": (FAILED, 1),
    }


def test_a_run_past_its_timeout_times_out_and_is_asked_to_stop(manager: TaskManager) -> None:
    started, stopped = f"started-{uid()}", f"stopped-{uid()}"
    # Long enough for a cluster to start the task before the deadline.
    manager.register_task("slow", cooperative, started, stopped, timeout=1.0)
    manager.register_task("after", ok, dependencies=["slow"])
    execution = run_to_end(manager, "after")
    assert statuses(manager, execution) == {"slow": TaskStatus.TIMED_OUT, "after": UPSTREAM_FAILED}
    assert flag(started).wait(WAIT)
    assert flag(stopped).wait(WAIT)
    (record,) = manager.get_task_history("slow")
    assert (record.status, record.error_type) == (TaskStatus.TIMED_OUT, "TimeoutError")


def test_cancel_execution_stops_the_running_task_and_nothing_else_starts(
    manager: TaskManager,
) -> None:
    started, stopped, ran = f"started-{uid()}", f"stopped-{uid()}", f"ran-{uid()}"
    slow = manager.register_task("slow", cooperative, started, stopped)
    manager.register_task("next", mark, ran, dependencies=[slow])
    manager.register_task("cleanup", mark, ran, dependencies=["next"], trigger_rule="all_done")
    (execution,) = manager.execute_tasks(["cleanup"])
    assert flag(started).wait(WAIT)
    wait_until(lambda: manager.get_task_status("slow") is TaskStatus.RUNNING, "slow to run")
    assert manager.cancel_execution(execution)
    assert manager.wait_for_execution(execution, timeout=WAIT)
    assert statuses(manager, execution) == {
        "slow": CANCELLED,
        "next": CANCELLED,
        "cleanup": CANCELLED,
    }
    assert flag(stopped).wait(WAIT)
    assert not flag(ran).is_set()
    assert manager.get_execution_status(execution).status is CANCELLED
    assert not manager.cancel_execution(execution)
    recorded = {r.task_name: r.status for r in manager.get_task_history(execution_id=execution)}
    assert recorded == {"slow": CANCELLED, "next": CANCELLED, "cleanup": CANCELLED}


def test_cancel_one_task_fails_its_dependents_but_all_done_still_runs(
    manager: TaskManager,
) -> None:
    gate, ran_second, ran_report = f"gate-{uid()}", f"second-{uid()}", f"report-{uid()}"
    first = manager.register_task("first", gated, gate)
    manager.register_task("second", mark, ran_second, dependencies=[first])
    manager.register_task("third", ok, dependencies=["second"])
    manager.register_task(
        "report", mark, ran_report, dependencies=["second"], trigger_rule="all_done"
    )
    (execution,) = manager.execute_tasks(["third", "report"])
    assert manager.cancel_task("second")
    flag(gate).set()
    assert manager.wait_for_execution(execution, timeout=WAIT)
    assert statuses(manager, execution) == {
        "first": COMPLETED,
        "second": CANCELLED,
        "third": UPSTREAM_FAILED,
        "report": COMPLETED,
    }
    assert flag(ran_report).is_set() and not flag(ran_second).is_set()
    assert not manager.cancel_task("second")


# -- the cluster itself ------------------------------------------------------------


def test_tasks_run_in_the_worker_processes(client: Any) -> None:
    workers = set(client.run(os.getpid).values())
    backend = DaskBackend(client)
    with TaskManager(cluster=backend) as manager:
        ids = [manager.register_task(f"p{i}", pid) for i in range(4)]
        execution = run_to_end(manager, *ids)
        pids = set(manager.get_execution_status(execution).results.values())
    backend.close()
    assert pids <= workers
    assert os.getpid() not in pids


def test_a_worker_killed_mid_task_is_rerun_and_recorded(client: Any) -> None:
    pid_variable, gate = f"pid-{uid()}", f"gate-{uid()}"
    backend = DaskBackend(client)
    try:
        with TaskManager(cluster=backend) as manager:
            task = manager.register_task("victim", victim, pid_variable, gate)
            manager.register_task("after", ok, dependencies=[task])
            (execution,) = manager.execute_tasks(["after"])
            first_pid = distributed.Variable(pid_variable).get(timeout=WAIT)
            # The client has heard of the start before the worker dies.
            wait_until(lambda: manager.get_task_status(task) is TaskStatus.RUNNING, "a start")
            os.kill(first_pid, signal.SIGKILL)
            flag(gate).set()
            assert manager.wait_for_execution(execution, timeout=WAIT)
            info = manager.get_execution_status(execution)
            assert info.status is COMPLETED
            assert info.results["victim"] != first_pid
            (record,) = manager.get_task_history("victim")
            # Once on the killed worker, once where Dask ran it again; one record.
            assert (record.status, record.attempts) == (COMPLETED, 2)
    finally:
        backend.close()
        # The nanny brings the killed worker back for the tests after this one.
        client.wait_for_workers(2, timeout=WAIT)


def test_a_critical_task_starts_before_queued_low_tasks(client: Any) -> None:
    # Both workers busy; the LOW tasks and then the CRITICAL one queue for
    # the first of them (so that which worker frees first does not matter).
    first, other = sorted(client.scheduler_info()["workers"])
    gates = {first: f"gate-{uid()}", other: f"gate-{uid()}"}
    executor = DaskExecutor(client)
    try:
        starts = {address: f"started-{uid()}" for address in gates}
        blockers = [
            executor.options(name="blocker", workers=address).submit(
                blocker, starts[address], gates[address]
            )
            for address in gates
        ]
        for started in starts.values():
            assert flag(started).wait(WAIT)
        low = executor.options(priority=TaskPriority.LOW, name="low", workers=first)
        lows = [low.submit(started_at) for _ in range(8)]
        critical = executor.options(
            priority=TaskPriority.CRITICAL, name="critical", workers=first
        ).submit(started_at)

        # Queued means queued on the worker: submissions travel apart from
        # the gate's message, which must not overtake them.
        def ready_on_worker() -> bool:
            counts = client.run(_ready_count, workers=[first])
            return bool(counts[first] == 9)

        wait_until(ready_on_worker, "nine tasks queued on the worker")
        flag(gates[first]).set()
        low_starts = [f.result(WAIT) for f in lows]
        assert critical.result(WAIT) < min(low_starts)
        # Equal priorities run in submission order, as on the local pool.
        assert low_starts == sorted(low_starts)
        flag(gates[other]).set()
        cf.wait(blockers, timeout=WAIT)
    finally:
        for gate in gates.values():
            flag(gate).set()
        executor.shutdown()


def test_the_executor_is_a_drop_in_with_real_futures(client: Any) -> None:
    executor = DaskExecutor(client)
    try:
        future = executor.submit(burn, 1000)
        assert isinstance(future, cf.Future)
        assert future.result(WAIT) == burn(1000)
        # Every keyword is the function's, even those Dask's submit has.
        echoed = executor.submit(keyword_echo, priority="p", key="k", pure="x").result(WAIT)
        assert echoed == ("p", "k", "x")
        assert list(executor.map(value_of, range(5), timeout=WAIT)) == [0, 1, 2, 3, 4]
        assert list(executor.options(name="m").map(value_of, [7], timeout=WAIT)) == [7]
        failed = executor.submit(boom)
        with pytest.raises(RuntimeError, match="boom"):
            failed.result(WAIT)
        # pure=False: the same call twice runs twice.
        twice = [executor.submit(started_at) for _ in range(2)]
        assert len({f.result(WAIT) for f in twice}) == 2
        done, _ = cf.wait([executor.submit(ok) for _ in range(3)], timeout=WAIT)
        assert len(done) == 3
        assert dask_priority(TaskPriority.CRITICAL) > dask_priority(TaskPriority.LOW)
    finally:
        executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(ok)
    # The client passed in is the caller's: still open.
    assert client.submit(value_of, 3).result(timeout=WAIT) == 3


def test_executor_retries_with_the_policy_and_times_out(client: Any) -> None:
    executor = DaskExecutor(client)
    try:
        policy = RetryPolicy(max_retries=2, delay=0.01, retry_on=(OSError,))
        assert executor.options(retry=policy).submit(lucky_second_time).result(WAIT) == "ok"
        with pytest.raises(ValueError, match="attempt 3 failed"):
            executor.options(retry=RetryPolicy(2, delay=0.01)).submit(always_fails).result(WAIT)
        started, stopped = f"started-{uid()}", f"stopped-{uid()}"
        slow = executor.options(timeout=1.0, name="slow").submit(cooperative, started, stopped)
        with pytest.raises(TimeoutError, match="did not finish within"):
            slow.result(WAIT)
        # The task on the worker was asked to stop.
        assert flag(stopped).wait(WAIT)
        gate = f"gate-{uid()}"
        pending = executor.submit(gated, gate)
        assert pending.cancel()
        flag(gate).set()
        with pytest.raises(cf.CancelledError):
            pending.result(WAIT)
        with pytest.raises(TypeError, match="resources"):
            executor.options(resources=["GPU"])  # type: ignore[arg-type]
    finally:
        executor.shutdown(cancel_futures=True)


def test_cluster_specs_are_checked() -> None:
    assert parse_cluster("local:3") == ("local", 3)
    assert parse_cluster("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    for bad in ("local:0", "local:x", "10.0.0.1:8786", "tcp://", ""):
        with pytest.raises(ValueError, match="local:N"):
            parse_cluster(bad)
    with pytest.raises(TypeError):
        parse_cluster(2)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_an_unreachable_scheduler_is_named() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(ClusterUnreachableError, match=address):
        connect(address, timeout=0.5)


def _threadloom(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadloom", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_cli_runs_the_example_workflow_on_a_local_cluster(tmp_path: Path) -> None:
    db = str(tmp_path / "history.db")
    result = _threadloom(
        "run", "examples/workflow.toml", "--once", "--cluster", "local:2", "--db", db
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: completed" in result.stdout
    # load_apac fails its first attempt by design; the retry ran on the cluster.
    out = _threadloom("history", "--db", db, "--task", "load_apac")
    assert out.returncode == 0, out.stderr
    assert "completed" in out.stdout


def test_cli_demo_runs_on_a_local_cluster(tmp_path: Path) -> None:
    result = _threadloom(
        "demo", "--duration", "1", "--cluster", "local:2", "--db", str(tmp_path / "demo.db")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "on the Dask cluster local:2" in result.stdout
    assert "crawl rounds" in result.stdout


def test_cli_unreachable_scheduler_exits_2_naming_it(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    result = _threadloom(
        "run",
        "examples/workflow.toml",
        "--once",
        "--cluster",
        address,
        "--db",
        str(tmp_path / "h.db"),
        env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert address in result.stderr
    bad = _threadloom("run", "examples/workflow.toml", "--once", "--cluster", "nowhere")
    assert bad.returncode == 2
    assert "local:N" in bad.stderr
