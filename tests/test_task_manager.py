"""Tests of TaskManager (threadloom.task_manager) on a real pool and a real SQLite history."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import pytest

from threadloom import RetryPolicy, TaskCancelled, TaskPriority, TaskStatus, current_task
from threadloom.history import TaskHistory
from threadloom.scheduling import every
from threadloom.scheduling.clock import ManualClock
from threadloom.task_manager import (
    DependencyCycleError,
    TaskDependencyError,
    TaskManager,
    TriggerRule,
    UnknownDependencyError,
    UnknownExecutionError,
    UnknownTaskError,
)
from threadloom.thread_pool_manager import ThreadPoolManager

WAIT = 20.0  # bound on every wait: a bug fails the test instead of hanging it

COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED
SKIPPED = TaskStatus.SKIPPED
UPSTREAM_FAILED = TaskStatus.UPSTREAM_FAILED


@pytest.fixture
def pool() -> Iterator[ThreadPoolManager]:
    pool = ThreadPoolManager(min_workers=4, max_workers=4)
    pool.start()
    yield pool
    pool.stop(wait_for_tasks=False, timeout=WAIT)


@pytest.fixture
def manager(pool: ThreadPoolManager) -> Iterator[TaskManager]:
    with TaskManager(thread_pool=pool) as manager:
        yield manager


class Log:
    """A thread-safe record of which tasks ran, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[str] = []

    def task(self, name: str, result: Any = None) -> Callable[[], Any]:
        def run() -> Any:
            with self._lock:
                self.entries.append(name)
            return name if result is None else result

        return run

    def before(self, first: str, second: str) -> bool:
        return self.entries.index(first) < self.entries.index(second)


def fail(message: str = "boom") -> Callable[[], Any]:
    def run() -> Any:
        raise RuntimeError(message)

    return run


def statuses(manager: TaskManager, execution_id: str) -> dict[str, TaskStatus]:
    info = manager.get_execution_status(execution_id)
    return {run.name: run.status for run in info.tasks.values()}


def run_to_end(manager: TaskManager, *targets: str) -> str:
    (execution_id,) = manager.execute_tasks(list(targets))
    assert manager.wait_for_execution(execution_id, timeout=WAIT)
    return execution_id


# -- the seed's example --------------------------------------------------------------


def test_seed_example_runs_dependencies_first_and_records_both(manager: TaskManager) -> None:
    log = Log()
    task1 = manager.register_task(name="Task 1", func=log.task("1"), priority=TaskPriority.HIGH)
    task2 = manager.register_task(
        name="Task 2", func=log.task("2"), dependencies=[task1], priority=TaskPriority.NORMAL
    )
    execution_ids = manager.execute_tasks([task2], wait=True)
    assert log.entries == ["1", "2"]
    history = manager.get_task_history()
    assert sorted(r.task_name for r in history) == ["Task 1", "Task 2"]
    assert {r.execution_id for r in history} == set(execution_ids)
    assert manager.get_execution_status(execution_ids[0]).status is COMPLETED


# -- graphs ----------------------------------------------------------------------------


def test_diamond_runs_each_task_once_with_branches_in_parallel(manager: TaskManager) -> None:
    log = Log()
    # Both branches must be inside the barrier at once, or it breaks and they fail.
    barrier = threading.Barrier(2, timeout=WAIT)

    def branch(name: str) -> Callable[[], str]:
        def run() -> str:
            log.task(name)()
            barrier.wait()
            return name

        return run

    a = manager.register_task("a", log.task("a"))
    b = manager.register_task("b", branch("b"), dependencies=[a])
    c = manager.register_task("c", branch("c"), dependencies=[a])
    d = manager.register_task("d", log.task("d"), dependencies=[b, c])
    execution = run_to_end(manager, d)
    assert statuses(manager, execution) == dict.fromkeys("abcd", COMPLETED)
    assert sorted(log.entries) == ["a", "b", "c", "d"]
    assert log.entries[0] == "a" and log.entries[-1] == "d"


def test_wide_graph_fans_in_every_result(manager: TaskManager) -> None:
    root = manager.register_task("root", lambda: 1)
    leaves = [
        manager.register_task(f"leaf{i}", lambda i=i: i, dependencies=[root]) for i in range(300)
    ]
    sink = manager.register_task(
        "sink", lambda up: sorted(up.values()), dependencies=leaves, results_param="up"
    )
    execution = run_to_end(manager, sink)
    info = manager.get_execution_status(execution)
    assert info.status is COMPLETED
    assert info.results["sink"] == list(range(300))
    assert len(info.tasks) == 302


