"""Tests of the task manager's pure graph logic (threadloom._graph)."""

from __future__ import annotations

import graphlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadloom import TaskStatus
from threadloom.graph.dag import (
    RUN,
    WAIT,
    DependencyCycleError,
    DependencyGraph,
    GraphRun,
    TaskDependencyError,
    TriggerRule,
    UnknownDependencyError,
    closure_in_order,
    inherit_priorities,
    judge,
)

COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
SKIPPED = TaskStatus.SKIPPED
UPSTREAM_FAILED = TaskStatus.UPSTREAM_FAILED
CANCELLED = TaskStatus.CANCELLED


def build(edges: dict[str, list[str]]) -> DependencyGraph:
    graph = DependencyGraph(describe=str.upper)
    for node, deps in edges.items():
        graph.add(node, deps)
    return graph


def assert_topological(order: list[str], deps: dict[str, list[str]] | DependencyGraph) -> None:
    position = {node: i for i, node in enumerate(order)}
    assert len(position) == len(order), "a node appears twice"
    for node in order:
        for dep in deps[node] if isinstance(deps, dict) else deps.dependencies(node):
            assert position[dep] < position[node], f"{dep} must come before {node}"


# -- DependencyGraph ---------------------------------------------------------


def test_unknown_dependency_is_rejected_with_names() -> None:
    graph = build({"a": []})
    with pytest.raises(UnknownDependencyError, match=r"'B' depends on unknown task\(s\): 'x'") as e:
        graph.add("b", ["a", "x"])
    assert e.value.missing == ("x",)
    assert "b" not in graph


def test_self_dependency_is_a_cycle() -> None:
    graph = build({"a": []})
    with pytest.raises(DependencyCycleError) as e:
        graph.set_dependencies("a", ["a"])
    assert e.value.cycle == ("A", "A")


def test_cycle_through_update_is_rejected_naming_the_cycle_and_leaves_graph_unchanged() -> None:
    graph = build({"a": [], "b": ["a"], "c": ["b"], "d": []})
    with pytest.raises(DependencyCycleError, match="A -> C -> B -> A") as e:
        graph.set_dependencies("a", ["d", "c"])
    assert e.value.cycle == ("A", "C", "B", "A")
    assert isinstance(e.value, TaskDependencyError)
    assert graph.dependencies("a") == ()
    assert graph.dependents("c") == frozenset()


def test_set_dependencies_moves_dependents() -> None:
    graph = build({"a": [], "b": [], "c": ["a"]})
    graph.set_dependencies("c", ["b", "b"])
    assert graph.dependencies("c") == ("b",)
    assert graph.dependents("a") == frozenset()
    assert graph.dependents("b") == {"c"}


def test_remove_refuses_a_node_others_depend_on() -> None:
    graph = build({"a": [], "b": ["a"]})
    with pytest.raises(TaskDependencyError, match="'A' is a dependency of 'B'"):
        graph.remove("a")
    graph.remove("b")
    graph.remove("a")
    assert len(graph) == 0


def test_add_twice_is_rejected() -> None:
    graph = build({"a": []})
    with pytest.raises(ValueError, match="already"):
        graph.add("a", [])


# -- planning ----------------------------------------------------------------


def test_closure_of_a_diamond_holds_each_node_once_in_dependency_order() -> None:
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "unrelated": []}
    order = closure_in_order(deps, ["d"])
    assert sorted(order) == ["a", "b", "c", "d"]
    assert_topological(order, deps)


def test_closure_of_a_deep_chain_does_not_recurse() -> None:
    n = 100_000
    deps = {f"n{i}": [f"n{i - 1}"] if i else [] for i in range(n)}
    order = closure_in_order(deps, [f"n{n - 1}"])
    assert order == [f"n{i}" for i in range(n)]


def test_closure_of_several_targets_merges_shared_upstreams() -> None:
    deps = {"a": [], "b": ["a"], "c": ["a"]}
    order = closure_in_order(deps, ["b", "c", "b"])
    assert sorted(order) == ["a", "b", "c"]
    assert_topological(order, deps)


def test_priorities_are_inherited_from_every_waiting_dependent() -> None:
    deps = {"a": [], "b": ["a"], "c": ["b"], "x": [], "y": ["x", "a"]}
    order = closure_in_order(deps, ["c", "y"])
    own = {"a": 0, "b": 1, "c": 3, "x": 0, "y": 2}
    assert inherit_priorities(order, deps, own) == {"a": 3, "b": 3, "c": 3, "x": 2, "y": 2}


