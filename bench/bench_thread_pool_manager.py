"""ThreadPoolManager: the cost of its task records and retries.

* ``submit`` overhead: the same no-op tasks through ``ThreadPoolManager.submit``
  (ids, records, status), ``ThreadPoolExecutor.options(name=...).submit``
  (managed tasks, no records), our plain ``submit`` and the stdlib's.
* a retry-heavy workload: every task fails twice before it succeeds, with a
  1 ms retry delay, against the loop people write by hand on the stdlib pool
  (which sleeps in the worker between attempts).

Run with ``python bench/run_bench.py bench_thread_pool_manager.py``.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import threadloom
from threadloom import RetryPolicy, ThreadPoolManager

N = int(os.environ.get("THREADLOOM_BENCH_MANAGER_N", "20000"))
RETRY_N = int(os.environ.get("THREADLOOM_BENCH_RETRY_N", "2000"))
ROUNDS = int(os.environ.get("THREADLOOM_BENCH_ROUNDS", "5"))
RETRY_DELAY = 0.001


def noop() -> None:
    return None


@pytest.mark.parametrize("impl", ["stdlib", "threadloom", "threadloom-managed", "manager"])
def test_submit_overhead(benchmark: Any, impl: str) -> None:
    """Submit N no-op tasks and wait for all of them, 2 workers."""
    benchmark.extra_info["tasks"] = N
    if impl == "manager":
        manager = ThreadPoolManager(min_workers=2, max_workers=2, keep_finished=N).start()

        def run_manager() -> None:
            submit = manager.submit
            for _ in range(N):
                submit(noop)
            assert manager.wait_all(60)

        try:
            benchmark.pedantic(run_manager, rounds=ROUNDS, iterations=1)
        finally:
            manager.stop()
        return
    ex: Any = (
        cf.ThreadPoolExecutor(max_workers=2)
        if impl == "stdlib"
        else threadloom.ThreadPoolExecutor(max_workers=2)
    )
    submit: Callable[..., Any] = (
        ex.options(name="task").submit if impl == "threadloom-managed" else ex.submit
    )

    def run() -> None:
        futures = [submit(noop) for _ in range(N)]
        for future in futures:
            future.result()

    try:
        benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    finally:
        ex.shutdown()


class FailsTwice:
    """Fails on its first two calls, then succeeds."""

    __slots__ = ("_calls", "_lock")

    def __init__(self) -> None:
        self._calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            self._calls += 1
            calls = self._calls
        if calls <= 2:
            raise ConnectionError("flaky")
        return "ok"


def hand_written_retry(fn: Callable[[], Any], retries: int, delay: float) -> Any:
    for attempt in range(retries + 1):
        try:
            return fn()
        except ConnectionError:
            if attempt == retries:
                raise
            time.sleep(delay)  # holds the worker hostage for the delay
    raise AssertionError("unreachable")


@pytest.mark.parametrize("impl", ["stdlib-hand-written", "manager"])
def test_retry_heavy(benchmark: Any, impl: str) -> None:
    """RETRY_N tasks that each fail twice, 1 ms between attempts, 2 workers."""
    benchmark.extra_info["tasks"] = RETRY_N
    if impl == "manager":
        manager = ThreadPoolManager(min_workers=2, max_workers=2, keep_finished=RETRY_N).start()
        policy = RetryPolicy(max_retries=2, delay=RETRY_DELAY, backoff=1.0)

        def run_manager() -> None:
            ids = [manager.submit_call(FailsTwice(), retry=policy) for _ in range(RETRY_N)]
            assert manager.wait_all(120)
            assert all(manager.get_task_result(i) == "ok" for i in ids)

        try:
            benchmark.pedantic(run_manager, rounds=ROUNDS, iterations=1)
        finally:
            manager.stop()
        return
    ex = cf.ThreadPoolExecutor(max_workers=2)

    def run() -> None:
        futures = [
            ex.submit(hand_written_retry, FailsTwice(), 2, RETRY_DELAY) for _ in range(RETRY_N)
        ]
        assert all(f.result() == "ok" for f in futures)

    try:
        benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    finally:
        ex.shutdown()
