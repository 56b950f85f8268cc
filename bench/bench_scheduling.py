"""Scheduling benchmarks: fire-time computation, 10,000 live schedules, idle CPU, latency.

Run:
    python -m pytest bench/bench_scheduling.py --benchmark-only -p no:cacheprovider -s

The one-shot measurements (idle CPU, due-to-submit latency) run on the real clock
and print their figures; they are also stored in the benchmark's ``extra_info``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psutil

from threadloom.scheduling import (
    CronSchedule,
    IntervalSchedule,
    ManualClock,
    Scheduler,
    every,
)

UTC = timezone.utc
SCHEDULES = 10_000
START = datetime(2024, 3, 1, tzinfo=UTC)


def _thread_cpu_seconds(thread: threading.Thread) -> float:
    """User + system CPU time of one thread of this process (Linux: by native id)."""
    for info in psutil.Process().threads():
        if info.id == thread.native_id:
            return float(info.user_time + info.system_time)
    raise LookupError("scheduler thread not found")


def _report(benchmark: Any, **figures: float) -> None:
    benchmark.extra_info.update(figures)
    print()
    for name, value in figures.items():
        print(f"    {name}: {value:.6g}")


# --------------------------------------------------------------------------- fire times


def test_next_fire_time_cron_wildcard(benchmark: Any) -> None:
    schedule = CronSchedule("*/5 * * * *", "Europe/London")
    benchmark(schedule.next_fire_time, START)


def test_next_fire_time_cron_fixed_time(benchmark: Any) -> None:
    # Specific times take cronsim's Debian DST path (walks naive wall time).
    schedule = CronSchedule("30 9 * * MON-FRI", "America/New_York")
    benchmark(schedule.next_fire_time, START)


def test_next_fire_time_interval(benchmark: Any) -> None:
    schedule = IntervalSchedule(every(10).minutes, "Europe/London", anchor=START)
    benchmark(schedule.next_fire_time, START + timedelta(days=3))


def test_next_fire_times_100_cron_with_windows(benchmark: Any) -> None:
    schedule = CronSchedule(
        "*/10 * * * *", "Europe/London", windows="MON-FRI 09:00-17:00", blackouts="12:00-13:00"
    )
    benchmark(schedule.next_fire_times, START, 100)


# --------------------------------------------------------------------------- 10,000 schedules


def _mixed_schedules(count: int) -> list[tuple[str, Any]]:
    crons = ["*/5 * * * *", "0 * * * *", "30 2 * * *", "0 9 * * MON-FRI", "15 */3 * * *"]
    out: list[tuple[str, Any]] = []
    for index in range(count):
        if index % 2:
            out.append((f"cron-{index}", CronSchedule(crons[index % 5], "Europe/London")))
        else:
            out.append((f"every-{index}", IntervalSchedule(every(5 + index % 50).minutes, "UTC")))
    return out


def test_add_10000_schedules(benchmark: Any) -> None:
    schedules = _mixed_schedules(SCHEDULES)

    def add_all() -> Scheduler:
        scheduler = Scheduler(lambda job_id, fire: None, ManualClock(START))
        for job_id, schedule in schedules:
            scheduler.add(job_id, schedule)
        return scheduler

    scheduler = benchmark.pedantic(add_all, rounds=3, iterations=1)
    assert len(scheduler) == SCHEDULES


def test_simulated_day_of_10000_schedules(benchmark: Any) -> None:
    """Scheduler thread cost per fire: a simulated day on a manual clock, in 5-minute steps."""
    schedules = _mixed_schedules(SCHEDULES)
    fired = 0

    def submit(job_id: str, fire: datetime) -> None:
        nonlocal fired
        fired += 1
        scheduler.run_finished(job_id)

    clock = ManualClock(START)
    scheduler = Scheduler(submit, clock)
    for job_id, schedule in schedules:
        scheduler.add(job_id, schedule)
    scheduler.start()
    assert clock.wait_for_sleepers(timeout=60)

    def one_day() -> None:
        for _ in range(24 * 12):
            clock.advance(300)
            assert clock.wait_for_sleepers(timeout=60)

    thread = scheduler._thread
    assert thread is not None
    cpu_before = _thread_cpu_seconds(thread)
    benchmark.pedantic(one_day, rounds=1, iterations=1)
    cpu = _thread_cpu_seconds(thread) - cpu_before
    scheduler.stop(timeout=60)
    _report(
        benchmark,
        runs_submitted=fired,
        scheduler_thread_cpu_s=cpu,
        scheduler_cpu_us_per_run=cpu / fired * 1e6,
    )
    assert fired > 0


def test_idle_cpu_with_10000_schedules(benchmark: Any) -> None:
    """10,000 schedules none of which is due for days: the thread should sleep."""
    scheduler = Scheduler(lambda job_id, fire: None)
    for index in range(SCHEDULES):
        if index % 2:
            scheduler.add(f"cron-{index}", CronSchedule("0 0 1 1 *", "UTC"))
        else:
            scheduler.add(f"weekly-{index}", IntervalSchedule(every(7).days, "UTC"))
    scheduler.start()
    thread = scheduler._thread
    assert thread is not None
    window = 5.0
    time.sleep(0.5)  # let it settle into its sleep
    cpu_before = _thread_cpu_seconds(thread)
    benchmark.pedantic(time.sleep, args=(window,), rounds=1, iterations=1)
    cpu = _thread_cpu_seconds(thread) - cpu_before
    scheduler.stop(timeout=10)
    _report(benchmark, idle_window_s=window, scheduler_thread_cpu_s=cpu, cpu_fraction=cpu / window)


def _measure_latency(
    benchmark: Any, build: Callable[[int, datetime], Any], duration: float
) -> None:
    latencies: list[float] = []
    lock = threading.Lock()

    started = datetime.max.replace(tzinfo=UTC)

    def submit(job_id: str, fire: datetime) -> None:
        late = (datetime.now(UTC) - fire).total_seconds()
        # Only fire times after the thread started: adding 10,000 schedules takes
        # about a second, and runs due meanwhile measure the setup, not the scheduler.
        if fire >= started:
            with lock:
                latencies.append(late)
        scheduler.run_finished(job_id)

    scheduler = Scheduler(submit)
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    for index in range(SCHEDULES):
        scheduler.add(f"job-{index}", build(index, base))
    started = datetime.now(UTC)
    scheduler.start()
    thread = scheduler._thread
    assert thread is not None
    cpu_before = _thread_cpu_seconds(thread)
    benchmark.pedantic(time.sleep, args=(duration + 2,), rounds=1, iterations=1)
    cpu = _thread_cpu_seconds(thread) - cpu_before
    scheduler.stop(timeout=10)
    with lock:
        samples = sorted(latencies)
    assert samples, "nothing fired"
    quantiles = statistics.quantiles(samples, n=100)
    _report(
        benchmark,
        runs=len(samples),
        latency_p50_ms=quantiles[49] * 1e3,
        latency_p99_ms=quantiles[98] * 1e3,
        latency_max_ms=samples[-1] * 1e3,
        scheduler_thread_cpu_s=cpu,
    )


def test_latency_sparse_10000_schedules(benchmark: Any) -> None:
    """10,000 schedules, 20 of them every second, the rest idle: wake-up precision."""

    def build(index: int, base: datetime) -> Any:
        if index < 20:
            return IntervalSchedule(every(1).seconds, "UTC", anchor=base)
        return CronSchedule("0 0 1 1 *", "UTC")

    _measure_latency(benchmark, build, duration=5.0)


def test_latency_busy_10000_schedules(benchmark: Any) -> None:
    """10,000 schedules every 10 s, spread evenly: 1,000 runs a second."""

    def build(index: int, base: datetime) -> Any:
        # One period back, so the first fires are at base + 0..10 s, 1 ms apart.
        anchor = base - timedelta(seconds=10) + timedelta(milliseconds=index)
        return IntervalSchedule(every(10).seconds, "UTC", anchor=anchor)

    _measure_latency(benchmark, build, duration=10.0)
