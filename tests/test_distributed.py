"""Tests of threadloom.distributed on a real Dask LocalCluster of two worker processes.

One cluster serves the whole module (starting one costs seconds).  The task
manager's scenarios (trigger rules, retries, deadlines, cancellation) are
written once in tests/test_task_manager.py and run there on the local pool
and on a cluster; here are the cluster's own.  Tasks coordinate with the
test through Dask's own ``Event`` and ``Variable`` (on the scheduler), which
work from the test process and from the worker processes alike.
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
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

from threadloom import RetryPolicy, TaskPriority, TaskStatus  # noqa: E402
from threadloom.distributed import (  # noqa: E402
    ClusterUnreachableError,
    DaskBackend,
    DaskExecutor,
    connect,
    dask_priority,
    parse_cluster,
)
from threadloom.task_manager import TaskManager  # noqa: E402

from .test_task_manager import (  # noqa: E402 - the scenarios' tasks, shared
    always_fails,
    boom,
    cooperative,
    gated,
    lucky_second_time,
    ok,
    run_to_end,
    value_of,
    wait_until,
)

WAIT = 30.0  # bound on every wait: a bug fails the test instead of hanging it
COMPLETED = TaskStatus.COMPLETED
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client(dask_client: Any) -> Any:
    return dask_client


# -- tasks (module level: the worker processes import them by name) ---------------


def flag(name: str) -> Any:
    """A Dask Event, set by a task and waited on by the test (or the other way)."""
    return distributed.Event(name)


def pid() -> int:
    return os.getpid()


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
        started, stopped = flag(f"started-{uid()}"), flag(f"stopped-{uid()}")
        slow = executor.options(timeout=1.0, name="slow").submit(cooperative, started, stopped)
        with pytest.raises(TimeoutError, match="did not finish within"):
            slow.result(WAIT)
        # The task on the worker was asked to stop.
        assert stopped.wait(WAIT)
        gate = flag(f"gate-{uid()}")
        pending = executor.submit(gated, gate)
        assert pending.cancel()
        gate.set()
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
