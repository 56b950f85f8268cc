"""What moving to a Dask cluster costs, and what it buys.

Run (needs ``threadloom[dask]``):

    PYTHONPATH=src python bench/bench_distributed.py [--nodes 10000] [--tasks 200] [--workers 2]

Two measurements, each the same TaskManager graph on the local pool and on a
``LocalCluster`` of ``--workers`` single-threaded worker processes on 127.0.0.1
(cluster start-up is excluded, the client's submissions are included):

* **per-node overhead**: a graph of ``--nodes`` no-op tasks (each depending on
  up to three of the 50 before it).  The price of a cluster: every node is a
  scheduler round trip and a worker hop instead of a heap push.
* **CPU-bound Python**: ``--tasks`` independent tasks of ~50 ms of pure-Python
  arithmetic.  The local pool's threads share one GIL; the cluster's worker
  processes do not.

Prints the figures and the ratios (cluster / local for overhead, local /
cluster for the speedup).  Figures from a shared machine vary by tens of per
cent run to run; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import os
import random
import time

import distributed

from threadloom import TaskStatus
from threadloom.distributed import DaskBackend
from threadloom.task_manager import TaskManager
from threadloom.thread_pool_manager import ThreadPoolManager


def noop() -> None:
    return None


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    """Iterations of :func:`burn` that take about *seconds* here, alone."""
    n = 20_000
    while True:
        started = time.perf_counter()
        burn(n)
        took = time.perf_counter() - started
        if took > 0.01:
            return max(1, int(n * seconds / took))
        n *= 2


def random_dag(nodes: int) -> dict[int, list[int]]:
    rng = random.Random(20240501)
    return {
        i: rng.sample(range(max(0, i - 50), i), min(i, rng.randint(0, 3))) for i in range(nodes)
    }


def run_graph(manager: TaskManager, ids: list[str]) -> float:
    started = time.perf_counter()
    (execution,) = manager.execute_tasks(ids)
    assert manager.wait_for_execution(execution, timeout=3600)
    took = time.perf_counter() - started
    status = manager.get_execution_status(execution).status
    assert status is TaskStatus.COMPLETED, status
    return took


def overhead(manager: TaskManager, dag: dict[int, list[int]]) -> float:
    ids: list[str] = []
    for i in range(len(dag)):
        ids.append(manager.register_task(f"n{i}", noop, dependencies=[ids[d] for d in dag[i]]))
    return run_graph(manager, ids)


def cpu_bound(manager: TaskManager, tasks: int, iterations: int) -> float:
    ids = [manager.register_task(f"burn{i}", burn, iterations) for i in range(tasks)]
    return run_graph(manager, ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="cluster worker processes")
    parser.add_argument("--threads", type=int, default=4, help="local pool threads")
    args = parser.parse_args()

    dag = random_dag(args.nodes)
    iterations = calibrate(0.05)
    print(f"cpus: {os.cpu_count()}; burn({iterations}) takes ~50 ms alone")

    pool = ThreadPoolManager(min_workers=args.threads, max_workers=args.threads)
    pool.start()
    # The CPU-bound run goes first on each backend, so that neither runs in
    # the wake of 10,000 finished nodes.
    with TaskManager(thread_pool=pool, keep_executions=1) as local:
        local_cpu = cpu_bound(local, args.tasks, iterations)
    with TaskManager(thread_pool=pool, keep_executions=1) as local:
        local_graph = overhead(local, dag)
    pool.stop()

    cluster = distributed.LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    backend = DaskBackend(client)
    try:
        with TaskManager(cluster=backend, keep_executions=1) as remote:
            dask_cpu = cpu_bound(remote, args.tasks, iterations)
        with TaskManager(cluster=backend, keep_executions=1) as remote:
            dask_graph = overhead(remote, dag)
    finally:
        backend.close()
        client.close()
        cluster.close()

    n = args.nodes
    print(
        f"no-op graph of {n} nodes: local pool ({args.threads} threads) {local_graph:.2f} s "
        f"= {local_graph / n * 1e6:.0f} us/node; LocalCluster ({args.workers} processes) "
        f"{dask_graph:.2f} s = {dask_graph / n * 1e6:.0f} us/node; "
        f"ratio cluster/local {dask_graph / local_graph:.1f}x"
    )
    print(
        f"{args.tasks} CPU-bound tasks of ~50 ms: local pool {local_cpu:.2f} s; "
        f"LocalCluster {dask_cpu:.2f} s; speedup local/cluster {local_cpu / dask_cpu:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