def test_deep_chain_runs_in_order(manager: TaskManager) -> None:
    log = Log()
    previous: list[str] = []
    for i in range(3000):
        previous = [manager.register_task(f"n{i}", log.task(f"n{i}"), dependencies=previous)]
    execution = run_to_end(manager, previous[0])
    assert manager.get_execution_status(execution).status is COMPLETED
    assert log.entries == [f"n{i}" for i in range(3000)]


def test_only_the_dependency_closure_runs(manager: TaskManager) -> None:
    log = Log()
    a = manager.register_task("a", log.task("a"))
    manager.register_task("unrelated", log.task("unrelated"))
    manager.register_task("downstream", log.task("downstream"), dependencies=[a])
    execution = run_to_end(manager, a)
    assert log.entries == ["a"]
    assert set(statuses(manager, execution)) == {"a"}


def test_unknown_dependency_is_rejected_at_registration(manager: TaskManager) -> None:
    manager.register_task("a", int)
    with pytest.raises(UnknownDependencyError, match=r"'b' depends on unknown task.*'nope'"):
        manager.register_task("b", int, dependencies=["a", "nope"])
    assert [t.name for t in manager.list_tasks()] == ["a"]


def test_cycle_is_rejected_at_update_naming_its_tasks(manager: TaskManager) -> None:
    a = manager.register_task("a", int)
    b = manager.register_task("b", int, dependencies=[a])
    c = manager.register_task("c", int, dependencies=[b])
    with pytest.raises(DependencyCycleError, match="a -> c -> b -> a") as error:
        manager.update_task(a, dependencies=[c])
    assert error.value.cycle == ("a", "c", "b", "a")
    assert manager.get_task(a).dependencies == ()
    with pytest.raises(DependencyCycleError, match="a -> a"):
        manager.update_task("a", dependencies=["a"])


def test_dependencies_can_be_named(manager: TaskManager) -> None:
    log = Log()
    manager.register_task("extract", log.task("extract"))
    manager.register_task("load", log.task("load"), dependencies=["extract"])
    execution = run_to_end(manager, "load")
    assert log.entries == ["extract", "load"]
    assert manager.get_execution_status(execution).status is COMPLETED


# -- failures, retries, trigger rules, cancellation: on every engine ------------------------
#
# These scenarios are written once and run on the local pool (this process's
# core; tests/integration/test_pure_python_core.py runs them on the twin) and
# on a Dask LocalCluster of worker processes (one for the module, started only
# if a Dask case is selected).  Their tasks are module-level functions, which
# the workers import by name; tasks and test signal each other through flags
# that work on both: threading.Event locally, Dask's Event on the cluster.


class Flag(Protocol):
    def set(self) -> object: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Engine:
    """A running TaskManager on one engine, and how its tasks signal the test."""

    manager: TaskManager
    new_flag: Callable[[], Flag]
    #: Long enough for the engine to start a task before the deadline passes.
    deadline: float


