"""ThreadPoolManager: the seed's API, each defect of the original, and every capability."""

from __future__ import annotations

import concurrent.futures as cf
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import threadloom
from threadloom import (
    QueueFull,
    ResourceMonitor,
    RetryPolicy,
    TaskNotFinished,
    TaskPriority,
    TaskStatus,
    ThreadPoolManager,
    UnknownTaskError,
    current_task,
)

from .conftest import TIMEOUT
from .test_resource_monitor import ScriptedSampler, sample

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pool() -> Iterator[ThreadPoolManager]:
    manager = ThreadPoolManager(min_workers=1, max_workers=1, adjust_interval=0.05)
    manager.start()
    try:
        yield manager
    finally:
        manager.stop(wait_for_tasks=False, timeout=TIMEOUT)


class Gate:
    """Occupies a worker until released; signals when it has started."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> str:
        self.started.set()
        if not self.release.wait(TIMEOUT):
            raise RuntimeError("gate never released")
        return "gate"


def block_worker(pool: ThreadPoolManager) -> Gate:
    gate = Gate()
    pool.submit(gate)
    assert gate.started.wait(TIMEOUT)
    return gate


def wait_until(predicate: Any, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# ------------------------------------------------ the original's defects


def test_equal_priorities_run_in_submission_order(pool: ThreadPoolManager) -> None:
    gate = block_worker(pool)
    order: list[int] = []
    ids = [pool.submit(order.append, i) for i in range(200)]
    gate.release.set()
    assert pool.wait_all(TIMEOUT)
    assert order == list(range(200))
    assert all(pool.get_task_status(i) is TaskStatus.COMPLETED for i in ids)


def test_higher_priority_runs_first_and_any_int_is_a_priority(pool: ThreadPoolManager) -> None:
    gate = block_worker(pool)
    order: list[str] = []
    for i in range(20):
        pool.submit(order.append, f"low{i}", priority=TaskPriority.LOW)
    pool.submit(order.append, "critical", priority=TaskPriority.CRITICAL)
    pool.submit(order.append, "ten", priority=10)
    gate.release.set()
    assert pool.wait_all(TIMEOUT)
    assert order[:2] == ["ten", "critical"]
    assert order[2:] == [f"low{i}" for i in range(20)]


def test_priority_names_are_priorities_on_every_submit(pool: ThreadPoolManager) -> None:
    # A name is not an int, so submit() leaves the core's fast path for the
    # slow one, which parses it as the workflow file and options() do.
    gate = block_worker(pool)
    order: list[str] = []
    low = pool.submit(order.append, "low", priority="LOW")
    high = pool.submit(order.append, "high", priority="high")
    critical = pool.submit_call(order.append, ("critical",), priority="Critical")
    gate.release.set()
    assert pool.wait_all(TIMEOUT)
    assert order == ["critical", "high", "low"]
    assert [pool.get_task_info(t).priority for t in (low, high, critical)] == [0, 2, 3]


def test_a_retry_never_sleeps_in_a_worker(pool: ThreadPoolManager) -> None:
    attempts: list[float] = []

    def flaky() -> None:
        attempts.append(time.monotonic())
        raise ConnectionError("down")

    # One worker, a retry delay far longer than the test: if the retry slept
    # in the worker, the next task could not run.
    flaky_id = pool.submit(flaky, max_retries=3, retry_delay=60.0)
    assert wait_until(lambda: pool.get_task_status(flaky_id) is TaskStatus.RETRYING)
    assert pool.get_task_result(pool.submit(pow, 2, 5), timeout=TIMEOUT) == 32
    assert len(attempts) == 1
    assert pool.get_task_info(flaky_id).attempts == 1
    assert pool.cancel_task(flaky_id) is True
    assert pool.get_task_status(flaky_id) is TaskStatus.CANCELLED
    with pytest.raises(cf.CancelledError):
        pool.get_task_result(flaky_id, timeout=TIMEOUT)


def test_retries_resolve_the_future_only_after_the_last_attempt(pool: ThreadPoolManager) -> None:
    calls: list[int] = []

    def succeed_third_time() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError(f"attempt {len(calls)}")
        return "ok"

    task_id = pool.submit(succeed_third_time, max_retries=2, retry_delay=0.01)
    assert pool.wait_for_task(task_id, timeout=TIMEOUT)
    assert pool.get_task_result(task_id) == "ok"
    assert pool.get_task_info(task_id).attempts == 3
    assert pool.get_metrics()["tasks_retried"] == 2

    def always_fails() -> None:
        raise ValueError("never")

    failing = pool.submit(always_fails, max_retries=2, retry_delay=0.01)
    future = pool.get_future(failing)
    with pytest.raises(ValueError, match="never"):
        future.result(TIMEOUT)
    assert pool.get_task_info(failing).attempts == 3
    assert pool.get_task_status(failing) is TaskStatus.FAILED


def test_retry_policy_backoff_and_retry_on() -> None:
    policy = RetryPolicy(max_retries=5, delay=0.5, backoff=2.0, max_delay=3.0)
    assert [policy.delay_for(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    only_io = RetryPolicy(max_retries=1, retry_on=(OSError,))
    assert only_io.should_retry(ConnectionError(), 1)
    assert not only_io.should_retry(ValueError(), 1)
    assert not only_io.should_retry(OSError(), 2)
    jittery = RetryPolicy(max_retries=1, delay=1.0, jitter=0.5)
    assert all(1.0 <= jittery.delay_for(1) <= 1.5 for _ in range(50))
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff=0.5)
    with pytest.raises(TypeError, match="retry_on"):
        RetryPolicy(retry_on=("ValueError",))  # type: ignore[arg-type]


def test_retry_on_filters_which_errors_are_retried(pool: ThreadPoolManager) -> None:
    calls: list[int] = []

    def wrong_kind() -> None:
        calls.append(1)
        raise KeyError("no retry for this")

    task_id = pool.submit_call(
        wrong_kind, retry=RetryPolicy(max_retries=3, delay=0.01, retry_on=(OSError,))
    )
    with pytest.raises(KeyError):
        pool.get_task_result(task_id, timeout=TIMEOUT)
    assert calls == [1]


def test_metrics_are_safe_to_read_under_load() -> None:
    manager = ThreadPoolManager(min_workers=2, max_workers=4, keep_finished=100).start()
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_metrics() -> None:
        while not stop.is_set():
            try:
                metrics = manager.get_metrics()
                assert metrics["tasks_submitted"] >= metrics["tasks_completed"]
                manager.list_tasks()
            except BaseException as exc:  # pragma: no cover - the failure being guarded
                errors.append(exc)
                return

    readers = [threading.Thread(target=read_metrics) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for i in range(5000):
            manager.submit(pow, i, 2)
        assert manager.wait_all(TIMEOUT)
    finally:
        stop.set()
        for reader in readers:
            reader.join(TIMEOUT)
        manager.stop()
    assert not errors
    metrics = manager.get_metrics()
    assert metrics["tasks_submitted"] == metrics["tasks_completed"] == 5000


def test_stop_waits_for_running_tasks_and_restart_adds_no_threads() -> None:
    manager = ThreadPoolManager(min_workers=2, max_workers=3).start()
    gate = Gate()
    task_id = manager.submit(gate)
    assert gate.started.wait(TIMEOUT)
    stopped = threading.Event()

    def stop_then_signal() -> None:
        manager.stop()
        stopped.set()

    stopper = threading.Thread(target=stop_then_signal)
    stopper.start()
    # stop() must still be waiting: the task holds its worker.
    assert not stopped.wait(0.05)
    assert manager.get_task_status(task_id) is TaskStatus.RUNNING
    gate.release.set()
    assert stopped.wait(TIMEOUT)
    stopper.join(TIMEOUT)
    assert manager.get_task_status(task_id) is TaskStatus.COMPLETED
    assert manager.get_metrics()["worker_count"] == 0
    with pytest.raises(RuntimeError, match="not started"):
        manager.submit(pow, 1, 1)

    before = {t for t in threading.enumerate() if t.name.startswith("threadloom-pool")}
    manager.start()
    try:
        assert manager.get_task_result(manager.submit(pow, 2, 2), timeout=TIMEOUT) == 4
        metrics = manager.get_metrics()
        assert 0 <= metrics["worker_count"] <= 3
        live = [t for t in threading.enumerate() if t.name.startswith("threadloom-pool_")]
        assert len(live) <= 3
        assert not before & set(live)
    finally:
        manager.stop()
    assert manager.get_metrics()["worker_count"] == 0


def test_base_exceptions_do_not_kill_workers(pool: ThreadPoolManager) -> None:
    def exit_now() -> None:
        raise SystemExit(2)

    def interrupt() -> None:
        raise KeyboardInterrupt

    first = pool.submit(exit_now)
    second = pool.submit(interrupt)
    assert isinstance(pool.get_future(first).exception(TIMEOUT), SystemExit)
    assert isinstance(pool.get_future(second).exception(TIMEOUT), KeyboardInterrupt)
    assert pool.get_task_status(first) is TaskStatus.FAILED
    assert pool.get_task_result(pool.submit(pow, 3, 2), timeout=TIMEOUT) == 9
    assert pool.get_metrics()["worker_count"] == 1


def test_finished_records_are_pruned() -> None:
    manager = ThreadPoolManager(min_workers=1, max_workers=2, keep_finished=10).start()
    try:
        ids = [manager.submit(pow, i, 2) for i in range(100)]
        assert manager.wait_all(TIMEOUT)
        assert manager.get_metrics()["tasks_tracked"] == 10
        forgotten = 0
        for task_id in ids:
            try:
                manager.get_task_status(task_id)
            except UnknownTaskError:
                forgotten += 1
        assert forgotten == 90
    finally:
        manager.stop()


def test_results_distinguish_unknown_running_none_and_errors(pool: ThreadPoolManager) -> None:
    with pytest.raises(UnknownTaskError, match="unknown task id"):
        pool.get_task_result("task-nope")
    with pytest.raises(KeyError):  # UnknownTaskError is a KeyError
        pool.get_task_status("task-nope")
    gate = Gate()
    running = pool.submit(gate)
    assert gate.started.wait(TIMEOUT)
    with pytest.raises(cf.TimeoutError):
        pool.get_task_result(running, timeout=0.01)
    with pytest.raises(TaskNotFinished):
        pool.get_task_error(running)
    assert not pool.wait_for_task(running, timeout=0.01)
    gate.release.set()
    returns_none = pool.submit(lambda: None)
    assert pool.wait_for_task(returns_none, timeout=TIMEOUT)
    assert pool.get_task_result(returns_none) is None
    assert pool.get_task_error(returns_none) is None
    failing = pool.submit(int, "x")
    assert pool.wait_for_task(failing, timeout=TIMEOUT)
    assert isinstance(pool.get_task_error(failing), ValueError)


def test_the_pool_grows_and_shrinks() -> None:
    manager = ThreadPoolManager(min_workers=1, max_workers=4, idle_timeout=0.05).start()
    try:
        assert wait_until(lambda: manager.get_metrics()["worker_count"] == 1)
        gates = [Gate() for _ in range(4)]
        for gate in gates:
            manager.submit(gate)
        for gate in gates:
            assert gate.started.wait(TIMEOUT)
        assert manager.get_metrics()["worker_count"] == 4
        for gate in gates:
            gate.release.set()
        assert manager.wait_all(TIMEOUT)
        assert wait_until(lambda: manager.get_metrics()["worker_count"] == 1)
    finally:
        manager.stop()


# ------------------------------------------------------------- capabilities


def test_cancel_queued_task_at_once(pool: ThreadPoolManager) -> None:
    gate = block_worker(pool)
    queued = pool.submit(pow, 2, 2)
    assert pool.get_metrics()["queue_size"] == 1
    assert pool.cancel_task(queued) is True
    assert pool.get_task_status(queued) is TaskStatus.CANCELLED
    assert pool.get_future(queued).cancelled()
    # The cancelled entry no longer counts as queued, and wait() sees it done.
    assert pool.get_metrics()["queue_size"] == 0
    done, _ = cf.wait([pool.get_future(queued)], timeout=TIMEOUT)
    assert done
    gate.release.set()
    assert pool.wait_all(TIMEOUT)
    assert pool.get_metrics()["tasks_cancelled"] == 1


def test_cancel_running_task_is_cooperative(pool: ThreadPoolManager) -> None:
    started = threading.Event()

    def cooperative() -> str:
        started.set()
        context = current_task()
        context.wait_cancelled(TIMEOUT)
        context.check_cancelled()
        return "ignored cancellation"

    task_id = pool.submit(cooperative)
    assert started.wait(TIMEOUT)
    assert pool.cancel_task(task_id) is False  # running: only a request
    with pytest.raises(cf.CancelledError):
        pool.get_task_result(task_id, timeout=TIMEOUT)
    assert pool.get_task_status(task_id) is TaskStatus.CANCELLED


def test_current_task_outside_a_task_raises() -> None:
    with pytest.raises(RuntimeError, match="outside a managed"):
        current_task()


def test_current_task_knows_name_and_attempt(pool: ThreadPoolManager) -> None:
    seen: list[tuple[str | None, int]] = []

    def remember() -> None:
        context = current_task()
        seen.append((context.name, context.attempt))
        if context.attempt == 1:
            raise OSError("first time")

    task_id = pool.submit_call(remember, name="fetch", retry=RetryPolicy(1, delay=0.01))
    pool.get_task_result(task_id, timeout=TIMEOUT)
    assert seen == [("fetch", 1), ("fetch", 2)]


def test_deadline_times_the_task_out(pool: ThreadPoolManager) -> None:
    observed = threading.Event()

    def slow() -> None:
        if current_task().wait_cancelled(TIMEOUT):
            observed.set()

    task_id = pool.submit_call(slow, timeout=0.05)
    with pytest.raises(cf.TimeoutError, match="did not finish within"):
        pool.get_task_result(task_id, timeout=TIMEOUT)
    assert pool.get_task_status(task_id) is TaskStatus.TIMED_OUT
    assert observed.wait(TIMEOUT)  # the task was asked to stop
    assert pool.get_metrics()["tasks_timed_out"] == 1
    # The worker is free again once the task honoured the request.
    assert pool.get_task_result(pool.submit(pow, 2, 3), timeout=TIMEOUT) == 8


def test_deadline_of_a_queued_task(pool: ThreadPoolManager) -> None:
    gate = block_worker(pool)
    queued = pool.submit_call(pow, (2, 2), timeout=0.05)
    with pytest.raises(cf.TimeoutError):
        pool.get_task_result(queued, timeout=TIMEOUT)
    assert pool.get_metrics()["queue_size"] == 0
    gate.release.set()
    assert pool.wait_all(TIMEOUT)
    assert pool.get_task_status(queued) is TaskStatus.TIMED_OUT


def test_submit_reserves_only_its_three_keywords(pool: ThreadPoolManager) -> None:
    def keywords(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    task_id = pool.submit(keywords, name="n", timeout=3, retry="r")
    assert pool.get_task_result(task_id, timeout=TIMEOUT) == {
        "name": "n",
        "timeout": 3,
        "retry": "r",
    }
    task_id = pool.submit_call(keywords, kwargs={"priority": 1, "max_retries": 2})
    assert pool.get_task_result(task_id, timeout=TIMEOUT) == {"priority": 1, "max_retries": 2}


def test_backpressure_raise_and_block() -> None:
    manager = ThreadPoolManager(
        min_workers=1, max_workers=1, max_queue_size=2, queue_full_policy="raise"
    ).start()
    try:
        gate = block_worker(manager)
        manager.submit(pow, 1, 1)
        manager.submit(pow, 2, 1)
        with pytest.raises(QueueFull, match="queue is full"):
            manager.submit(pow, 3, 1)
        assert manager.get_metrics()["tasks_rejected"] == 1
        gate.release.set()
        assert manager.wait_all(TIMEOUT)
        manager.submit(pow, 4, 1)  # room again
    finally:
        manager.stop()

    blocking = ThreadPoolManager(
        min_workers=1,
        max_workers=1,
        max_queue_size=1,
        queue_full_policy="block",
        queue_full_timeout=0.05,
    ).start()
    try:
        gate = block_worker(blocking)
        blocking.submit(pow, 1, 1)
        with pytest.raises(QueueFull, match="stayed full"):
            blocking.submit(pow, 2, 1)
        # A blocked submit proceeds as soon as a task leaves the queue.
        blocking.queue_full_timeout = TIMEOUT
        threading.Timer(0.02, gate.release.set).start()
        late = blocking.submit(pow, 3, 2)
        assert blocking.get_task_result(late, timeout=TIMEOUT) == 9
    finally:
        blocking.stop()


def test_backpressure_caller_runs() -> None:
    manager = ThreadPoolManager(
        min_workers=1, max_workers=1, max_queue_size=1, queue_full_policy="caller_runs"
    ).start()
    try:
        gate = block_worker(manager)
        manager.submit(pow, 1, 1)
        ran_here = manager.submit(lambda: threading.current_thread().name)
        assert manager.get_task_result(ran_here, timeout=0) == threading.current_thread().name
        gate.release.set()
    finally:
        manager.stop()


def test_resource_monitor_advice_bounds_the_pool_and_memory_pressure_shrinks_it() -> None:
    sampler = ScriptedSampler([sample(cpu_percent=10.0, memory_percent=20.0, cpu_count=2)])
    monitor = ResourceMonitor(check_interval=60.0, sampler=sampler)
    manager = ThreadPoolManager(min_workers=1, max_workers=8, resource_monitor=monitor)
    for _ in range(200):
        monitor.observe_task(wall_seconds=1.0, cpu_seconds=1.0)  # CPU-bound work
    cpu_bound_target = manager.target_worker_count()
    assert 1 <= cpu_bound_target <= 2  # no more threads than cores for GIL-bound work
    for _ in range(400):
        monitor.observe_task(wall_seconds=1.0, cpu_seconds=0.01)  # IO-bound work
    assert manager.target_worker_count() > cpu_bound_target
    sampler.samples = [sample(memory_percent=95.0, cpu_count=2)]
    monitor.sample_now()
    assert monitor.memory_pressure
    assert manager.target_worker_count() == 1


def test_tasks_report_their_cpu_and_wall_time_to_the_monitor() -> None:
    monitor = ResourceMonitor(check_interval=60.0, sampler=ScriptedSampler())
    with ThreadPoolManager(min_workers=1, max_workers=2, resource_monitor=monitor) as manager:
        for _ in range(5):
            manager.submit(sum, range(1000))
        assert manager.wait_all(TIMEOUT)
    assert monitor.tasks_observed == 5


def test_validation_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="min_workers"):
        ThreadPoolManager(min_workers=5, max_workers=2)
    with pytest.raises(ValueError, match="max_workers"):
        ThreadPoolManager(min_workers=0, max_workers=0)
    with pytest.raises(ValueError, match="queue_full_policy"):
        ThreadPoolManager(queue_full_policy="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_queue_size"):
        ThreadPoolManager(max_queue_size=0)
    with ThreadPoolManager(min_workers=1, max_workers=1) as manager:
        with pytest.raises(TypeError, match="callable"):
            manager.submit(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="priority must be one of"):
            manager.submit(pow, 1, 1, priority=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown priority 'urgent'"):
            manager.submit(pow, 1, 1, priority="urgent")
        with pytest.raises(ValueError, match="timeout"):
            manager.submit_call(pow, (1, 1), timeout=-1)


def test_stop_without_waiting_cancels_queued_and_asks_running_to_stop() -> None:
    manager = ThreadPoolManager(min_workers=1, max_workers=1).start()
    started = threading.Event()

    def cooperative() -> None:
        started.set()
        current_task().wait_cancelled(TIMEOUT)
        current_task().check_cancelled()

    running = manager.submit(cooperative)
    assert started.wait(TIMEOUT)
    queued = [manager.submit(pow, i, 2) for i in range(10)]
    assert manager.stop(wait_for_tasks=False, timeout=TIMEOUT)
    assert manager.get_task_status(running) is TaskStatus.CANCELLED
    assert all(manager.get_task_status(q) is TaskStatus.CANCELLED for q in queued)
    metrics = manager.get_metrics()
    assert metrics["tasks_cancelled"] == 11 and metrics["tasks_unfinished"] == 0


def test_stop_runs_tasks_waiting_to_retry() -> None:
    manager = ThreadPoolManager(min_workers=1, max_workers=1).start()
    calls: list[int] = []

    def fails_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("once")
        return "second"

    task_id = manager.submit(fails_once, max_retries=1, retry_delay=60.0)
    assert wait_until(lambda: manager.get_task_status(task_id) is TaskStatus.RETRYING)
    assert manager.stop(wait_for_tasks=True, timeout=TIMEOUT)
    assert manager.get_task_result(task_id, timeout=0) == "second"


def test_seed_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "thread_pool_manager_example.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Task result: Result from task 1" in result.stdout
    assert "'tasks_completed': 1" in result.stdout


# ------------------------------------------------------------------- stress

STRESS = """
import concurrent.futures as cf, random, sys, threading
import threadloom
from threadloom import ThreadPoolManager, TaskStatus, RetryPolicy, current_task

