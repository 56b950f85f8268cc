"""Benchmarks of the task manager: a 100,000-node DAG, and history writes.

Run:
    PYTHONPATH=src python -m pytest bench/bench_task_manager.py --benchmark-only -p no:cacheprovider

The DAG benchmarks execute the same random DAG of no-op tasks (each node
depends on up to three of the 50 nodes before it) two ways, on 4 workers:

* ``test_dag_threadloom``: registered in a TaskManager, executed as one
  execution (closure, priority inheritance, trigger rules, results mapping,
  a history row per task on the writer thread);
* ``test_dag_stdlib_graphlib``: the hand-written baseline, a
  ``graphlib.TopologicalSorter`` loop feeding ``concurrent.futures.ThreadPoolExecutor``.

Per-node overhead is the time of one round divided by the node count.
"""

from __future__ import annotations

import graphlib
import queue
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor as StdlibExecutor
from pathlib import Path

import pytest

from threadloom import TaskStatus
from threadloom.history import TaskHistory, TaskRunRecord
from threadloom.task_manager import TaskManager
from threadloom.thread_pool_manager import ThreadPoolManager

NODES = 100_000
WORKERS = 4


def noop() -> None:
    return None


@pytest.fixture(scope="module")
def dag() -> dict[int, list[int]]:
    rng = random.Random(20240501)
    return {
        i: rng.sample(range(max(0, i - 50), i), min(i, rng.randint(0, 3))) for i in range(NODES)
    }


@pytest.fixture(scope="module")
def manager(dag: dict[int, list[int]]) -> Iterator[tuple[TaskManager, list[str]]]:
    pool = ThreadPoolManager(min_workers=WORKERS, max_workers=WORKERS)
    pool.start()
    manager = TaskManager(thread_pool=pool, keep_executions=1)
    manager.start()
    ids: list[str] = []
    started = time.perf_counter()
    for i in range(NODES):
        ids.append(manager.register_task(f"n{i}", noop, dependencies=[ids[d] for d in dag[i]]))
    elapsed = time.perf_counter() - started
    print(f"\nregistered {NODES} tasks in {elapsed:.2f} s ({elapsed / NODES * 1e6:.1f} us/task)")
    yield manager, ids
    manager.stop()
    pool.stop()


def test_dag_threadloom(benchmark, manager: tuple[TaskManager, list[str]]) -> None:  # type: ignore[no-untyped-def]
    task_manager, ids = manager

    def run() -> str:
        (execution,) = task_manager.execute_tasks(ids, wait=True)
        return execution

    execution = benchmark.pedantic(run, rounds=3, iterations=1)
    assert task_manager.get_execution_status(execution).status is TaskStatus.COMPLETED
    benchmark.extra_info["nodes"] = NODES
    benchmark.extra_info["us_per_node"] = benchmark.stats.stats.mean / NODES * 1e6


def test_dag_stdlib_graphlib(benchmark, dag: dict[int, list[int]]) -> None:  # type: ignore[no-untyped-def]
    def run() -> int:
        sorter = graphlib.TopologicalSorter(dag)
        sorter.prepare()
        finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        count = 0
        with StdlibExecutor(WORKERS) as executor:
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

    assert benchmark.pedantic(run, rounds=3, iterations=1) == NODES
    benchmark.extra_info["us_per_node"] = benchmark.stats.stats.mean / NODES * 1e6


RECORDS = 100_000


def _records() -> list[TaskRunRecord]:
    now = time.time()
    return [
        TaskRunRecord(
            f"e:{i}",
            "e",
            f"t{i % 1000}",
            f"task {i % 1000}",
            TaskStatus.COMPLETED,
            1,
            now,
            now,
            now + i * 1e-6,
            0.001,
            None,
            None,
            ("bench",),
        )
        for i in range(RECORDS)
    ]


@pytest.mark.parametrize("where", ["memory", "file"])
def test_history_write_throughput(benchmark, tmp_path: Path, where: str) -> None:  # type: ignore[no-untyped-def]
    records = _records()
    counter = iter(range(1000))

    def run() -> None:
        path = ":memory:" if where == "memory" else tmp_path / f"h{next(counter)}.db"
        history = TaskHistory(path)
        for record in records:
            history.record_run(record)
        assert history.flush(timeout=600)
        assert history.stats().written == RECORDS
        history.close()

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["records_per_second"] = RECORDS / benchmark.stats.stats.mean