@pytest.fixture(params=["local", "dask"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "local":
        pool: ThreadPoolManager = request.getfixturevalue("pool")
        with TaskManager(thread_pool=pool) as manager:
            yield Engine(manager, threading.Event, deadline=0.05)
        return
    client = request.getfixturevalue("dask_client")
    distributed = pytest.importorskip("distributed")
    from threadloom.distributed import DaskBackend

    backend = DaskBackend(client)
    try:
        with TaskManager(cluster=backend) as manager:
            yield Engine(manager, lambda: distributed.Event(uuid.uuid4().hex), deadline=1.0)
    finally:
        backend.close()


def ok() -> str:
    return "ok"


def boom() -> None:
    raise RuntimeError("boom")


def value_of(n: int) -> int:
    return n


def add_up(up: Mapping[str, int]) -> int:
    return sum(up.values())


def from_context() -> dict[str, Any]:
    return dict(current_task().upstream_results)


def mark(flag: Flag) -> None:
    flag.set()


def gated(gate: Flag) -> None:
    assert gate.wait(WAIT)


def always_fails() -> None:
    raise ValueError(f"attempt {current_task().attempt} failed")


def lucky_second_time() -> str:
    if current_task().attempt < 2:
        raise OSError("transient")
    return "ok"


def twice(up: Mapping[str, str]) -> str:
    return up["flaky"] * 2


def raising(kind: str) -> None:
    raise OSError("disk") if kind == "os" else ValueError("bad input")


def cooperative(started: Flag, stopped: Flag) -> None:
    started.set()
    # A long job that checks in: it stops once asked to.
    if current_task().wait_cancelled(WAIT):
        stopped.set()
    current_task().check_cancelled()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_results_pass_between_tasks_and_priority_is_inherited(engine: Engine) -> None:
    manager = engine.manager
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
    assert all(
        r.started_at is not None and r.finished_at is not None and r.started_at <= r.finished_at
        for r in records
    )


def test_failure_after_retries_marks_dependents_upstream_failed(engine: Engine) -> None:
    manager = engine.manager
    ran = engine.new_flag()
    bad = manager.register_task("bad", always_fails, max_retries=2, retry_delay=0.01)
    mid = manager.register_task("mid", mark, ran, dependencies=[bad])
    manager.register_task("end", mark, ran, dependencies=[mid])
    execution = run_to_end(manager, "end")
    assert statuses(manager, execution) == {
        "bad": FAILED,
        "mid": UPSTREAM_FAILED,
        "end": UPSTREAM_FAILED,
    }
    assert not ran.is_set()
    info = manager.get_execution_status(execution)
    assert info.status is FAILED
    # wait_for_execution returned after the last attempt, not the first.
    assert info.tasks[bad].attempts == 3
    assert isinstance(info.tasks[bad].error, ValueError)
    (record,) = manager.get_task_history("bad")
    assert (record.status, record.attempts, record.error_type) == (FAILED, 3, "ValueError")
    # Each attempt saw its number: the third is the one recorded.
    assert record.error_message == "attempt 3 failed"


def test_a_retry_that_succeeds_lets_dependents_run(engine: Engine) -> None:
    manager = engine.manager
    flaky = manager.register_task("flaky", lucky_second_time, max_retries=3, retry_delay=0.01)
    after = manager.register_task("after", twice, dependencies=[flaky], results_param="up")
    execution = run_to_end(manager, after)
    info = manager.get_execution_status(execution)
    assert info.results == {"flaky": "ok", "after": "okok"}
    assert info.tasks[flaky].attempts == 2


def test_a_full_retry_policy_decides_what_is_retried(engine: Engine) -> None:
    manager = engine.manager
    policy = RetryPolicy(max_retries=2, delay=0.01, backoff=2.0, retry_on=(OSError,))
    manager.register_task("os", raising, "os", retry=policy)
    manager.register_task("value", raising, "value", retry=policy)
    execution = run_to_end(manager, "os", "value")
    info = manager.get_execution_status(execution)
    assert {run.name: (run.status, run.attempts) for run in info.tasks.values()} == {
        "os": (FAILED, 3),
        "value": (FAILED, 1),
    }
    assert manager.get_task("os").max_retries == 2
    updated = manager.update_task("os", max_retries=0)
    assert updated.retry.max_retries == 0
    with pytest.raises(ValueError, match="either retry"):
        manager.register_task("both", int, retry=policy, max_retries=1)


def test_a_run_past_its_timeout_times_out_and_is_asked_to_stop(engine: Engine) -> None:
    manager = engine.manager
    started, stopped = engine.new_flag(), engine.new_flag()
    manager.register_task("slow", cooperative, started, stopped, timeout=engine.deadline)
    manager.register_task("after", ok, dependencies=["slow"])
    execution = run_to_end(manager, "after")
    assert statuses(manager, execution) == {"slow": TaskStatus.TIMED_OUT, "after": UPSTREAM_FAILED}
    assert started.wait(WAIT)
    assert stopped.wait(WAIT)
    (record,) = manager.get_task_history("slow")
    assert (record.status, record.error_type) == (TaskStatus.TIMED_OUT, "TimeoutError")


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
        (TriggerRule.NONE_FAILED, ("ok", "ok"), COMPLETED),
        (TriggerRule.NONE_FAILED, ("ok", "fail"), UPSTREAM_FAILED),
    ],
)
def test_trigger_rules(
    engine: Engine,
    rule: TriggerRule,
    upstream_outcomes: tuple[str, str],
    expected: TaskStatus,
) -> None:
    manager = engine.manager
    ups = [
        manager.register_task(f"up{i}", ok if outcome == "ok" else boom)
        for i, outcome in enumerate(upstream_outcomes)
    ]
    ran = engine.new_flag()
    manager.register_task("down", mark, ran, dependencies=ups, trigger_rule=rule.value)
    execution = run_to_end(manager, "down")
    assert statuses(manager, execution)["down"] is expected
    assert ran.is_set() == (expected is COMPLETED)


