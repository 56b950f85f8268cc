"""What profiling costs: throughput with ``profile=True`` (100 Hz sampling) vs off.

* ``demo_like``: a crawl-shaped task graph on a ``TaskManager`` with 8
  workers: per source, fetches (IO-bound: 3 ms off the CPU), parses
  (CPU-bound: hashing and word counts over a few KB of text), an aggregate
  per source and one report; ROUNDS executions of 8 sources x 8 articles.
* ``managed``: N no-op tasks through ``ThreadPoolManager.submit`` then
  ``get_task_result`` of each, on 2 workers (``test_submit_result[manager]``
  of bench_managed.py): the worst case, where the profiler's per-attempt
  bookkeeping is compared with tasks that do nothing.

Targets (issue 15): on >= 0.97x off for ``demo_like``, >= 0.95x for
``managed``.  Run with ``python bench/run_bench.py bench_profiling.py`` (each
case in a fresh interpreter) and compare the means of a case's ``off`` and
``on`` ids.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from typing import Any

import pytest

from threadloom import TaskManager, ThreadPoolManager

MANAGED_N = int(os.environ.get("THREADLOOM_BENCH_MANAGER_N", "20000"))
ROUNDS = int(os.environ.get("THREADLOOM_BENCH_ROUNDS", "5"))
SOURCES = 8
ARTICLES = 8
FETCH_LATENCY = 0.003
TEXT = " ".join(f"word{i % 97} token{i % 13} threadloom" for i in range(400))

_never = threading.Event()


def noop() -> None:
    return None


def fetch(source: int, article: int) -> str:
    _never.wait(FETCH_LATENCY)
    return f"{source}-{article} {TEXT}"


def parse(upstream: Any) -> dict[str, int]:
    (text,) = upstream.values()
    digest = hashlib.sha256()
    for _ in range(20):
        digest.update(text.encode())
    words = Counter(text.split())
    return dict(words.most_common(5))


def aggregate(upstream: Any) -> int:
    return sum(sum(counts.values()) for counts in upstream.values())


def report(upstream: Any) -> int:
    return sum(upstream.values())


def build(manager: TaskManager) -> str:
    aggregates = []
    for s in range(SOURCES):
        parses = []
        for a in range(ARTICLES):
            f = manager.register_task(f"fetch:{s}:{a}", fetch, s, a)
            parses.append(
                manager.register_task(
                    f"parse:{s}:{a}", parse, dependencies=[f], results_param="upstream"
                )
            )
        aggregates.append(
            manager.register_task(
                f"aggregate:{s}", aggregate, dependencies=parses, results_param="upstream"
            )
        )
    return manager.register_task(
        "report", report, dependencies=aggregates, results_param="upstream"
    )


@pytest.mark.parametrize("profile", ["off", "on"])
def test_demo_like(benchmark: Any, profile: str) -> None:
    benchmark.extra_info["tasks"] = SOURCES * (2 * ARTICLES + 1) + 1
    pool = ThreadPoolManager(min_workers=8, max_workers=8, profile=profile == "on")
    with TaskManager(thread_pool=pool) as manager:
        pool.start()
        target = build(manager)

        def run() -> None:
            execution = manager.execute_task(target)
            assert manager.wait_for_execution(execution, 120)

        run()  # warm up: workers started, imports done
        try:
            benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
        finally:
            pool.stop()
    if profile == "on":
        assert pool.profiler is not None
        assert pool.profiler.report().samples > 0


@pytest.mark.parametrize("profile", ["off", "on"])
def test_managed(benchmark: Any, profile: str) -> None:
    benchmark.extra_info["tasks"] = MANAGED_N
    pool = ThreadPoolManager(
        min_workers=2, max_workers=2, keep_finished=MANAGED_N, profile=profile == "on"
    ).start()

    def run() -> None:
        submit = pool.submit
        ids = [submit(noop) for _ in range(MANAGED_N)]
        result = pool.get_task_result
        for task_id in ids:
            result(task_id, 120)

    try:
        benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    finally:
        pool.stop()


def _interleaved(pairs: int) -> None:
    """Alternate off and on runs of each workload (the machine's load drifts
    less between neighbours than between two blocks) and print the median of
    the per-pair throughput ratios on/off."""
    import statistics
    import time

    def demo_like(profile: bool) -> float:
        pool = ThreadPoolManager(min_workers=8, max_workers=8, profile=profile)
        with TaskManager(thread_pool=pool) as manager:
            pool.start()
            target = build(manager)
            execution = manager.execute_task(target)  # warm up
            assert manager.wait_for_execution(execution, 120)
            started = time.perf_counter()
            for _ in range(3):
                execution = manager.execute_task(target)
                assert manager.wait_for_execution(execution, 120)
            elapsed = time.perf_counter() - started
            pool.stop()
        return elapsed

    def managed(profile: bool) -> float:
        pool = ThreadPoolManager(
            min_workers=2, max_workers=2, keep_finished=MANAGED_N, profile=profile
        ).start()
        submit = pool.submit
        for _ in range(1000):
            submit(noop)
        assert pool.wait_all(120)
        started = time.perf_counter()
        ids = [submit(noop) for _ in range(MANAGED_N)]
        result = pool.get_task_result
        for task_id in ids:
            result(task_id, 120)
        elapsed = time.perf_counter() - started
        pool.stop()
        return elapsed

    for label, workload in (("demo_like", demo_like), ("managed", managed)):
        ratios = []
        for i in range(pairs):
            # Alternate which goes first, so that neither always runs warm.
            if i % 2:
                on, off = workload(True), workload(False)
            else:
                off, on = workload(False), workload(True)
            ratios.append(off / on)  # throughput on / throughput off
        print(
            f"{label}: throughput on/off median {statistics.median(ratios):.3f} "
            f"(quartiles {statistics.quantiles(ratios, n=4)[0]:.3f}.."
            f"{statistics.quantiles(ratios, n=4)[2]:.3f}, {pairs} pairs)"
        )


if __name__ == "__main__":
    import sys

    _interleaved(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