# -- trigger rules -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "succeeded", "failed", "skipped", "expected"),
    [
        (TriggerRule.ALL_SUCCESS, 1, 0, 0, WAIT),
        (TriggerRule.ALL_SUCCESS, 2, 0, 0, RUN),
        (TriggerRule.ALL_SUCCESS, 1, 1, 0, UPSTREAM_FAILED),
        (TriggerRule.ALL_SUCCESS, 1, 0, 1, SKIPPED),
        (TriggerRule.ALL_DONE, 1, 0, 0, WAIT),
        (TriggerRule.ALL_DONE, 0, 2, 0, RUN),
        (TriggerRule.ALL_DONE, 0, 1, 1, RUN),
        (TriggerRule.ONE_SUCCESS, 1, 0, 0, RUN),
        (TriggerRule.ONE_SUCCESS, 0, 1, 0, WAIT),
        (TriggerRule.ONE_SUCCESS, 0, 2, 0, UPSTREAM_FAILED),
        (TriggerRule.ONE_SUCCESS, 0, 0, 2, SKIPPED),
        (TriggerRule.ONE_FAILED, 0, 1, 0, RUN),
        (TriggerRule.ONE_FAILED, 1, 0, 0, WAIT),
        (TriggerRule.ONE_FAILED, 2, 0, 0, SKIPPED),
        (TriggerRule.NONE_FAILED, 1, 0, 1, RUN),
        (TriggerRule.NONE_FAILED, 1, 0, 0, WAIT),
        (TriggerRule.NONE_FAILED, 1, 1, 0, UPSTREAM_FAILED),
    ],
)
def test_judge(
    rule: TriggerRule, succeeded: int, failed: int, skipped: int, expected: TaskStatus
) -> None:
    assert judge(rule, 2, succeeded, failed, skipped) is expected


def test_a_task_without_dependencies_always_runs() -> None:
    for rule in TriggerRule:
        assert judge(rule, 0, 0, 0, 0) is RUN


# -- GraphRun ----------------------------------------------------------------


def run_graph(
    deps: dict[str, list[str]],
    outcome: dict[str, TaskStatus],
    rules: dict[str, TriggerRule] | None = None,
) -> tuple[list[str], dict[str, TaskStatus]]:
    """Run *deps* to the end, one ready node at a time; return run order and end states."""
    order = closure_in_order(deps, list(deps))
    run = GraphRun(order, deps, {n: (rules or {}).get(n, TriggerRule.ALL_SUCCESS) for n in deps})
    ready = run.start()
    ran: list[str] = []
    states: dict[str, TaskStatus] = {}
    while ready:
        node = ready.pop(0)
        ran.append(node)
        states[node] = outcome.get(node, COMPLETED)
        more, decided = run.finish(node, states[node])
        ready.extend(more)
        states.update(decided)
    assert run.done
    assert {n: run.status(n) for n in deps} == states
    return ran, states


def test_failure_marks_dependents_upstream_failed_transitively() -> None:
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    ran, states = run_graph(deps, {"a": FAILED})
    assert sorted(ran) == ["a", "d"]
    assert states == {"a": FAILED, "b": UPSTREAM_FAILED, "c": UPSTREAM_FAILED, "d": COMPLETED}


def test_all_done_runs_after_a_failure_and_one_failed_runs_only_on_failure() -> None:
    deps = {"a": [], "b": ["a"], "cleanup": ["b"], "alert": ["a"], "ok_alert": ["cleanup"]}
    rules = {
        "cleanup": TriggerRule.ALL_DONE,
        "alert": TriggerRule.ONE_FAILED,
        "ok_alert": TriggerRule.ONE_FAILED,
    }
    ran, states = run_graph(deps, {"a": FAILED}, rules)
    assert states == {
        "a": FAILED,
        "b": UPSTREAM_FAILED,
        "cleanup": COMPLETED,
        "alert": COMPLETED,
        "ok_alert": SKIPPED,
    }
    assert "b" not in ran