def test_none_failed_runs_past_a_skip_that_stops_all_success(engine: Engine) -> None:
    manager = engine.manager
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


def test_cancel_execution_stops_the_running_task_and_nothing_else_starts(engine: Engine) -> None:
    manager = engine.manager
    started, stopped, ran = engine.new_flag(), engine.new_flag(), engine.new_flag()
    slow = manager.register_task("slow", cooperative, started, stopped)
    manager.register_task("next", mark, ran, dependencies=[slow])
    manager.register_task("cleanup", mark, ran, dependencies=["next"], trigger_rule="all_done")
    (execution,) = manager.execute_tasks(["cleanup"])
    assert started.wait(WAIT)
    # A cluster's worker tells the client of a start by a message of its own.
    wait_until(lambda: manager.get_task_status("slow") is TaskStatus.RUNNING, "slow to run")
    assert manager.cancel_execution(execution)
    assert manager.wait_for_execution(execution, timeout=WAIT)
    assert statuses(manager, execution) == {
        "slow": CANCELLED,
        "next": CANCELLED,
        "cleanup": CANCELLED,
    }
    assert stopped.wait(WAIT)
    assert not ran.is_set()
    assert manager.get_execution_status(execution).status is CANCELLED
    assert not manager.cancel_execution(execution)
    recorded = {r.task_name: r.status for r in manager.get_task_history(execution_id=execution)}
    assert recorded == {"slow": CANCELLED, "next": CANCELLED, "cleanup": CANCELLED}


def test_cancel_one_task_fails_its_dependents_but_all_done_still_runs(engine: Engine) -> None:
    manager = engine.manager
    gate, ran_second, ran_report = engine.new_flag(), engine.new_flag(), engine.new_flag()
    first = manager.register_task("first", gated, gate)
    manager.register_task("second", mark, ran_second, dependencies=[first])
    manager.register_task("third", ok, dependencies=["second"])
    manager.register_task(
        "report", mark, ran_report, dependencies=["second"], trigger_rule="all_done"
    )
    (execution,) = manager.execute_tasks(["third", "report"])
    assert manager.cancel_task("second")
    gate.set()
    assert manager.wait_for_execution(execution, timeout=WAIT)
    assert statuses(manager, execution) == {
        "first": COMPLETED,
        "second": CANCELLED,
        "third": UPSTREAM_FAILED,
        "report": COMPLETED,
    }
    assert ran_report.is_set() and not ran_second.is_set()
    assert not manager.cancel_task("second")


def test_a_disabled_dependency_is_skipped_and_a_disabled_target_refused(
    manager: TaskManager,
) -> None:
    ran = threading.Event()
    off = manager.register_task("off", ran.set, enabled=False)
    manager.register_task("on", int, dependencies=[off])
    execution = run_to_end(manager, "on")
    assert statuses(manager, execution) == {"off": SKIPPED, "on": SKIPPED}
    assert not ran.is_set()
    with pytest.raises(ValueError, match="'off' are disabled"):
        manager.execute_task(off)


# -- results passing ---------------------------------------------------------------------


def test_results_reach_dependents_and_a_shared_upstream_runs_once(manager: TaskManager) -> None:
    calls: list[str] = []

    def source_value() -> int:
        calls.append("source")
        return 21

    source = manager.register_task("source", source_value)
    manager.register_task(
        "double", lambda up: up["source"] * 2, dependencies=[source], results_param="up"
    )
    manager.register_task(
        "context", lambda: dict(current_task().upstream_results), dependencies=[source]
    )
    manager.register_task(
        "both",
        lambda results: (results["double"], results["context"]),
        dependencies=["double", "context"],
        results_param="results",
    )
    execution = run_to_end(manager, "both")
    assert manager.get_execution_status(execution).results["both"] == (42, {"source": 21})
    assert calls == ["source"]


def test_arguments_and_keywords_reach_the_function(manager: TaskManager) -> None:
    def scale(value: int, *, factor: int, suffix: str) -> str:
        return f"{value * factor}{suffix}"

    task = manager.register_task("scale", scale, 4, factor=3, suffix="!")
    execution = run_to_end(manager, task)
    assert manager.get_execution_status(execution).results == {"scale": "12!"}


# -- priority inheritance -------------------------------------------------------------------


