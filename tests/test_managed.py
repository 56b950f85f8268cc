"""Managed tasks, the timer heap, task registries and graph runners of the core.

Every test runs on the native core and on its pure-Python twin (the ``core``
fixture), through the core's own interface, with worker threads of its own.
"""

from __future__ import annotations

import dataclasses
import gc
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeoutError
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from threadloom import RetryPolicy, TaskStatus, UnknownDependencyError
from threadloom.managed import TaskFuture
from threadloom.task_manager import TaskManager

from .conftest import TIMEOUT


@pytest.fixture
def mcore(core: ModuleType, future_cls: type[Any]) -> Iterator[ModuleType]:
    """The core, making task futures whose state machine is its own."""
    task_future = type("TaskFuture", (TaskFuture, future_cls), {})
    core.set_task_future_type(task_future)
    try:
        yield core
    finally:
        core.set_task_future_type(TaskFuture)


@pytest.fixture
def dispatcher(mcore: ModuleType) -> Iterator[Any]:
    dispatcher = mcore.Dispatcher(1)
    threads: list[threading.Thread] = []

    def spawn() -> None:
        thread = threading.Thread(target=dispatcher.run_worker, daemon=True)
        threads.append(thread)
        thread.start()

    dispatcher.spawn = spawn
    try:
        yield dispatcher
    finally:
        for future in dispatcher.begin_close():
            future._task.requeue_now(future)
        dispatcher.close()
        for thread in threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive()


def blocker(dispatcher: Any) -> tuple[threading.Event, threading.Event]:
    """Occupy the dispatcher's only worker until the returned release is set."""
    started, release = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        release.wait(TIMEOUT)

    dispatcher.submit(1, block, (), None)
    assert started.wait(TIMEOUT)
    return started, release


def test_a_managed_task_completes_and_reports_itself(dispatcher: Any, mcore: ModuleType) -> None:
    seen: list[Any] = []

    def work(x: int) -> int:
        seen.append(mcore.current_task())
        return x * 2

    future = dispatcher.submit_managed(work, (21,), None, 2, "double", None, None)
    assert future.result(TIMEOUT) == 42
    task = future.task
    assert seen == [task]
    assert (task.name, task.priority, task.attempts) == ("double", 2, 1)
    assert future.status is TaskStatus.COMPLETED
    assert task.started_at is not None and task.finished_at >= task.started_at
    with pytest.raises(RuntimeError, match="outside a managed"):
        mcore.current_task()


def test_a_retry_keeps_its_place_among_equal_priorities(dispatcher: Any, mcore: ModuleType) -> None:
    # One worker.  Task A's first attempt queues a higher-priority blocker and
    # fails; while the blocker holds the worker, A waits out a 1 ms retry delay
    # and 50 tasks of A's priority are queued after it.  Released, the worker
    # runs A's retry before them: A went back in with its original sequence.
    log: list[str] = []
    hold_started, release_hold = threading.Event(), threading.Event()

    def hold() -> None:
        hold_started.set()
        release_hold.wait(TIMEOUT)

    def flaky() -> str:
        log.append(f"A#{mcore.current_task().attempt}")
        if mcore.current_task().attempt == 1:
            dispatcher.submit(2, hold, (), None)
            raise ConnectionError("first attempt")
        return "A"

    retry = RetryPolicy(max_retries=1, delay=0.001, backoff=1.0)
    a = dispatcher.submit_managed(flaky, (), None, 1, "A", retry, None)
    assert hold_started.wait(TIMEOUT)
    later = [
        dispatcher.submit_managed(log.append, (f"L{i}",), None, 1, None, None, None)
        for i in range(50)
    ]
    pause = threading.Event()
    for _ in range(int(TIMEOUT / 0.001)):
        if a.status is TaskStatus.QUEUED:
            break
        pause.wait(0.001)
    assert a.status is TaskStatus.QUEUED  # its delay is over; it waits for the worker
    release_hold.set()
    assert a.result(TIMEOUT) == "A"
    for future in later:
        future.result(TIMEOUT)
    assert log[:3] == ["A#1", "A#2", "L0"], log[:5]