def test_one_success_runs_before_the_other_upstreams_end() -> None:
    deps = {"fast": [], "slow": [], "any": ["fast", "slow"]}
    run = GraphRun(
        ["fast", "slow", "any"],
        deps,
        {
            "fast": TriggerRule.ALL_SUCCESS,
            "slow": TriggerRule.ALL_SUCCESS,
            "any": TriggerRule.ONE_SUCCESS,
        },
    )
    assert run.start() == ["fast", "slow"]
    assert run.finish("fast", COMPLETED) == (["any"], [])
    assert run.finish("any", COMPLETED) == ([], [])
    assert not run.done
    assert run.finish("slow", FAILED) == ([], [])
    assert run.done


def test_skips_propagate_through_all_success_but_not_none_failed() -> None:
    deps = {"a": [], "gate": ["a"], "b": ["gate"], "c": ["gate"]}
    rules = {"gate": TriggerRule.ONE_FAILED, "c": TriggerRule.NONE_FAILED}
    _ran, states = run_graph(deps, {}, rules)
    assert states == {"a": COMPLETED, "gate": SKIPPED, "b": SKIPPED, "c": COMPLETED}


def test_cancel_everything_leaves_running_nodes_to_the_caller() -> None:
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": ["a"]}
    rules = dict.fromkeys(deps, TriggerRule.ALL_DONE)
    run = GraphRun(closure_in_order(deps, list(deps)), deps, rules)
    assert run.start() == ["a"]
    cancelled, ready, decided = run.cancel()
    assert sorted(cancelled) == ["b", "c", "d"]
    assert (ready, decided) == ([], [])
    assert not run.done
    # The running node's end does not revive its cancelled dependents, whatever their rule.
    assert run.finish("a", COMPLETED) == ([], [])
    assert run.done
    assert run.status("c") is CANCELLED


def test_cancel_one_waiting_node_judges_its_dependents() -> None:
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": ["b"]}
    rules = {
        "a": TriggerRule.ALL_SUCCESS,
        "b": TriggerRule.ALL_SUCCESS,
        "c": TriggerRule.ALL_SUCCESS,
        "d": TriggerRule.ALL_DONE,
    }
    run = GraphRun(["a", "b", "c", "d"], deps, rules)
    run.start()
    cancelled, ready, decided = run.cancel(["b", "a"])
    assert cancelled == ["b"]  # "a" was already handed out to run
    assert ready == ["d"]
    assert decided == [("c", UPSTREAM_FAILED)]


def test_finish_rejects_bad_calls() -> None:
    run = GraphRun(["a", "b"], {"a": [], "b": ["a"]}, dict.fromkeys("ab", TriggerRule.ALL_SUCCESS))
    run.start()
    with pytest.raises(ValueError, match="not a terminal"):
        run.finish("a", TaskStatus.RUNNING)
    with pytest.raises(ValueError, match="was not running"):
        run.finish("b", COMPLETED)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    n = draw(st.integers(1, 40))
    deps: dict[str, list[str]] = {}
    for i in range(n):
        picks = draw(st.lists(st.integers(0, i - 1), max_size=4, unique=True)) if i else []
        deps[f"t{i}"] = [f"t{j}" for j in picks]
    return deps


@settings(max_examples=150, deadline=None)
@given(deps=dags(), data=st.data())
def test_random_dags_run_each_closure_node_once_in_order(
    deps: dict[str, list[str]], data: st.DataObject
) -> None:
    targets = data.draw(st.lists(st.sampled_from(sorted(deps)), min_size=1, max_size=3))
    order = closure_in_order(deps, targets)
    reachable: set[str] = set()
    stack = list(targets)
    while stack:
        node = stack.pop()
        if node not in reachable:
            reachable.add(node)
            stack.extend(deps[node])
    assert set(order) == reachable
    assert_topological(order, deps)
    # graphlib accepts the closure as a graph of its own: nothing outside it is needed.
    assert set(graphlib.TopologicalSorter({n: deps[n] for n in order}).static_order()) == reachable

    # Handing nodes out in random completion order: every node runs exactly once,
    # never before its dependencies ended.
    run = GraphRun(order, deps, dict.fromkeys(order, TriggerRule.ALL_SUCCESS))
    running = run.start()
    ended: set[str] = set()
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    while running:
        node = running.pop(rng.randrange(len(running)))
        assert set(deps[node]) <= ended
        ended.add(node)
        more, decided = run.finish(node, COMPLETED)
        assert decided == []
        running.extend(more)
    assert ended == reachable
    assert run.done