def test_upstreams_of_a_critical_task_overtake_queued_low_work() -> None:
    pool = ThreadPoolManager(min_workers=1, max_workers=1)
    pool.start()
    try:
        with TaskManager(thread_pool=pool) as manager:
            log = Log()
            gate = threading.Event()
            started = threading.Event()

            def blocker() -> None:
                started.set()
                assert gate.wait(WAIT)

            manager.register_task("blocker", blocker, priority=TaskPriority.LOW)
            for i in range(5):
                manager.register_task(f"low{i}", log.task(f"low{i}"), priority=TaskPriority.LOW)
            manager.register_task("fetch", log.task("fetch"), priority=TaskPriority.LOW)
            manager.register_task(
                "urgent",
                log.task("urgent"),
                dependencies=["fetch"],
                priority=TaskPriority.CRITICAL,
            )
            blocked = manager.execute_task("blocker")
            assert started.wait(WAIT)  # the only worker is now busy
            lows = [manager.execute_task(f"low{i}") for i in range(5)]
            urgent = manager.execute_task("urgent")
            gate.set()
            for execution in [blocked, *lows, urgent]:
                assert manager.wait_for_execution(execution, timeout=WAIT)
            assert log.entries[:2] == ["fetch", "urgent"]
            assert (
                manager.get_execution_status(urgent)
                .tasks[manager.get_task("fetch").task_id]
                .priority
                == TaskPriority.CRITICAL
            )
    finally:
        pool.stop(timeout=WAIT)


# -- stopping ------------------------------------------------------------------------------


def test_stop_with_an_execution_in_flight_is_clean(pool: ThreadPoolManager) -> None:
    started = threading.Event()
    manager = TaskManager(thread_pool=pool)
    manager.start()

    def long_job() -> None:
        started.set()
        if current_task().wait_cancelled(WAIT):
            raise TaskCancelled("asked to stop")

    manager.register_task("long", long_job)
    manager.register_task("after", int, dependencies=["long"])
    execution = manager.execute_task("after")
    assert started.wait(WAIT)
    manager.stop(wait_for_tasks=False, timeout=WAIT)
    assert manager.wait_for_execution(execution, timeout=0)
    assert statuses(manager, execution) == {"long": CANCELLED, "after": CANCELLED}
    with pytest.raises(RuntimeError, match="stopped"):
        manager.execute_task("after")
    with pytest.raises(RuntimeError, match="cannot be started again"):
        manager.start()


