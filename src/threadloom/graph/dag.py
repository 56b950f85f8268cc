"""The pure graph logic of the task manager: no threads, no pool.

:class:`DependencyGraph` is the registry's graph, kept acyclic: a dependency on
an unknown task, or one that would close a cycle, is rejected when it is
declared.  :class:`TriggerRule` and :func:`judge` are the trigger rules.

:func:`closure_in_order`, :func:`inherit_priorities` and :class:`GraphRun` are
the reference semantics of one execution, written plainly: the engine that runs
executions is the core's ``GraphRunner`` (flat arrays, no lock per event), and
the tests hold it to these on random graphs with every trigger rule (as the
pure-Python core is the oracle of the native one).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from .._errors import DependencyCycleError, TaskDependencyError, UnknownDependencyError
from .._types import TaskStatus

__all__ = [
    "DependencyCycleError",
    "DependencyGraph",
    "GraphRun",
    "TaskDependencyError",
    "TriggerRule",
    "UnknownDependencyError",
    "closure_in_order",
    "inherit_priorities",
]


class TriggerRule(str, enum.Enum):
    """When a task runs, given how its dependencies ended.

    A dependency *succeeded* if it COMPLETED, was *skipped* if SKIPPED, and
    *failed* in every other terminal state (FAILED, TIMED_OUT, CANCELLED,
    UPSTREAM_FAILED).  A task whose rule can no longer be met ends
    UPSTREAM_FAILED if a dependency failed, else SKIPPED.
    """

    #: Every dependency succeeded (the default).
    ALL_SUCCESS = "all_success"
    #: Every dependency ended, however it ended.
    ALL_DONE = "all_done"
    #: Runs as soon as one dependency succeeds, without waiting for the others.
    ONE_SUCCESS = "one_success"
    #: Runs as soon as one dependency fails, without waiting for the others.
    ONE_FAILED = "one_failed"
    #: Every dependency ended and none failed (skipped ones are allowed).
    NONE_FAILED = "none_failed"


#: The verdicts of :func:`judge` besides a terminal status.
RUN = TaskStatus.QUEUED
WAIT = TaskStatus.PENDING


def judge(rule: TriggerRule, total: int, succeeded: int, failed: int, skipped: int) -> TaskStatus:
    """Decide a task's fate from its dependencies' outcomes so far.

    Args:
        rule: The task's trigger rule.
        total: How many dependencies it has.
        succeeded: How many of them have succeeded so far; likewise *failed*, *skipped*.

    Returns:
        ``RUN`` (QUEUED: hand it out to run), ``WAIT`` (PENDING: not decidable
        yet), SKIPPED or UPSTREAM_FAILED.
    """
    if rule is TriggerRule.ONE_SUCCESS and succeeded:
        return RUN
    if rule is TriggerRule.ONE_FAILED and failed:
        return RUN
    if succeeded + failed + skipped < total:
        return WAIT
    if rule is TriggerRule.ALL_DONE or total == 0:
        return RUN
    if rule is TriggerRule.ONE_FAILED:
        return TaskStatus.SKIPPED
    if failed:
        return TaskStatus.UPSTREAM_FAILED
    if rule is TriggerRule.NONE_FAILED or (rule is TriggerRule.ALL_SUCCESS and not skipped):
        return RUN
    return TaskStatus.SKIPPED


class DependencyGraph:
    """The registry's dependency graph, acyclic by construction.

    Args:
        describe: Turns a node into the name used in error messages.
    """

    def __init__(self, describe: Callable[[str], str] = str) -> None:
        self._describe = describe
        # Only node -> dependencies: registering is the hot operation (a
        # registry of 100,000 tasks is normal) and it touches nothing else.
        # Who depends on a node is found by a scan, for the rare operations
        # that ask (unregistering, dependents()).
        self._dependencies: dict[str, tuple[str, ...]] = {}

    def __contains__(self, node: object) -> bool:
        return node in self._dependencies

    def __len__(self) -> int:
        return len(self._dependencies)

    def dependencies(self, node: str) -> tuple[str, ...]:
        """Return what *node* depends on, in declaration order."""
        return self._dependencies[node]

    def dependents(self, node: str) -> frozenset[str]:
        """Return the nodes that depend directly on *node* (a scan of the graph)."""
        if node not in self._dependencies:
            raise KeyError(node)
        return frozenset(n for n, deps in self._dependencies.items() if node in deps)

    @property
    def dependency_map(self) -> dict[str, tuple[str, ...]]:
        """The live node -> dependencies dict, under the caller's lock.

        Read it to plan; the only writer outside this class is the registry's
        fast path (``core.add_plain_task``), which adds a new node whose
        dependencies it resolved to distinct nodes of the graph, as
        :meth:`add` would.
        """
        return self._dependencies

    def add(self, node: str, dependencies: Iterable[str]) -> None:
        """Add a new *node*.

        Raises:
            ValueError: *node* is already in the graph.
            UnknownDependencyError: A dependency is not in the graph (a new node
                cannot close a cycle, as nothing can depend on it yet).
        """
        if node in self._dependencies:
            raise ValueError(f"task {self._describe(node)!r} is already in the graph")
        deps = self._checked(node, dependencies)
        if node in deps:
            raise DependencyCycleError([self._describe(node)] * 2)
        self._dependencies[node] = deps

    def set_dependencies(self, node: str, dependencies: Iterable[str]) -> None:
        """Replace *node*'s dependencies.

        Raises:
            KeyError: *node* is not in the graph.
            UnknownDependencyError: A dependency is not in the graph.
            DependencyCycleError: The new dependencies would close a cycle; the
                graph is left unchanged.
        """
        if node not in self._dependencies:
            raise KeyError(node)
        deps = self._checked(node, dependencies)
        cycle = self._path_to(node, deps)
        if cycle is not None:
            raise DependencyCycleError([self._describe(n) for n in [node, *cycle]])
        self._dependencies[node] = deps

    def remove(self, node: str) -> None:
        """Remove *node*.

        Raises:
            KeyError: *node* is not in the graph.
            TaskDependencyError: Other nodes still depend on *node*.
        """
        dependents = self.dependents(node)
        if dependents:
            names = sorted(self._describe(d) for d in dependents)
            raise TaskDependencyError(
                f"task {self._describe(node)!r} is a dependency of {', '.join(map(repr, names))};"
                " remove or update those first"
            )
        del self._dependencies[node]

    def _checked(self, node: str, dependencies: Iterable[str]) -> tuple[str, ...]:
        deps = tuple(dict.fromkeys(dependencies))
        missing = [d for d in deps if d not in self._dependencies and d != node]
        if missing:
            raise UnknownDependencyError(self._describe(node), missing)
        return deps

    def _path_to(self, target: str, starts: Iterable[str]) -> list[str] | None:
        """Return a dependency path from one of *starts* to *target*, or None."""
        parent: dict[str, str | None] = {}
        stack: list[str] = []
        for start in starts:
            if start not in parent:
                parent[start] = None
                stack.append(start)
        while stack:
            node = stack.pop()
            if node == target:
                path = [node]
                step = parent[node]
                while step is not None:
                    path.append(step)
                    step = parent[step]
                # Built from target back to a start; a cycle reads start -> ... -> target.
                return path[::-1]
            for dep in self._dependencies[node]:
                if dep not in parent:
                    parent[dep] = node
                    stack.append(dep)
        return None


def closure_in_order(
    dependencies: Mapping[str, Sequence[str]], targets: Iterable[str]
) -> list[str]:
    """Return *targets* and everything they depend on, dependencies first.

    Each node appears once.  *dependencies* must be acyclic (a
    :class:`DependencyGraph` is).  Time is linear in the closure's nodes + edges;
    no recursion, so chains of any depth are fine.

    Raises:
        KeyError: A target or dependency is not in *dependencies*.
    """
    order: list[str] = []
    seen: set[str] = set()
    for target in targets:
        if target in seen:
            continue
        seen.add(target)
        stack = [(target, iter(dependencies[target]))]
        while stack:
            node, pending = stack[-1]
            for dep in pending:
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, iter(dependencies[dep])))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def inherit_priorities(
    order: Sequence[str],
    dependencies: Mapping[str, Sequence[str]],
    priority: Mapping[str, int],
) -> dict[str, int]:
    """Raise each node's priority to the highest of the nodes that wait on it.

    Args:
        order: Nodes with dependencies first (as from :func:`closure_in_order`).
        dependencies: node -> its dependencies.
        priority: node -> its own priority.

    Returns:
        node -> effective priority: the maximum of its own and every direct or
        transitive dependent's in *order*.
    """
    effective = {node: priority[node] for node in order}
    # Dependents come after their dependencies in *order*, so walking it backwards
    # finalises a node's priority before it is pushed down to its dependencies.
    for node in reversed(order):
        level = effective[node]
        for dep in dependencies[node]:
            if effective[dep] < level:
                effective[dep] = level
    return effective


class GraphRun:
    """The state of one execution of a dependency closure.

    Call :meth:`start` once, then :meth:`finish` for each node handed out to run
    as it ends.  Not thread-safe: the caller serialises calls.

    The state is kept in flat lists indexed by a node's position in *order*,
    with the dependents in one compressed array (CSR), not in an object per
    node: a 100,000-node run then adds a dozen objects for the cyclic garbage
    collector to scan, not 200,000.

    Args:
        order: The nodes, dependencies first (see :func:`closure_in_order`).
        dependencies: node -> its dependencies (all within *order*).
        rules: node -> its trigger rule.
    """

    def __init__(
        self,
        order: Sequence[str],
        dependencies: Mapping[str, Sequence[str]],
        rules: Mapping[str, TriggerRule],
    ) -> None:
        n = len(order)
        index = self._index = {node: i for i, node in enumerate(order)}
        self._names = list(order)
        self._rules = [rules[node] for node in order]
        self._total = [len(dependencies[node]) for node in order]
        fanout = [0] * n
        for node in order:
            for dep in dependencies[node]:
                fanout[index[dep]] += 1
        # first[i]:first[i + 1] is the slice of dependents_of holding i's dependents.
        first = [0] * (n + 1)
        for i in range(n):
            first[i + 1] = first[i] + fanout[i]
        dependents_of = [0] * first[n]
        fill = first[:n]
        for i, node in enumerate(order):
            for dep in dependencies[node]:
                j = index[dep]
                dependents_of[fill[j]] = i
                fill[j] += 1
        self._first = first
        self._dependents_of = dependents_of
        self._succeeded = [0] * n
        self._failed = [0] * n
        self._skipped = [0] * n
        # None: undecided; RUN: handed out to run; otherwise terminal.
        self._state: list[TaskStatus | None] = [None] * n
        self._unfinished = n

    @property
    def done(self) -> bool:
        """True once every node is in a terminal state."""
        return self._unfinished == 0

    def status(self, node: str) -> TaskStatus | None:
        """Return *node*'s terminal status, or None if it has not ended."""
        state = self._state[self._index[node]]
        return state if state is not None and state.is_terminal else None

    def start(self) -> list[str]:
        """Return the nodes that can run at once (those without dependencies)."""
        ready = []
        state = self._state
        for i, total in enumerate(self._total):
            # A node already ended (cancelled before the start) stays ended.
            if total == 0 and state[i] is None:
                state[i] = RUN
                ready.append(self._names[i])
        return ready

    def finish(
        self, node: str, status: TaskStatus
    ) -> tuple[list[str], list[tuple[str, TaskStatus]]]:
        """Record that *node*, handed out to run, ended in *status*.

        Returns:
            The nodes that can now run, and the nodes that were decided without
            running (SKIPPED or UPSTREAM_FAILED) with their status.

        Raises:
            ValueError: *status* is not terminal, or *node* was not running.
        """
        if not status.is_terminal:
            raise ValueError(f"{status!r} is not a terminal status")
        i = self._index[node]
        if self._state[i] is not RUN:
            raise ValueError(f"node {node!r} was not running (state {self._state[i]!r})")
        ready: list[str] = []
        decided: list[tuple[str, TaskStatus]] = []
        self._end(i, status, ready, decided)
        return ready, decided

    def cancel(
        self, nodes: Collection[str] | None = None
    ) -> tuple[list[str], list[str], list[tuple[str, TaskStatus]]]:
        """Mark undecided nodes CANCELLED: all of them, or those in *nodes*.

        Nodes handed out to run are not touched: the caller cancels them and
        reports their end through :meth:`finish`.

        Returns:
            The nodes cancelled here, then (as from :meth:`finish`) the nodes
            that can now run and the nodes decided without running.  Cancelling
            every node decides every dependent, so then the last two are empty.
        """
        ready: list[str] = []
        decided: list[tuple[str, TaskStatus]] = []
        state = self._state
        if nodes is None:
            indices = [i for i, s in enumerate(state) if s is None]
            # Every undecided node ends here, so no dependent is left to judge.
            for i in indices:
                state[i] = TaskStatus.CANCELLED
            self._unfinished -= len(indices)
            return [self._names[i] for i in indices], ready, decided
        cancelled = []
        for name in nodes:
            i = self._index[name]
            if state[i] is None:
                cancelled.append(name)
                self._end(i, TaskStatus.CANCELLED, ready, decided)
        return cancelled, ready, decided

    def _end(
        self,
        i: int,
        status: TaskStatus,
        ready: list[str],
        decided: list[tuple[str, TaskStatus]],
    ) -> None:
        # A worklist, not recursion: a failure can cascade down a 100,000-deep chain.
        names, state, first, dependents_of = (
            self._names,
            self._state,
            self._first,
            self._dependents_of,
        )
        succeeded, failed, skipped = self._succeeded, self._failed, self._skipped
        work = [(i, status)]
        while work:
            i, status = work.pop()
            state[i] = status
            self._unfinished -= 1
            for j in dependents_of[first[i] : first[i + 1]]:
                if state[j] is not None:
                    continue
                if status is TaskStatus.COMPLETED:
                    succeeded[j] += 1
                elif status is TaskStatus.SKIPPED:
                    skipped[j] += 1
                else:
                    failed[j] += 1
                verdict = judge(self._rules[j], self._total[j], succeeded[j], failed[j], skipped[j])
                if verdict is RUN:
                    state[j] = RUN
                    ready.append(names[j])
                elif verdict is not WAIT:
                    decided.append((names[j], verdict))
                    work.append((j, verdict))
