"""Task graphs: a TaskManager against the loop people write by hand, and Dask.

Three shapes of no-op tasks, 2 workers, every contender in its own fresh
interpreter (``python bench/run_bench.py bench_graph.py``):

* ``random``: 100,000 nodes, each depending on 0-3 of the 50 before it;
* ``chain``: 100,000 nodes, each depending on the one before;
* ``fan``: 1 -> 10,000 -> 1.

Contenders (the ratio printed is against ``stdlib``):

* ``stdlib``: a ``graphlib.TopologicalSorter`` loop feeding the stdlib pool;
* ``graphlib-threadloom``: the same loop on ``threadloom.ThreadPoolExecutor``;
* ``threadloom``: registered in a ``TaskManager`` with a WAL-file history, then
  executed once (register + execute, history on: a row per node);
* ``dask``: ``dask.threaded.get`` on the same graph (when dask is installed).

``test_memory`` reports the peak traced memory of an execution per node,
beyond the registered tasks (``extra_info``).
"""

from __future__ import annotations

import graphlib
import os
import queue
import random
import tempfile
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor as StdlibExecutor
from pathlib import Path
from typing import Any

import pytest

import threadloom
from threadloom import TaskStatus, ThreadPoolManager
from threadloom.task_manager import TaskManager

WORKERS = 2
ROUNDS = int(os.environ.get("THREADLOOM_BENCH_ROUNDS", "5"))
SIZE = int(os.environ.get("THREADLOOM_BENCH_GRAPH_N", "100000"))
FAN = int(os.environ.get("THREADLOOM_BENCH_FAN_N", "10000"))


def noop(*_: Any) -> None:
    return None


def shape(name: str) -> dict[int, list[int]]:
    if name == "random":
        rng = random.Random(20240501)
        return {
            i: rng.sample(range(max(0, i - 50), i), min(i, rng.randint(0, 3))) for i in range(SIZE)
        }
    if name == "chain":
        return {i: [i - 1] if i else [] for i in range(SIZE)}
    last = FAN + 1
    graph: dict[int, list[int]] = {0: []}
    graph.update({i: [0] for i in range(1, last)})
    graph[last] = list(range(1, last))
    return graph


def graphlib_loop(dag: dict[int, list[int]], executor: Any) -> int:
    sorter = graphlib.TopologicalSorter(dag)
    sorter.prepare()
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()
    count = 0
    while sorter.is_active():
        for node in sorter.get_ready():
            future = executor.submit(noop)
            future.add_done_callback(lambda _, node=node: finished.put(node))
        node = finished.get()
        while True:
            sorter.done(node)
            count += 1
            try:
                node = finished.get_nowait()
            except queue.Empty:
                break
    return count


def run_contender(benchmark: Any, name: str, impl: str) -> None:
    dag = shape(name)
    n = len(dag)
    benchmark.extra_info["nodes"] = n
    run: Callable[[], object]
    cleanup: list[Callable[[], object]] = []
    if impl in ("stdlib", "graphlib-threadloom"):
        executor: Any = (
            StdlibExecutor(WORKERS) if impl == "stdlib" else threadloom.ThreadPoolExecutor(WORKERS)
        )
        cleanup.append(executor.shutdown)

        def run() -> object:
            assert graphlib_loop(dag, executor) == n
            return None

    elif impl == "dask":
        dask_threaded = pytest.importorskip("dask.threaded")
        from multiprocessing.pool import ThreadPool

        pool = ThreadPool(WORKERS)
        cleanup.append(pool.terminate)
        graph = {f"n{i}": (noop, *[f"n{d}" for d in deps]) for i, deps in dag.items()}
        keys = list(graph)

        def run() -> object:
            dask_threaded.get(graph, keys, pool=pool)
            return None

    else:
        directory = tempfile.mkdtemp()
        pool_manager = ThreadPoolManager(min_workers=WORKERS, max_workers=WORKERS).start()
        counter = iter(range(1000))

        def run() -> object:
            # Register + execute, as one would: a new manager and history file
            # per round, a row per node written through WAL.
            path = Path(directory) / f"h{next(counter)}.db"
            manager = TaskManager(thread_pool=pool_manager, history=path, keep_executions=1)
            manager.start()
            ids: list[str] = []
            register = manager.register_task
            for i in range(n):
                ids.append(register(f"n{i}", noop, dependencies=[ids[d] for d in dag[i]]))
            (execution,) = manager.execute_tasks(ids, wait=True)
            assert manager.get_execution_status(execution).status is TaskStatus.COMPLETED
            manager.stop()  # closes the history: every row written
            return None

        cleanup.append(pool_manager.stop)
    try:
        # dask.threaded.get is two orders slower on 100,000 nodes: one round.
        benchmark.pedantic(run, rounds=ROUNDS if impl != "dask" else 1, iterations=1)
    finally:
        for step in cleanup:
            step()
    benchmark.extra_info["us_per_node"] = benchmark.stats.stats.min / n * 1e6


