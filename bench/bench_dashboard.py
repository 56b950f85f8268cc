"""What watching costs: pool throughput with and without observers.

* ``bulk``: N no-op tasks through ``ThreadPoolExecutor.submit``, then every
  result; observed = a dashboard open in the process (over a running
  ``ThreadPoolManager``) with one SSE client connected and reading.  The
  executor's own path emits no events: this measures the dashboard's
  background cost (its ticker, uvicorn, the SSE stream) on the GIL.
* ``managed``: N no-op tasks through ``ThreadPoolManager.submit`` then
  ``wait_all``; observed = one no-op subscriber, or the dashboard (its
  subscriber plus the server and one SSE client) on that pool.

Target: observed >= 0.95x unobserved.  Run with
``python bench/run_bench.py bench_dashboard.py`` (each case in a fresh
interpreter) and compare the means of a case's ``plain`` and observed ids.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import threadloom
from threadloom import ThreadPoolManager
from threadloom.dashboard import Dashboard

BULK_N = int(os.environ.get("THREADLOOM_BENCH_N", "100000"))
MANAGED_N = int(os.environ.get("THREADLOOM_BENCH_MANAGER_N", "20000"))
ROUNDS = int(os.environ.get("THREADLOOM_BENCH_ROUNDS", "5"))


def noop() -> None:
    return None


@contextlib.contextmanager
def sse_client(dashboard: Dashboard) -> Iterator[list[int]]:
    """One SSE client reading every message on a thread; yields the count read."""
    read = [0]
    connected = threading.Event()
    stop = threading.Event()

    def consume() -> None:
        with httpx.stream("GET", f"http://127.0.0.1:{dashboard.port}/events", timeout=None) as r:
            connected.set()
            for line in r.iter_lines():
                if line.startswith("data:"):
                    read[0] += 1
                if stop.is_set():
                    return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    assert connected.wait(10), "the SSE client did not connect"
    try:
        yield read
    finally:
        stop.set()
        thread.join(5)


@contextlib.contextmanager
def observed(pool: ThreadPoolManager, how: str) -> Iterator[None]:
    if how == "plain":
        yield
    elif how == "subscriber":
        with pool.subscribe(lambda event: None):
            yield
    elif how == "dashboard":
        with Dashboard(pool) as dashboard, sse_client(dashboard) as read:
            yield
        assert read[0] > 0, "the SSE client read nothing"
    else:  # pragma: no cover
        raise ValueError(how)


@pytest.mark.parametrize("how", ["plain", "dashboard"])
def test_bulk(benchmark: Any, how: str) -> None:
    benchmark.extra_info["tasks"] = BULK_N
    watched = ThreadPoolManager(min_workers=1, max_workers=1).start()
    ex = threadloom.ThreadPoolExecutor(max_workers=2)
    list(ex.map(abs, range(64)))  # start the workers before timing

    def run() -> None:
        submit = ex.submit
        futures = [submit(noop) for _ in range(BULK_N)]
        for future in futures:
            future.result()

    try:
        with observed(watched, how):
            benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    finally:
        ex.shutdown()
        watched.stop()


@pytest.mark.parametrize("how", ["plain", "subscriber", "dashboard"])
def test_managed(benchmark: Any, how: str) -> None:
    benchmark.extra_info["tasks"] = MANAGED_N
    pool = ThreadPoolManager(min_workers=2, max_workers=2, keep_finished=MANAGED_N).start()

    def run() -> None:
        submit = pool.submit
        for _ in range(MANAGED_N):
            submit(noop)
        assert pool.wait_all(120)

    try:
        with observed(pool, how):
            benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    finally:
        pool.stop()