def test_stop_waits_for_executions_by_default(pool: ThreadPoolManager, tmp_path: Path) -> None:
    gate = threading.Event()
    manager = TaskManager(thread_pool=pool, history=tmp_path / "h.db")
    manager.start()
    manager.register_task("job", lambda: gate.wait(WAIT) and "done")
    execution = manager.execute_task("job")
    stopper = threading.Thread(target=manager.stop)
    stopper.start()
    assert not manager.wait_for_execution(execution, timeout=0)
    gate.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert manager.get_execution_status(execution).results == {"job": "done"}
    rows = sqlite3.connect(tmp_path / "h.db").execute("SELECT status FROM task_runs").fetchall()
    assert rows == [("completed",)]


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_executions_of_overlapping_graphs_are_independent(
    manager: TaskManager,
) -> None:
    # Both executions' copies of "shared" must be running at once to pass the barrier.
    barrier = threading.Barrier(2, timeout=WAIT)
    counter = iter(range(100))
    lock = threading.Lock()

    def shared() -> int:
        with lock:
            value = next(counter)
        barrier.wait()
        return value

    manager.register_task("shared", shared)
    manager.register_task(
        "left", lambda up: ("left", up["shared"]), dependencies=["shared"], results_param="up"
    )
    manager.register_task(
        "right", lambda up: ("right", up["shared"]), dependencies=["shared"], results_param="up"
    )
    executions: list[str] = []
    threads = [
        threading.Thread(target=lambda t=t: executions.append(manager.execute_task(t)))
        for t in ("left", "right")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(executions) == 2
    for execution in executions:
        assert manager.wait_for_execution(execution, timeout=WAIT)
    results = [manager.get_execution_status(e).results for e in executions]
    assert sorted(r["shared"] for r in results) == [0, 1]
    for result in results:
        (name,) = set(result) - {"shared"}
        assert result[name] == (name, result["shared"])


# -- history ------------------------------------------------------------------------------------


def test_history_survives_a_restart(pool: ThreadPoolManager, tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with TaskManager(thread_pool=pool, history=path) as first:
        a = first.register_task("a", int, tags=("nightly",))
        first.register_task("b", fail("broken"), dependencies=[a])
        (execution,) = first.execute_tasks(["b"], wait=True)
    with TaskManager(thread_pool=pool, history=str(path)) as second:
        runs = second.get_task_history()
        assert {(r.task_name, r.status) for r in runs} == {("a", COMPLETED), ("b", FAILED)}
        assert second.get_task_history(a)[0].tags == ("nightly",)
        assert [r.task_name for r in second.get_task_history(status="failed")] == ["b"]
        info = second.get_execution_status(execution)
        assert info.status is FAILED
        assert {run.name: run.status for run in info.tasks.values()} == {
            "a": COMPLETED,
            "b": FAILED,
        }
        assert second.wait_for_execution(execution, timeout=0)
        with pytest.raises(UnknownExecutionError):
            second.get_execution_status("no-such-execution")


def test_history_pages_and_filters_by_time(manager: TaskManager) -> None:
    task = manager.register_task("tick", int)
    for _ in range(5):
        run_to_end(manager, task)
    everything = manager.get_task_history(task, limit=None)
    assert len(everything) == 5
    first_page = manager.get_task_history(task, limit=2)
    second_page = manager.get_task_history(task, limit=2, offset=2)
    assert first_page + second_page == everything[:4]
    oldest = everything[-1].finished_at
    assert manager.get_task_history(task, until=oldest) == []
    assert manager.get_task_history(task, since=oldest, limit=None) == everything


def test_a_failing_history_never_fails_an_execution(
    pool: ThreadPoolManager, tmp_path: Path
) -> None:
    path = tmp_path / "h.db"
    history = TaskHistory(path, lock_timeout=0.01)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # no write succeeds while this is held
    try:
        with TaskManager(thread_pool=pool, history=history) as manager:
            manager.register_task("a", lambda: "fine")
            execution = run_to_end(manager, "a")
            assert manager.get_execution_status(execution).results == {"a": "fine"}
            assert history.stats().written == 0  # the records wait for the lock
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    try:
        assert history.flush(timeout=WAIT)
        assert history.stats() == (3, 0, 0)  # the run, the execution's start and end
        assert [r.task_name for r in history.query_runs(execution_id=execution)] == ["a"]
    finally:
        history.close()


# -- status and registry --------------------------------------------------------------------------


def test_task_status_follows_its_runs(manager: TaskManager) -> None:
    gate = threading.Event()
    started = threading.Event()

    def job() -> bool:
        started.set()
        return gate.wait(WAIT)

    task = manager.register_task("job", job)
    assert manager.get_task_status(task) is TaskStatus.PENDING
    execution = manager.execute_task(task)
    assert started.wait(WAIT)
    assert manager.get_task_status("job") is TaskStatus.RUNNING
    assert manager.get_execution_status(execution).status is TaskStatus.RUNNING
    gate.set()
    assert manager.wait_for_execution(execution, timeout=WAIT)
    assert manager.get_task_status(task) is COMPLETED


def test_update_applies_to_later_executions(manager: TaskManager) -> None:
    task = manager.register_task("job", lambda: "old", tags=("a",))
    first = run_to_end(manager, task)
    updated = manager.update_task(task, func=lambda: "new", name="renamed", priority=3)
    assert (updated.name, updated.priority, updated.tags) == ("renamed", 3, ("a",))
    second = run_to_end(manager, "renamed")
    assert manager.get_execution_status(first).results == {"job": "old"}
    assert manager.get_execution_status(second).results == {"renamed": "new"}
    with pytest.raises(UnknownTaskError):
        manager.get_task("job")


def test_unregister(manager: TaskManager) -> None:
    a = manager.register_task("a", int)
    b = manager.register_task("b", int, dependencies=[a])
    with pytest.raises(TaskDependencyError, match="'a' is a dependency of 'b'"):
        manager.unregister_task(a)
    manager.unregister_task(b)
    manager.unregister_task("a")
    assert manager.list_tasks() == []
    with pytest.raises(UnknownTaskError, match="no task has id or name 'a'"):
        manager.unregister_task("a")


def test_priority_names_as_in_the_workflow_file(manager: TaskManager) -> None:
    task = manager.register_task("a", int, priority="high")
    assert manager.get_task(task).priority == TaskPriority.HIGH
    assert manager.update_task(task, priority="LOW").priority == TaskPriority.LOW


def test_get_execution_and_its_seed_name_return_the_same_snapshot(manager: TaskManager) -> None:
    execution = run_to_end(manager, manager.register_task("a", lambda: 42))
    info = manager.get_execution(execution)
    assert info == manager.get_execution_status(execution)
    assert (info.status, info.results) == (COMPLETED, {"a": 42})
    with pytest.raises(UnknownExecutionError, match="no execution has id 'nope'"):
        manager.get_execution("nope")


def test_list_tasks_by_tag(manager: TaskManager) -> None:
    manager.register_task("a", int, tags=["etl"])
    manager.register_task("b", int, tags="etl")
    manager.register_task("c", int)
    assert [t.name for t in manager.list_tasks(tag="etl")] == ["a", "b"]
    assert [t.name for t in manager.list_tasks()] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"func": 3}, TypeError, "must be callable"),
        ({"name": ""}, ValueError, "non-empty"),
        ({"priority": 1.5}, TypeError, "priority must be one of"),
        ({"priority": "urgent"}, ValueError, "unknown priority 'urgent'"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"retry_delay": -0.5}, ValueError, "retry_delay"),
        ({"retry": 3}, TypeError, "must be a RetryPolicy"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"trigger_rule": "sometimes"}, ValueError, "unknown trigger_rule 'sometimes'"),
        ({"results_param": "not a name"}, ValueError, "results_param"),
        ({"tags": [1]}, TypeError, "tags"),
        ({"schedule": "61 * * * *"}, ValueError, "minute"),
    ],
)
def test_bad_registrations_raise_at_the_call(
    manager: TaskManager, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"name": "t", "func": int, **kwargs}
    with pytest.raises(error, match=message):
        manager.register_task(**arguments)
    assert manager.list_tasks() == []