def test_a_deadline_fails_a_stuck_task_on_time_and_asks_it_to_stop(
    dispatcher: Any, mcore: ModuleType
) -> None:
    stop_seen = threading.Event()

    def stuck() -> None:
        task = mcore.current_task()
        if task.wait_cancelled(TIMEOUT):
            stop_seen.set()

    future = dispatcher.submit_managed(stuck, (), None, 1, "stuck", None, 0.05)
    with pytest.raises(FutureTimeoutError, match=r"did not finish within 0\.05 s"):
        future.result(TIMEOUT)
    assert future.status is TaskStatus.TIMED_OUT
    assert stop_seen.wait(TIMEOUT)


def test_a_deadline_hands_callbacks_to_the_pool_not_the_timer_thread(
    dispatcher: Any, mcore: ModuleType
) -> None:
    # The worker is stuck, so the deadline's callbacks wait for it; what runs
    # on the timer thread is only the future's state change.
    _, release = blocker(dispatcher)
    threads: list[str] = []
    called = threading.Event()

    def callback(_: Any) -> None:
        threads.append(threading.current_thread().name)
        called.set()

    future = dispatcher.submit_managed(int, (), None, 1, None, None, 0.02)
    future.add_done_callback(callback)
    with pytest.raises(FutureTimeoutError):
        future.result(TIMEOUT)  # the waiter has its answer on time
    assert not called.is_set()
    release.set()
    assert called.wait(TIMEOUT)
    assert threads and "timers" not in threads[0]


def test_cancel_racing_a_deadline_ends_the_task_once(mcore: ModuleType) -> None:
    # Many queued tasks whose deadline fires while a canceller cancels them:
    # each ends in one terminal state, and its future agrees with it.
    dispatcher = mcore.Dispatcher(1)  # no worker: everything stays queued
    futures = [
        dispatcher.submit_managed(int, (), None, 1, None, None, 0.001 * (i % 5 + 1))
        for i in range(300)
    ]
    for future in futures:
        future.cancel()
    for future in futures:
        with pytest.raises((CancelledError, FutureTimeoutError)):
            future.result(TIMEOUT)
        status = future.status
        assert status in (TaskStatus.CANCELLED, TaskStatus.TIMED_OUT)
        assert future.cancelled() == (status is TaskStatus.CANCELLED)
    counts = dict(zip(mcore.COUNTER_NAMES, dispatcher.counters.snapshot(), strict=True))
    assert counts["cancelled"] + counts["timed_out"] == 300
    dispatcher.close()


def test_disarmed_timers_are_compacted_and_keep_nothing_alive(
    dispatcher: Any, mcore: ModuleType
) -> None:
    class Payload:
        pass

    payloads = [Payload() for _ in range(2000)]
    refs = [weakref.ref(p) for p in payloads]
    futures = [dispatcher.submit_managed(id, (p,), None, 1, None, None, 3600.0) for p in payloads]
    for future in futures:
        future.result(TIMEOUT)
    del payloads, futures, future
    # Freed by reference counting: no collection needed.
    gc.disable()
    try:
        assert all(r() is None for r in refs)
    finally:
        gc.enable()
    # Far fewer than the 2,000 deadlines armed, all disarmed by now.
    assert mcore.TIMERS.heap_size <= 200


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0, 1e300])
def test_durations_out_of_range_are_refused_with_one_message(
    mcore: ModuleType, value: float
) -> None:
    with pytest.raises(ValueError, match="timeout must be"):
        mcore.check_seconds("timeout", value, False)


def test_a_registry_prunes_finished_tasks_by_count(dispatcher: Any, mcore: ModuleType) -> None:
    registry = mcore.TaskRegistry(10, 3600.0)
    ids = [registry.submit(dispatcher, int, (), None, 1, None) for _ in range(100)]
    assert registry.wait_all(TIMEOUT)
    assert registry.unfinished == 0
    kept = registry.ids()
    assert kept == ids[-10:]
    assert registry.get(ids[0]) is None
    assert registry.get("task-x") is None and registry.get(42) is None
    count, total, longest, shortest = registry.run_times()
    assert count == 100 and 0 <= shortest <= longest <= total


