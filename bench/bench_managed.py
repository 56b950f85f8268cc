"""Managed tasks on the native core: what a name, a retry policy and a deadline cost.

Every contender submits the same N no-op tasks to 2 workers and collects
every result; ``run_bench.py`` runs each in a fresh interpreter and prints its
ratio against the ``stdlib`` run of the same benchmark.

* ``test_submit_result``: the stdlib's ``submit`` + ``result``; ours plain;
  ours through ``options(name=, retry=, timeout=)`` (a managed task with a
  deadline armed and a retry policy); ``ThreadPoolManager.submit`` +
  ``get_task_result`` (ids, records, status).
* ``test_retry_heavy``: 2,000 tasks that each fail twice, 1 ms between
  attempts: tenacity's ``Retrying`` on the stdlib pool (it sleeps in the
  worker), the hand-written loop, and the manager (no worker ever sleeps).
* ``test_retry_gap``: a 1 ms retry behind a backlog of 2,000 queued tasks of
  its priority: how long after its delay it runs again (``extra_info``).

Run with ``python bench/run_bench.py bench_managed.py``.
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
from threadloom import RetryPolicy, ThreadPoolManager, current_task

N = int(os.environ.get("THREADLOOM_BENCH_MANAGED_N", "50000"))
RETRY_N = int(os.environ.get("THREADLOOM_BENCH_RETRY_N", "2000"))
ROUNDS = int(os.environ.get("THREADLOOM_BENCH_ROUNDS", "5"))
RETRY_DELAY = 0.001


def noop() -> None:
    return None


@pytest.mark.parametrize("impl", ["stdlib", "plain", "options", "manager"])
def test_submit_result(benchmark: Any, impl: str) -> None:
    """N no-op tasks submitted, then every result collected; 2 workers."""
    benchmark.extra_info["tasks"] = N
    if impl == "manager":
        manager = ThreadPoolManager(min_workers=2, max_workers=2, keep_finished=N).start()

        def run_manager() -> None:
            submit = manager.submit
            ids = [submit(noop) for _ in range(N)]
            result = manager.get_task_result
            for task_id in ids:
                result(task_id)

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
        ex.options(name="task", retry=RetryPolicy(3, delay=0.01), timeout=30.0).submit
        if impl == "options"
        else ex.submit
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


@pytest.mark.parametrize("impl", ["stdlib", "stdlib-tenacity", "manager"])
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
    if impl == "stdlib-tenacity":
        tenacity = pytest.importorskip("tenacity")
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_fixed(RETRY_DELAY),
            retry=tenacity.retry_if_exception_type(ConnectionError),
            reraise=True,
        )

        def call(fn: Callable[[], Any]) -> Any:
            return retrying(fn)

    else:

        def call(fn: Callable[[], Any]) -> Any:
            return hand_written_retry(fn, 2, RETRY_DELAY)

    def run() -> None:
        futures = [ex.submit(call, FailsTwice()) for _ in range(RETRY_N)]
        assert all(f.result() == "ok" for f in futures)

    try:
        benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    finally:
        ex.shutdown()


def test_retry_gap(benchmark: Any) -> None:
    """How long a due 1 ms retry waits for a free worker behind 2,000 tasks queued after it."""
    gaps: list[float] = []

    def run() -> None:
        ex = threadloom.ThreadPoolExecutor(max_workers=1)
        try:
            hold, holding = threading.Event(), threading.Event()
            due: list[float] = []
            again: list[float] = []

            def flaky() -> None:
                if current_task().attempt == 1:
                    due.append(time.perf_counter() + RETRY_DELAY)
                    raise ConnectionError("first attempt")
                again.append(time.perf_counter())

            def block() -> None:
                holding.set()
                hold.wait(10)

            future = ex.options(retry=RetryPolicy(1, delay=RETRY_DELAY, backoff=1.0)).submit(
                flaky
            )
            ex.options(priority=3).submit(block)  # after flaky's first attempt
            assert holding.wait(10)
            backlog = [ex.submit(noop) for _ in range(2000)]
            time.sleep(RETRY_DELAY * 5)  # the retry is due while the worker is held
            released = time.perf_counter()
            hold.set()
            future.result(10)
            for f in backlog:
                f.result(10)
            # From when it could run (due, and the worker free) to when it did.
            gaps.append(again[0] - max(due[0], released))
        finally:
            ex.shutdown()

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["gap_ms_min"] = min(gaps) * 1e3
    benchmark.extra_info["gap_ms_max"] = max(gaps) * 1e3