def test_duplicate_names_and_unknown_ids_are_refused(manager: TaskManager) -> None:
    manager.register_task("a", int)
    with pytest.raises(ValueError, match="already registered"):
        manager.register_task("a", int)
    with pytest.raises(UnknownTaskError):
        manager.execute_task("missing")
    with pytest.raises(UnknownTaskError):
        manager.get_task_status("missing")
    with pytest.raises(UnknownExecutionError):
        manager.wait_for_execution("missing", timeout=0)
    with pytest.raises(ValueError, match="no tasks"):
        manager.execute_tasks([])
    with pytest.raises(TypeError, match="cannot change"):
        manager.update_task("a", color="red")


def test_executing_before_start_is_refused(pool: ThreadPoolManager) -> None:
    manager = TaskManager(thread_pool=pool)
    manager.register_task("a", int)
    with pytest.raises(RuntimeError, match="call start"):
        manager.execute_task("a")
    manager.stop()


def test_the_manager_owns_the_pool_it_creates() -> None:
    with TaskManager() as manager:
        manager.register_task("a", lambda: "x")
        execution = run_to_end(manager, "a")
        assert manager.get_execution_status(execution).results == {"a": "x"}
    with pytest.raises(RuntimeError):
        manager.thread_pool.submit(int)


# -- scheduling -------------------------------------------------------------------------------


def test_failing_scheduled_runs_keep_the_schedule_alive(pool: ThreadPoolManager) -> None:
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=timezone.utc))
    runs = threading.Semaphore(0)

    def failing() -> None:
        runs.release()
        raise RuntimeError("scheduled failure")

    with TaskManager(thread_pool=pool, clock=clock) as manager:
        task = manager.register_task("every10", failing, schedule=every(10).seconds)
        for _ in range(3):
            assert clock.wait_for_sleepers(1, timeout=WAIT)
            clock.advance(10)
            assert runs.acquire(timeout=WAIT)
            # The run's execution was recorded when it started; let it end before
            # the clock moves again (one instance at a time, by default).
            latest = manager.history.query_executions(limit=1)[0]
            assert manager.wait_for_execution(latest.execution_id, timeout=WAIT)
            assert manager.get_execution_status(latest.execution_id).status is FAILED
        history = manager.get_task_history(task, limit=None)
        assert [r.status for r in history] == [FAILED] * 3
        executions = manager.history.query_executions(limit=None)
        assert [e.trigger for e in executions] == ["schedule"] * 3


# --------------------------------------------- regressions from the review