def test_a_registry_runs_its_hook_before_wait_all_lets_go(
    dispatcher: Any, mcore: ModuleType
) -> None:
    # The pool's events are emitted from this hook: a caller that wait_all()
    # released must find every finished task's event already emitted.
    registry = mcore.TaskRegistry(10, 3600.0)
    unfinished_seen: list[int] = []
    registry.on_task_done = lambda task, future: unfinished_seen.append(registry.unfinished)
    registry.submit(dispatcher, int, (), None, 1, None)
    assert registry.wait_all(TIMEOUT)
    assert unfinished_seen == [1]


def test_a_failing_registry_hook_still_counts_the_task_finished(
    dispatcher: Any, mcore: ModuleType
) -> None:
    registry = mcore.TaskRegistry(10, 3600.0)

    def broken_hook(task: Any, future: Any) -> None:
        raise RuntimeError("hook failed")

    registry.on_task_done = broken_hook
    task_id = registry.submit(dispatcher, int, (), None, 1, None)
    assert registry.wait_all(TIMEOUT)
    assert registry.get(task_id).result(TIMEOUT) == 0


def graph_tasks(spec: dict[str, tuple[list[str], Any]], rule: str = "all_success") -> list[Any]:
    return [
        SimpleNamespace(
            task_id=name,
            name=name,
            func=func,
            args=(),
            kwargs={},
            dependencies=tuple(deps),
            priority=1,
            max_retries=0,
            retry=None,
            timeout=None,
            enabled=True,
            trigger_rule=rule if deps else "all_success",
            results_param=None,
        )
        for name, (deps, func) in spec.items()
    ]


def run_graph(dispatcher: Any, mcore: ModuleType, tasks: list[Any]) -> tuple[Any, list[int]]:
    runner = mcore.GraphRunner(dispatcher, tasks)
    ended: list[int] = []
    finished = threading.Event()
    runner.on_nodes_end = lambda _, batch: ended.extend(batch)
    runner.on_finished = lambda _: finished.set()
    runner.start()
    assert finished.wait(TIMEOUT)
    return runner, ended


def test_a_graph_runs_in_dependency_order_and_passes_results(
    dispatcher: Any, mcore: ModuleType
) -> None:
    order: list[str] = []

    def step(name: str) -> Any:
        def run() -> str:
            upstream = dict(mcore.current_task().upstream_results)
            order.append(name)
            return f"{name}<{','.join(sorted(upstream))}>"

        return run

    spec = {"a": ([], step("a")), "b": (["a"], step("b")), "c": (["a", "b"], step("c"))}
    runner, ended = run_graph(dispatcher, mcore, graph_tasks(spec))
    assert order == ["a", "b", "c"]
    assert sorted(ended) == [0, 1, 2]
    assert runner.result(2) == "c<a,b>"
    assert [runner.node_state(i) for i in range(3)] == [TaskStatus.COMPLETED] * 3


class SlottedNode:
    __slots__ = (
        "args",
        "dependencies",
        "enabled",
        "func",
        "kwargs",
        "max_retries",
        "name",
        "priority",
        "results_param",
        "retry",
        "tags",
        "task_id",
        "timeout",
        "trigger_rule",
    )

    def __init__(self, name: str, deps: list[str], func: Any, *args: Any) -> None:
        self.task_id = self.name = name
        self.func, self.args = func, args
        self.kwargs: dict[str, Any] = {}
        self.dependencies = tuple(deps)
        self.priority, self.max_retries, self.retry, self.timeout = 1, 0, None, None
        self.enabled, self.trigger_rule, self.results_param, self.tags = (
            True,
            "all_success",
            None,
            (),
        )