n = int(sys.argv[1])
rng = random.Random(7)
manager = ThreadPoolManager(min_workers=2, max_workers=4, keep_finished=n).start()
completions = {}
lock = threading.Lock()

def task(i, fail_times, slow):
    ctx = current_task()
    if slow:
        ctx.wait_cancelled(1.0)
        ctx.check_cancelled()
    if ctx.attempt <= fail_times:
        raise OSError(i)
    return i

ids = []
for i in range(n):
    r = rng.random()
    fail_times = 1 if r < 0.10 else (5 if r < 0.12 else 0)
    slow = rng.random() < 0.0005
    ids.append(manager.submit_call(
        task, (i, fail_times, slow), priority=rng.randrange(4),
        retry=RetryPolicy(2, delay=0.0005, backoff=1.0) if fail_times else None,
        timeout=0.01 if slow else None))
    if rng.random() < 0.05:
        manager.cancel_task(ids[-1 - rng.randrange(min(len(ids), 8))])

for i in ids:
    f = manager.get_future(i)
    f.add_done_callback(lambda f, i=i: completions.__setitem__(i, completions.get(i, 0) + 1))
assert manager.wait_all(120), "tasks never finished"
terminal = {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT}
statuses = {}
for i in ids:
    status = manager.get_task_status(i)
    assert status in terminal, (i, status)
    statuses[status] = statuses.get(status, 0) + 1
    assert manager.get_future(i).done()
