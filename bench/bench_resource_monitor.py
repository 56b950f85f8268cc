"""The ResourceMonitor's own cost: its thread's CPU use at a 1 s interval, and its calls.

Run:
    python -m pytest bench/bench_resource_monitor.py --benchmark-only -p no:cacheprovider

The target is under 0.5% of one core for the monitor thread at check_interval=1.0.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from threadloom.resource_monitor import ResourceMonitor

OBSERVE_SECONDS = 10.0
TARGET_PERCENT_OF_ONE_CORE = 0.5


def _thread_cpu_seconds(thread: threading.Thread) -> float:
    """CPU time of another thread, from its POSIX CPU-time clock (ns resolution)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


@pytest.mark.skipif(
    not hasattr(time, "pthread_getcpuclockid"), reason="needs per-thread CPU clocks"
)
def test_monitor_thread_cpu_at_one_second_interval(benchmark: Any) -> None:
    """Share of one core the monitor thread uses over OBSERVE_SECONDS at a 1 s interval."""

    def observe() -> float:
        monitor = ResourceMonitor(check_interval=1.0)
        with monitor:
            thread = monitor._thread
            assert thread is not None
            # Measure from the first regular sample, so start-up is excluded.
            first = threading.Event()
            while not monitor.get_samples():
                first.wait(0.01)
            cpu_start, wall_start = _thread_cpu_seconds(thread), time.monotonic()
            threading.Event().wait(OBSERVE_SECONDS)
            cpu_used = _thread_cpu_seconds(thread) - cpu_start
            wall = time.monotonic() - wall_start
            samples = len(monitor.get_samples())
        percent = 100.0 * cpu_used / wall
        benchmark.extra_info["monitor_thread_cpu_percent_of_one_core"] = round(percent, 4)
        benchmark.extra_info["samples"] = samples
        benchmark.extra_info["cpu_ms_per_sample"] = round(1000 * cpu_used / max(1, samples - 1), 3)
        print(
            f"\nmonitor thread: {percent:.4f}% of one core over {wall:.1f} s "
            f"({samples} samples, {1000 * cpu_used:.2f} ms CPU)"
        )
        return percent

    percent = benchmark.pedantic(observe, rounds=1, iterations=1)
    assert percent < TARGET_PERCENT_OF_ONE_CORE


def test_one_sample(benchmark: Any) -> None:
    """The cost of one sample on the caller's thread (the monitor thread pays this per interval)."""
    monitor = ResourceMonitor(check_interval=60.0)
    benchmark(monitor.sample_now)


def test_get_current_usage_while_running(benchmark: Any) -> None:
    """A caller's read of the latest sample: no sampling, no waiting."""
    with ResourceMonitor(check_interval=60.0) as monitor:
        monitor.sample_now()
        usage = benchmark(monitor.get_current_usage)
    assert 0.0 <= usage["cpu"] <= 100.0


def test_observe_task(benchmark: Any) -> None:
    """What a pool pays per finished task to feed the sizing advice."""
    monitor = ResourceMonitor(check_interval=60.0)
    benchmark(monitor.observe_task, 0.010, 0.002)


def test_calculate_optimal_thread_count(benchmark: Any) -> None:
    """What a pool pays per resize decision."""
    monitor = ResourceMonitor(check_interval=60.0)
    monitor.sample_now()
    monitor.observe_task(0.010, 0.002)
    benchmark(monitor.calculate_optimal_thread_count, 2, 64)
