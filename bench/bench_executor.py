"""ThreadPoolExecutor throughput and latency against the stdlib and native peers.

Run each benchmark in a fresh interpreter (``python bench/run_bench.py``), on
the installed package, with 2 workers unless a test says otherwise.  The cyclic
GC stays on: users run with it on.

Peers: ``fastthreadpool`` (Cython, returns no futures) when installed, and
``multiprocessing.pool.ThreadPool`` for map (fastthreadpool's ``map`` hands
back no results to compare).  ``cymade`` is not on PyPI here.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.pool import ThreadPool
from typing import Any

import pytest

import threadloom

N = int(os.environ.get("THREADLOOM_BENCH_N", "100000"))
ROUNDS = int(os.environ.get("THREADLOOM_BENCH_ROUNDS", "5"))

try:
    import fastthreadpool  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - optional peer
    fastthreadpool = None


def noop() -> None:
    return None


def identity(x: Any) -> Any:
    return x


def _peer_available(name: str) -> None:
    if name == "fastthreadpool" and fastthreadpool is None:
        pytest.skip("fastthreadpool is not installed")


EXECUTORS = ["stdlib", "threadloom"]


def make_executor(name: str, workers: int = 2) -> Any:
    if name == "stdlib":
        return cf.ThreadPoolExecutor(max_workers=workers)
    return threadloom.ThreadPoolExecutor(max_workers=workers)


def _warm(ex: Any) -> None:
    # Start every worker before timing.
    list(ex.map(identity, range(64)))


# ------------------------------------------------------------------ floor


def test_floor_direct_loop(benchmark: Any) -> None:
    """A plain Python loop calling the no-op: the floor no pool can beat."""

    def run() -> None:
        for _ in range(N):
            noop()

    benchmark.extra_info["tasks"] = N
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)


# ------------------------------------------------------------------- bulk


@pytest.mark.parametrize("impl", [*EXECUTORS, "fastthreadpool"])
def test_bulk_submit_then_collect(benchmark: Any, impl: str) -> None:
    """Submit N no-op tasks, then collect every result."""
    _peer_available(impl)
    benchmark.extra_info["tasks"] = N
    if impl == "fastthreadpool":

        def run_peer() -> None:
            pool = fastthreadpool.Pool(2)
            for _ in range(N):
                pool.submit(noop)
            pool.shutdown()
            assert len(pool.done) == N

        benchmark.pedantic(run_peer, rounds=ROUNDS, iterations=1)
        return
    ex = make_executor(impl)
    _warm(ex)

    def run() -> None:
        submit = ex.submit
        futures = [submit(noop) for _ in range(N)]
        for future in futures:
            future.result()

    try:
        benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    finally:
        ex.shutdown()


# -------------------------------------------------------------------- map


@pytest.mark.parametrize("impl", [*EXECUTORS, "multiprocessing.ThreadPool"])
def test_map(benchmark: Any, impl: str) -> None:
    """``list(map(identity, range(N)))`` on the pool: results in order."""
    _peer_available(impl)
    items = list(range(N))
    benchmark.extra_info["tasks"] = N
    if impl == "multiprocessing.ThreadPool":
        pool = ThreadPool(2)
        try:
            result = benchmark.pedantic(lambda: pool.map(identity, items), rounds=ROUNDS)
        finally:
            pool.terminate()
    else:
        ex = make_executor(impl)
        _warm(ex)
        try:
            result = benchmark.pedantic(lambda: list(ex.map(identity, items)), rounds=ROUNDS)
        finally:
            ex.shutdown()
    assert result == items


# -------------------------------------------------------------- round trip


ROUND_TRIPS = int(os.environ.get("THREADLOOM_BENCH_ROUND_TRIPS", "5000"))


@pytest.mark.parametrize("impl", [*EXECUTORS, "fastthreadpool"])
def test_round_trip(benchmark: Any, impl: str) -> None:
    """``submit(noop).result()`` in a loop: bound by thread wake-up."""
    _peer_available(impl)
    benchmark.extra_info["tasks"] = ROUND_TRIPS
    if impl == "fastthreadpool":
        pool = fastthreadpool.Pool(2)
        done = threading.Event()

        def on_done(_: Any) -> None:
            done.set()

        def run_peer() -> None:
            for _ in range(ROUND_TRIPS):
                done.clear()
                pool.submit_done(noop, on_done)
                done.wait()

        try:
            benchmark.pedantic(run_peer, rounds=ROUNDS, iterations=1)
        finally:
            pool.shutdown()
        return
    ex = make_executor(impl)
    _warm(ex)

    def run() -> None:
        submit = ex.submit
        for _ in range(ROUND_TRIPS):
            submit(noop).result()

    try:
        benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    finally:
        ex.shutdown()


# ---------------------------------------------------------------- priority

QUEUED = int(os.environ.get("THREADLOOM_BENCH_QUEUED", "50000"))


@pytest.mark.parametrize("impl", EXECUTORS)
def test_queue_low_priority_behind_a_busy_worker(benchmark: Any, impl: str) -> None:
    """Queue QUEUED tasks behind one busy worker; ours queue them at LOW and
    check that a CRITICAL task submitted last runs next.  The timing includes,
    for ours, running the blocker and the CRITICAL task after the queueing."""
    benchmark.extra_info["tasks"] = QUEUED

    def setup() -> tuple[tuple[Any, threading.Event, Callable[..., Any]], dict[str, Any]]:
        ex = make_executor(impl, workers=1)
        gate = threading.Event()
        started = threading.Event()
        ex.submit(lambda: (started.set(), gate.wait()))
        started.wait()
        submit = (
            ex.options(priority=threadloom.TaskPriority.LOW).submit
            if impl == "threadloom"
            else ex.submit
        )
        return (ex, gate, submit), {}

    low_ran_before_critical: list[int] = []

    def run(ex: Any, gate: threading.Event, submit: Callable[..., Any]) -> None:
        low_ran: list[None] = []
        for _ in range(QUEUED):
            submit(low_ran.append, None)
        critical = None
        if impl == "threadloom":
            critical = ex.options(priority=threadloom.TaskPriority.CRITICAL).submit(
                lambda: low_ran_before_critical.append(len(low_ran))
            )
        gate.set()
        if critical is not None:
            critical.result()
        ex.shutdown(wait=False, cancel_futures=True)

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS)
    if impl == "threadloom":
        # The CRITICAL task, submitted last, ran before every LOW one.
        assert low_ran_before_critical == [0] * ROUNDS


# ------------------------------------------------------------------ memory

MEMORY_TASKS = int(os.environ.get("THREADLOOM_BENCH_MEMORY_TASKS", "300000"))


@pytest.mark.parametrize("impl", EXECUTORS)
def test_memory_per_queued_task(benchmark: Any, impl: str) -> None:
    """Bytes of RSS per pending task, with MEMORY_TASKS queued behind a busy worker."""
    import gc

    import psutil

    process = psutil.Process()
    per_task: list[float] = []

    def run() -> None:
        ex = make_executor(impl, workers=1)
        gate = threading.Event()
        started = threading.Event()
        ex.submit(lambda: (started.set(), gate.wait()))
        started.wait()
        gc.collect()
        before = process.memory_info().rss
        futures = [ex.submit(noop) for _ in range(MEMORY_TASKS)]
        gc.collect()
        after = process.memory_info().rss
        per_task.append((after - before) / MEMORY_TASKS)
        gate.set()
        ex.shutdown(wait=True, cancel_futures=True)
        del futures

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["bytes_per_task"] = round(min(per_task), 1)
    print(f"\n{impl}: {min(per_task):.1f} bytes per queued task")


# ------------------------------------------------------------ GIL-releasing

BUFFER = os.urandom(256 * 1024)
HASHES = int(os.environ.get("THREADLOOM_BENCH_HASHES", "400"))


def sha256_buffer() -> bytes:
    return hashlib.sha256(BUFFER).digest()


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("impl", EXECUTORS)
def test_sha256_throughput(benchmark: Any, impl: str, workers: int) -> None:
    """sha256 over 256 KiB buffers: the GIL is released while hashing."""
    ex = make_executor(impl, workers=workers)
    _warm(ex)
    benchmark.extra_info["tasks"] = HASHES

    def run() -> None:
        futures = [ex.submit(sha256_buffer) for _ in range(HASHES)]
        for future in futures:
            future.result()

    try:
        benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    finally:
        ex.shutdown()


def test_sanity_native_core_in_use() -> None:
    assert threadloom.NATIVE, "benchmarks must run on the installed native core"
    assert time.monotonic() > 0