assert all(completions.get(i) == 1 for i in ids), "a future resolved zero or several times"
m = manager.get_metrics()
assert m["tasks_submitted"] == n
assert m["tasks_completed"] == statuses.get(TaskStatus.COMPLETED, 0), (m, statuses)
assert m["tasks_failed"] == statuses.get(TaskStatus.FAILED, 0), (m, statuses)
assert m["tasks_cancelled"] == statuses.get(TaskStatus.CANCELLED, 0), (m, statuses)
assert m["tasks_timed_out"] == statuses.get(TaskStatus.TIMED_OUT, 0), (m, statuses)
assert n == m["tasks_completed"] + m["tasks_failed"] + m["tasks_cancelled"] + m["tasks_timed_out"]
assert m["queue_size"] == 0
manager.stop()
summary = {s.value: c for s, c in statuses.items()}
print("native" if threadloom.NATIVE else "python", summary, m["tasks_retried"])
"""


@pytest.mark.parametrize("pure_python", [False, True], ids=["native", "python"])
def test_stress_every_task_ends_once_and_counters_add_up(pure_python: bool) -> None:
    env = dict(os.environ)
    if pure_python:
        env["THREADLOOM_NO_EXTENSIONS"] = "1"
    else:
        env.pop("THREADLOOM_NO_EXTENSIONS", None)
        try:
            import threadloom.core._core  # noqa: F401
        except ImportError:
            pytest.skip("the native core is not built")
    n = int(os.environ.get("THREADLOOM_STRESS_TASKS", "200000"))
    if n <= 0:
        pytest.skip("THREADLOOM_STRESS_TASKS=0")
    result = subprocess.run(
        [sys.executable, "-c", STRESS, str(n)], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("python" if pure_python else "native")
    print(result.stdout)


def test_reexports() -> None:
    assert threadloom.ThreadPoolManager is ThreadPoolManager
    assert random  # keep the import for the stress script's readers


def test_retries_count_against_the_queue_limit() -> None:
    # One worker, max_queue_size=2.  Task A's first attempt queues a CRITICAL
    # blocker and fails; while the blocker holds the worker, C and D fill the
    # queue.  A's retry comes due (50 ms) with the queue full: it waits for a
    # slot instead of making the queue three deep, and then every task ends.
    manager = ThreadPoolManager(
        min_workers=1, max_workers=1, max_queue_size=2, queue_full_policy="raise"
    ).start()
    try:
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            holding.set()
            release.wait(TIMEOUT)

        def flaky() -> str:
            if current_task().attempt == 1:
                manager.submit(hold, priority=TaskPriority.CRITICAL)
                raise OSError("first attempt")
            return "A"

        retry = RetryPolicy(max_retries=1, delay=0.05, backoff=1.0)
        a = manager.submit_call(flaky, retry=retry)
        assert holding.wait(TIMEOUT)
        others = [manager.submit(int) for _ in range(2)]
        with pytest.raises(QueueFull):
            manager.submit(int)
        # Well past A's retry delay: the queue must never hold three.
        depths = []
        pause = threading.Event()
        for _ in range(100):
            depths.append(manager.get_metrics()["queue_size"])
            pause.wait(0.005)
        assert max(depths) == 2, depths
        assert manager.get_task_status(a) is TaskStatus.RETRYING
        release.set()
        assert manager.get_task_result(a, TIMEOUT) == "A"
        assert [manager.get_task_result(i, TIMEOUT) for i in others] == [0, 0]
        assert manager.wait_all(TIMEOUT)
    finally:
        manager.stop()


def test_finished_tasks_beyond_keep_finished_are_freed_without_the_gc() -> None:
    import gc
    import weakref

    class Payload:
        pass

    manager = ThreadPoolManager(min_workers=2, max_workers=2, keep_finished=10).start()
    gc.collect()
    gc.disable()
    try:
        futures = [
            manager.submit_future(lambda p: p, (Payload(),), timeout=3600.0) for _ in range(2000)
        ]
        refs = [weakref.ref(f) for f in futures]
        results = [weakref.ref(f.result(TIMEOUT)) for f in futures]
        del futures
        assert manager.wait_all(TIMEOUT)
        # Only the last keep_finished records (and what they return) are alive.
        assert sum(r() is not None for r in refs) <= 10
        assert sum(r() is not None for r in results) <= 10
    finally:
        gc.enable()
        manager.stop()


@pytest.mark.parametrize("value", [float("inf"), 1e300, threading.TIMEOUT_MAX * 2])
def test_durations_beyond_what_a_timer_can_wait_are_refused(value: float) -> None:
    # One check, the same message, for every duration: nothing reaches the
    # timer thread or a worker's wait that it cannot honour.
    with pytest.raises(ValueError, match="idle_timeout must be"):
        ThreadPoolManager(idle_timeout=value)
    with pytest.raises(ValueError, match="delay must be"):
        RetryPolicy(max_retries=1, delay=value)
    with ThreadPoolManager(1, 1) as manager:
        with pytest.raises(ValueError, match="timeout must be"):
            manager.submit_call(int, timeout=value)
        executor = threadloom.ThreadPoolExecutor(1)
        try:
            with pytest.raises(ValueError, match="timeout must be"):
                executor.options(timeout=value)
            with pytest.raises(ValueError, match="idle_timeout must be"):
                executor.idle_timeout = value
        finally:
            executor.shutdown()