class RenamedNode(SlottedNode):
    """A subclass whose ``name`` is computed: the runner must read what getattr() reads."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return "renamed-" + str(SLOT_NAME.__get__(self))

    @name.setter
    def name(self, value: str) -> None:
        SLOT_NAME.__set__(self, value)


SLOT_NAME: Any = SlottedNode.__dict__["name"]


def test_a_graph_reads_its_tasks_as_getattr_does(dispatcher: Any, mcore: ModuleType) -> None:
    # The native runner reads slots by offset where the tasks' type allows it:
    # plain slots, a subclass that overrides one with a property, a mixed list.
    seen: list[tuple[str, Any]] = []

    def record(value: Any) -> Any:
        seen.append((mcore.current_task().name, value))
        return value

    for first in (SlottedNode, RenamedNode):
        seen.clear()
        other = RenamedNode if first is SlottedNode else SlottedNode
        tasks = [
            first("a", [], record, 1),
            other("b", ["a"], record, 2),
            first("c", ["a", "b"], record, 3),
        ]
        tasks[2].enabled = False
        runner, ended = run_graph(dispatcher, mcore, tasks)
        names = {task.task_id: task.name for task in tasks}
        assert seen == [(names["a"], 1), (names["b"], 2)]
        assert sorted(ended) == [0, 1, 2]
        assert [runner.node_state(i) for i in range(3)] == [
            TaskStatus.COMPLETED,
            TaskStatus.COMPLETED,
            TaskStatus.SKIPPED,
        ]
        rows = runner.run_rows([0, 1, 2], "e", {}, lambda error: (None, None, None), str)
        assert [row[3] for row in rows] == [names["a"], names["b"], names["c"]]


def test_a_failure_decides_dependents_by_their_rules(dispatcher: Any, mcore: ModuleType) -> None:
    def boom() -> None:
        raise ValueError("boom")

    spec = {"a": ([], boom), "b": (["a"], int), "c": (["b"], int)}
    runner, _ = run_graph(dispatcher, mcore, graph_tasks(spec))
    assert [runner.node_state(i) for i in range(3)] == [
        TaskStatus.FAILED,
        TaskStatus.UPSTREAM_FAILED,
        TaskStatus.UPSTREAM_FAILED,
    ]
    assert isinstance(runner.error(0), ValueError)
    runner, _ = run_graph(dispatcher, mcore, graph_tasks(spec, rule="all_done"))
    assert [runner.node_state(i) for i in range(3)] == [
        TaskStatus.FAILED,
        TaskStatus.COMPLETED,
        TaskStatus.COMPLETED,
    ]


def test_run_rows_describe_each_ended_node_for_the_history(
    dispatcher: Any, mcore: ModuleType
) -> None:
    def boom() -> None:
        raise ValueError("boom")

    spec = {"a": ([], int), "b": ([], boom), "c": (["b"], int)}
    tasks = graph_tasks(spec)
    tasks[0].tags = ("etl", "daily")
    for task in tasks[1:]:
        task.tags = ()
    before = time.time()
    runner, ended = run_graph(dispatcher, mcore, tasks)
    statuses: dict[str, TaskStatus] = {}
    described: list[BaseException] = []

    def describe(error: BaseException) -> tuple[str, str, str]:
        described.append(error)
        return type(error).__name__, str(error), "trace"

    rows = runner.run_rows(ended, "e1", statuses, describe, lambda tags: "|".join(tags))
    by_task = {row[2]: row for row in rows}
    assert [row[2] for row in rows] == [tasks[i].task_id for i in ended]
    assert statuses == {
        "a": TaskStatus.COMPLETED,
        "b": TaskStatus.FAILED,
        "c": TaskStatus.UPSTREAM_FAILED,
    }
    a, b, c = by_task["a"], by_task["b"], by_task["c"]
    assert a[:6] == ("e1:a", "e1", "a", "a", "completed", 1)
    assert type(a[4]) is str  # the plain value, not the enum
    assert before <= a[6] <= a[7] <= a[8] <= time.time()
    assert a[9] == pytest.approx(a[8] - a[7], abs=1e-3)
    assert a[10:] == (None, None, "etl|daily", None)
    assert b[4:6] == ("failed", 1) and b[10:] == ("ValueError", "boom", "[]", "trace")
    assert described == [runner.error(1)]
    # Never queued nor started: no queue or start time, no duration, but an end.
    assert c[4] == "upstream_failed" and c[6] is None and c[7] is None and c[9] is None
    assert c[8] >= before
    with pytest.raises(IndexError, match="not in this graph"):
        runner.run_rows([3], "e1", {}, describe, str)


def test_run_rows_refuse_a_node_that_has_not_ended(dispatcher: Any, mcore: ModuleType) -> None:
    runner = mcore.GraphRunner(dispatcher, graph_tasks({"a": ([], int)}))
    with pytest.raises(ValueError, match="has not ended"):
        runner.run_rows([0], "e1", {}, repr, str)


def test_cancelling_a_graph_before_its_start_runs_nothing(
    dispatcher: Any, mcore: ModuleType
) -> None:
    ran: list[int] = []
    spec = {"a": ([], lambda: ran.append(1)), "b": (["a"], lambda: ran.append(2))}
    runner = mcore.GraphRunner(dispatcher, graph_tasks(spec))
    finished = threading.Event()
    runner.on_finished = lambda _: finished.set()
    assert runner.cancel() is True
    runner.start()
    assert finished.wait(TIMEOUT)
    assert ran == []
    assert [runner.node_state(i) for i in range(2)] == [TaskStatus.CANCELLED] * 2


def test_a_long_chain_runs_without_deep_stacks(dispatcher: Any, mcore: ModuleType) -> None:
    n = 5000
    spec = {f"n{i}": ([f"n{i - 1}"] if i else [], int) for i in range(n)}
    runner, ended = run_graph(dispatcher, mcore, graph_tasks(spec))
    assert len(ended) == n and runner.done


def test_a_retry_waiting_at_interpreter_exit_still_runs(tmp_path: Any) -> None:
    # Queued work runs at exit (as in the stdlib); a retry waiting for its
    # delay is queued work.
    marker = tmp_path / "second-attempt"
    script = f"""