CONTENDERS = ["stdlib", "graphlib-threadloom", "threadloom", "dask"]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("impl", CONTENDERS)
def test_random_dag(benchmark: Any, impl: str) -> None:
    run_contender(benchmark, "random", impl)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("impl", CONTENDERS)
def test_chain(benchmark: Any, impl: str) -> None:
    run_contender(benchmark, "chain", impl)


@pytest.mark.parametrize("impl", CONTENDERS)
def test_fan(benchmark: Any, impl: str) -> None:
    run_contender(benchmark, "fan", impl)


def test_memory(benchmark: Any) -> None:
    """Peak traced memory of one execution of the random DAG, per node, beyond its tasks."""
    dag = shape("random")
    n = len(dag)
    pool = ThreadPoolManager(min_workers=WORKERS, max_workers=WORKERS).start()
    manager = TaskManager(
        thread_pool=pool, history=Path(tempfile.mkdtemp()) / "h.db", keep_executions=1
    )
    manager.start()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ids: list[str] = []
        for i in range(n):
            ids.append(manager.register_task(f"n{i}", noop, dependencies=[ids[d] for d in dag[i]]))
        registered = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]

        def run() -> None:
            manager.execute_tasks(ids, wait=True)

        benchmark.pedantic(run, rounds=1, iterations=1)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
        manager.stop()
        pool.stop()
    benchmark.extra_info["registered_bytes_per_task"] = registered / n
    benchmark.extra_info["execution_peak_bytes_per_node"] = peak / n


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["random", "chain", "fan"])
def test_phases(benchmark: Any, name: str) -> None:
    """Where a node's time goes: registration, execution, and the history writer's tail.

    ``extra_info`` holds each phase in µs a node (best round), and how many of
    the rows the writer had committed when the execution ended.
    """
    import time

    dag = shape(name)
    n = len(dag)
    directory = tempfile.mkdtemp()
    pool_manager = ThreadPoolManager(min_workers=WORKERS, max_workers=WORKERS).start()
    counter = iter(range(1000))
    phases: list[tuple[float, float, float, int]] = []

    def run() -> None:
        path = Path(directory) / f"p{next(counter)}.db"
        started = time.perf_counter()
        manager = TaskManager(thread_pool=pool_manager, history=path, keep_executions=1)
        manager.start()
        ids: list[str] = []
        register = manager.register_task
        for i in range(n):
            ids.append(register(f"n{i}", noop, dependencies=[ids[d] for d in dag[i]]))
        registered = time.perf_counter()
        manager.execute_tasks(ids, wait=True)
        executed = time.perf_counter()
        written_by_then = manager.history.stats().written
        manager.stop()
        stopped = time.perf_counter()
        phases.append(
            (registered - started, executed - registered, stopped - executed, written_by_then)
        )

    try:
        benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    finally:
        pool_manager.stop()
    best = min(phases, key=lambda p: p[0] + p[1] + p[2])
    benchmark.extra_info.update(
        nodes=n,
        register_us_per_node=best[0] / n * 1e6,
        execute_us_per_node=best[1] / n * 1e6,
        history_tail_us_per_node=best[2] / n * 1e6,
        rows_written_when_execution_ended=best[3],
    )