def test_a_cancel_arriving_before_the_start_is_not_undone_by_it() -> None:
    # Fault injection: hold the starting thread right after the execution
    # became visible (while its start record is written) until a cancel of
    # its root task has been applied.
    ran: list[int] = []
    manager = TaskManager()
    manager.start()
    try:
        x = manager.register_task("x", lambda: ran.append(1))
        y = manager.register_task("y", lambda: "y", dependencies=[x])
        history = manager.history
        record_execution = history.record_execution
        in_window = threading.Event()
        cancelled = threading.Event()

        def held_record_execution(record: Any) -> None:
            if record.finished_at is None and threading.current_thread().name == "starter":
                in_window.set()
                assert cancelled.wait(10)
            record_execution(record)

        history.record_execution = held_record_execution  # type: ignore[method-assign]
        result: dict[str, Any] = {}
        starter = threading.Thread(
            target=lambda: result.setdefault("id", manager.execute_task(y)), name="starter"
        )
        starter.start()
        assert in_window.wait(10)
        result["cancelled"] = manager.cancel_task(x)
        cancelled.set()
        starter.join(10)
        assert manager.wait_for_execution(result["id"], timeout=10)
        info = manager.get_execution_status(result["id"])
        statuses = {run.name: run.status for run in info.tasks.values()}
        assert result["cancelled"] is True
        assert statuses["x"] is TaskStatus.CANCELLED and not ran
        assert statuses["y"] is TaskStatus.UPSTREAM_FAILED
        history.flush()
        rows = manager.get_task_history(execution_id=result["id"])
        assert sorted(r.task_name for r in rows) == ["x", "y"]  # one row each
    finally:
        manager.stop(timeout=10)


def test_a_bounded_blocking_pool_does_not_deadlock_an_execution() -> None:
    # The drainer runs on a worker; waiting there for a queue slot that only
    # a worker can free would hang forever.
    pool = ThreadPoolManager(min_workers=1, max_workers=1, max_queue_size=1).start()
    manager = TaskManager(thread_pool=pool)
    manager.start()
    try:
        root = manager.register_task("root", lambda: 0)
        kids = [manager.register_task(f"k{i}", lambda: 1, dependencies=[root]) for i in range(3)]
        (execution_id,) = manager.execute_tasks(kids)
        assert manager.wait_for_execution(execution_id, timeout=10)
        assert manager.get_execution_status(execution_id).status is TaskStatus.COMPLETED
    finally:
        manager.stop(timeout=10)
        pool.stop(timeout=10)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_an_error_whose_str_raises_ends_the_task_not_the_engine() -> None:
    def bad() -> None:
        raise _Unprintable()

    with TaskManager() as manager:
        first = manager.register_task("bad", bad)
        after = manager.register_task("after", int, dependencies=[first], trigger_rule="all_done")
        (execution,) = manager.execute_tasks([after])
        assert manager.wait_for_execution(execution, timeout=10)
        info = manager.get_execution_status(execution)
        assert info.status is TaskStatus.FAILED
        assert info.tasks[first].status is TaskStatus.FAILED
        assert info.tasks[after].status is TaskStatus.COMPLETED
        manager.history.flush(timeout=10)
        (record,) = manager.get_task_history(first)
        assert record.error_type == "_Unprintable"
        assert "str() raised RuntimeError" in (record.error_message or "")
        assert "raise _Unprintable()" in (record.traceback or "")


def test_a_deadline_on_a_full_blocking_pool_never_blocks_the_timer() -> None:
    # A one-worker pool with a one-slot queue, both taken.  A graph node's
    # deadline fires while the node is queued; its dependent is handed to the
    # pool, never through the pool's admission, so the timer thread does not
    # wait for a slot: a deadline of another pool still fires meanwhile.
    import threadloom

    pool = ThreadPoolManager(min_workers=1, max_workers=1, max_queue_size=1).start()
    other = threadloom.ThreadPoolExecutor(1)
    try:
        with TaskManager(thread_pool=pool) as manager:
            release, busy = threading.Event(), threading.Event()

            def block() -> None:
                busy.set()
                release.wait(10)

            blocker = pool.submit(block)
            assert busy.wait(10)
            filler = pool.submit(int)
            stuck = manager.register_task("stuck", int, timeout=0.05)
            after = manager.register_task(
                "after", int, dependencies=[stuck], trigger_rule="all_done"
            )
            (execution,) = manager.execute_tasks([after])
            probe = other.options(timeout=0.05).submit(release.wait, 10)
            with pytest.raises(TimeoutError):
                probe.result(10)
            assert probe.status is TaskStatus.TIMED_OUT
            assert manager.get_task_status(stuck) is TaskStatus.TIMED_OUT
            release.set()
            assert manager.wait_for_execution(execution, timeout=10)
            info = manager.get_execution_status(execution)
            assert info.tasks[stuck].status is TaskStatus.TIMED_OUT
            assert info.tasks[after].status is TaskStatus.COMPLETED
            assert pool.get_task_result(blocker, 10) is None
            assert pool.get_task_result(filler, 10) == 0
    finally:
        other.shutdown()
        pool.stop()