import threadloom
from threadloom import RetryPolicy
calls = []
def flaky():
    calls.append(1)
    if len(calls) == 1:
        raise OSError("first")
    open({str(marker)!r}, "w").close()
ex = threadloom.ThreadPoolExecutor(1)
ex.options(retry=RetryPolicy(max_retries=1, delay=30.0)).submit(flaky)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert marker.exists(), done.stderr


def test_a_failed_task_frees_its_arguments_without_the_cyclic_gc(
    dispatcher: Any, mcore: ModuleType
) -> None:
    class Payload:
        pass

    def fail(payload: Payload) -> None:
        raise ValueError("no")

    refs = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            payload = Payload()
            refs.append(weakref.ref(payload))
            future = dispatcher.submit_managed(fail, (payload,), None, 1, "fail", None, None)
            assert isinstance(future.exception(TIMEOUT), ValueError)
            del payload, future
        # Each error (kept by nobody now) took its traceback and frames along.
        assert sum(r() is not None for r in refs) == 0
    finally:
        gc.enable()


# -- the graph runner against the reference semantics (threadloom._graph) ------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from threadloom.graph.dag import GraphRun, TriggerRule, closure_in_order  # noqa: E402

RULES = [rule.value for rule in TriggerRule]


@st.composite
def random_graphs(draw: Any) -> tuple[dict[str, list[str]], dict[str, str], set[str]]:
    n = draw(st.integers(min_value=1, max_value=25))
    deps = {
        f"n{i}": sorted(
            {f"n{j}" for j in draw(st.lists(st.integers(0, max(0, i - 1)), max_size=3))}
            if i
            else set()
        )
        for i in range(n)
    }
    rules = {name: draw(st.sampled_from(RULES)) for name in deps}
    failing = {name for name in deps if draw(st.booleans()) and draw(st.booleans())}
    return deps, rules, failing


def reference_outcome(
    deps: dict[str, list[str]], rules: dict[str, str], failing: set[str]
) -> dict[str, TaskStatus]:
    order = closure_in_order(deps, list(deps))
    run = GraphRun(order, deps, {n: TriggerRule(rules[n]) for n in order})
    ready = run.start()
    while ready:
        node = ready.pop(0)
        more, _ = run.finish(node, TaskStatus.FAILED if node in failing else TaskStatus.COMPLETED)
        ready.extend(more)
    statuses = {}
    for node in order:
        status = run.status(node)
        assert status is not None
        statuses[node] = status
    return statuses


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(graph=random_graphs())
def test_the_runner_agrees_with_the_reference_on_random_graphs(
    dispatcher: Any, mcore: ModuleType, graph: Any
) -> None:
    deps, rules, failing = graph

    def node(name: str) -> Any:
        def run() -> str:
            if name in failing:
                raise RuntimeError(name)
            return name

        return run

    spec = {name: (dep_list, node(name)) for name, dep_list in deps.items()}
    tasks = graph_tasks(spec)
    for task in tasks:
        task.trigger_rule = rules[task.name]
    order = mcore.closure_order({t.task_id: t.dependencies for t in tasks}, list(deps))
    by_id = {t.task_id: t for t in tasks}
    runner, ended = run_graph(dispatcher, mcore, [by_id[i] for i in order])
    assert sorted(ended) == list(range(len(order)))
    expected = reference_outcome(deps, rules, failing)
    got = {runner.task(i).name: runner.node_state(i) for i in range(runner.size)}
    assert got == expected


def test_new_slotted_builds_what_init_builds(core: ModuleType) -> None:
    import dataclasses

    @dataclasses.dataclass(frozen=True, slots=True)
    class Record:
        a: Any
        b: Any
        c: Any

    class Payload:
        pass

    names = [f.name for f in dataclasses.fields(Record)]
    offsets = core.slot_offsets(Record, names)
    payload = Payload()
    ref = weakref.ref(payload)
    built = core.new_slotted(Record, offsets, (1, "two", payload))
    assert built == Record(1, "two", payload)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.a = 5
    with pytest.raises(ValueError, match="3 slots, 2 values"):
        core.new_slotted(Record, offsets, (1, 2))
    with pytest.raises(TypeError, match="is not a slot"):
        core.slot_offsets(Record, ["a", "nope"])
    del built, payload
    gc.collect()
    assert ref() is None  # the slot's reference was owned and released


@dataclasses.dataclass(frozen=True, slots=True)
class _Record:
    task_id: str
    name: str
    func: Any
    args: tuple[Any, ...]
    kwargs: Any
    dependencies: tuple[str, ...]
    priority: int
    tags: tuple[str, ...]


def test_add_plain_task_registers_in_one_step(mcore: ModuleType) -> None:
    slots = mcore.slot_offsets(_Record, [f.name for f in dataclasses.fields(_Record)])
    tasks: dict[str, Any] = {}
    by_name: dict[str, str] = {}
    dependency_map: dict[str, tuple[str, ...]] = {}

    def add(task_id: str, name: object, deps: Any, func: Any = int) -> Any:
        return mcore.add_plain_task(
            tasks,
            by_name,
            dependency_map,
            task_id,
            name,
            func,
            (1,),
            {},
            deps,
            _Record,
            slots,
            (5, ()),
        )

    for i in range(12):
        assert add(f"t{i}", f"n{i}", []) is not None
    # Ids or names, duplicates dropped in first-seen order (also past the
    # linear look-ups of a small list).
    refs = ["n3", "t1", "t3", *[f"n{i}" for i in range(11, -1, -1)], "t0"]
    record = add("t99", "fan", refs)
    expected = ("t3", "t1", *[f"t{i}" for i in range(11, -1, -1) if i not in (1, 3)])
    assert record == _Record("t99", "fan", int, (1,), {}, expected, 5, ())
    assert tasks["t99"] is record and by_name["fan"] == "t99"
    assert dependency_map["t99"] == expected
    before = (dict(tasks), dict(by_name), dict(dependency_map))
    # Each of these is the general path's to decide, and changes nothing.
    assert add("t100", "x", ["n1", "nope"]) is None
    assert add("t100", "fan", []) is None  # a name taken
    assert add("t100", "t1", []) is None  # a name that is another task's id
    assert add("t1", "y", []) is None  # an id taken
    assert add("t100", "", []) is None
    assert add("t100", 7, []) is None
    assert add("t100", "z", [], func=42) is None
    assert (tasks, by_name, dependency_map) == before


def test_register_task_reads_a_one_shot_iterable_of_dependencies_once() -> None:
    manager = TaskManager()
    first = manager.register_task("a", int)
    second = manager.register_task("b", int, dependencies=iter([first, "a"]))
    assert manager.get_task(second).dependencies == (first,)
    # Declined by the fast path (a dependency names nothing), then refused
    # with the name of the unknown one, not registered without it.
    with pytest.raises(UnknownDependencyError, match="nope"):
        manager.register_task("c", int, dependencies=(ref for ref in ["a", "nope"]))
    assert [task.name for task in manager.list_tasks()] == ["a", "b"]
