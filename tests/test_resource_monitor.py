"""ResourceMonitor: real psutil readings, alert hysteresis, and the thread-count rule.

Tests that check readings use the real PsutilSampler.  Tests of the threshold
logic and the sizing rule inject samples through a scripted sampler (values only).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from threadloom._limits import read_memory_limit, read_usable_cpu_count
from threadloom.resource_monitor import (
    RESOURCE_TYPES,
    PsutilSampler,
    ResourceAlert,
    ResourceMonitor,
    ResourceSample,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "resource_monitor_example.py"
WAIT = 10.0  # bound of every wait: a bug fails the test instead of hanging it


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll *predicate* until it holds or *timeout* passes; return whether it held."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.005)
    return True


BASE = ResourceSample(
    timestamp=1_000_000.0,
    interval=1.0,
    cpu_percent=10.0,
    cpu_source="cpu_times",
    cpu_count=4,
    cpu_count_source="host",
    memory_percent=10.0,
    memory_used_bytes=100,
    memory_limit_bytes=1000,
    memory_limit_source="host",
    disk_percent=10.0,
    disk_path="/",
    disk_used_bytes=10,
    disk_total_bytes=100,
    io_percent=0.0,
    disk_read_bytes_per_s=0.0,
    disk_write_bytes_per_s=0.0,
    io_ceiling_bytes_per_s=1e8,
    io_ceiling_source="configured",
    net_sent_bytes_per_s=0.0,
    net_recv_bytes_per_s=0.0,
)


def sample(**changes: float) -> ResourceSample:
    """BASE with *changes*, e.g. ``sample(cpu_percent=90)``."""
    return replace(BASE, **changes)  # type: ignore[arg-type]


class ScriptedSampler:
    """Injects values: returns the given samples in turn, then repeats the last."""

    def __init__(self, samples: Iterable[ResourceSample] = (BASE,)) -> None:
        self.samples = list(samples)
        self.primes = 0
        self.calls = 0
        self.lock = threading.Lock()

    def prime(self) -> None:
        self.primes += 1

    def sample(self) -> ResourceSample:
        with self.lock:
            self.calls += 1
            if len(self.samples) > 1:
                return self.samples.pop(0)
            return self.samples[0]


class Recorder:
    """A callback that records its calls and signals each one."""

    def __init__(self, only: str | None = None) -> None:
        self.only = only
        self.calls: list[tuple[str, float, float]] = []
        self.called = threading.Event()

    def __call__(self, resource_type: str, value: float, threshold: float) -> None:
        if self.only is not None and resource_type != self.only:
            return  # a real machine under load may cross other thresholds too
        self.calls.append((resource_type, value, threshold))
        self.called.set()

    def types(self) -> list[str]:
        return [call[0] for call in self.calls]


def scripted_monitor(**kwargs: float) -> tuple[ResourceMonitor, ScriptedSampler]:
    sampler = ScriptedSampler()
    return ResourceMonitor(sampler=sampler, **kwargs), sampler  # type: ignore[arg-type]


# -- real readings ------------------------------------------------------------------


def test_real_usage_is_in_range_and_matches_the_system() -> None:
    monitor = ResourceMonitor(check_interval=60.0)
    usage = monitor.get_current_usage()
    for name in RESOURCE_TYPES:
        assert 0.0 <= usage[name] <= 100.0, name
    limit = read_memory_limit()
    assert (usage["memory_limit_bytes"], usage["memory_limit_source"]) == (
        limit.bytes,
        limit.source,
    )
    cpu_limit = read_usable_cpu_count()
    assert (usage["cpu_count"], usage["cpu_count_source"]) == (cpu_limit.count, cpu_limit.source)
    assert usage["disk_total_bytes"] == psutil.disk_usage("/").total
    if limit.source == "host":
        memory = psutil.virtual_memory()
        # Memory moves between the two readings; 2% of the machine is plenty.
        assert abs(usage["memory_used_bytes"] - (memory.total - memory.available)) < (
            memory.total * 0.02
        )
    assert usage["memory"] == pytest.approx(
        100.0 * usage["memory_used_bytes"] / usage["memory_limit_bytes"]
    )
    for rate in ("disk_read_bytes_per_s", "disk_write_bytes_per_s", "net_sent_bytes_per_s"):
        assert usage[rate] >= 0.0
    assert usage["timestamp"] == pytest.approx(time.time(), abs=60)


def test_cpu_work_shows_and_others_psutil_calls_do_not_reset_the_baseline() -> None:
    sampler = PsutilSampler()
    sampler.prime()
    primed_at = time.monotonic()
    # Burn 0.2 s of this thread's CPU time: an amount of work, not a wait.
    start = time.thread_time()
    while time.thread_time() - start < 0.2:
        pass
    # Another user of psutil resets psutil's own shared cpu_percent baseline...
    psutil.cpu_percent(interval=None)
    psutil.disk_io_counters()
    elapsed_before_sample = time.monotonic() - primed_at
    reading = sampler.sample()
    # ...but this sample still measures from its own prime, and sees the work.
    assert reading.interval >= elapsed_before_sample
    assert reading.cpu_source == "cpu_times"
    assert reading.cpu_percent > 0.0


def test_disk_writes_and_network_traffic_show_as_rates(tmp_path: Path) -> None:
    sampler = PsutilSampler(disk_path=str(tmp_path), io_ceiling_bytes_per_s=1.0)
    payload = os.urandom(4 * 1024 * 1024)
    sampler.prime()
    with open(tmp_path / "blob", "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    with _tcp_pair() as (left, right):
        sent = threading.Thread(target=left.sendall, args=(payload,))
        sent.start()
        received = 0
        while received < len(payload):
            received += len(right.recv(1 << 20))
        sent.join(WAIT)
    reading = sampler.sample()
    if psutil.disk_io_counters() is not None and not _in_memory_filesystem(tmp_path):
        assert reading.disk_write_bytes_per_s * reading.interval >= len(payload)
        # A ceiling of 1 byte/s makes any activity 100%.
        assert reading.io_percent == 100.0
    assert reading.io_ceiling_source == "configured"
    # Loopback traffic counts in the totals.
    assert reading.net_sent_bytes_per_s * reading.interval >= len(payload)
    assert reading.net_recv_bytes_per_s * reading.interval >= len(payload)


def _in_memory_filesystem(path: Path) -> bool:
    """Whether *path* is on tmpfs, whose writes never reach a disk counter."""
    resolved = str(path.resolve())
    mounts = [
        part
        for part in psutil.disk_partitions(all=True)
        if resolved == part.mountpoint or resolved.startswith(part.mountpoint.rstrip("/") + "/")
    ]
    if not mounts:
        return False
    return max(mounts, key=lambda part: len(part.mountpoint)).fstype in ("tmpfs", "ramfs")


class _tcp_pair:
    """A connected loopback TCP pair (psutil counts loopback interfaces)."""

    def __enter__(self) -> tuple[socket.socket, socket.socket]:
        with socket.create_server(("127.0.0.1", 0)) as server:
            self.left = socket.create_connection(server.getsockname(), timeout=WAIT)
            self.right, _ = server.accept()
        self.right.settimeout(WAIT)
        return self.left, self.right

    def __exit__(self, *exc: object) -> None:
        self.left.close()
        self.right.close()


def test_measured_io_ceiling_has_a_floor() -> None:
    reading = PsutilSampler().sample()
    assert reading.io_ceiling_source == "measured"
    assert reading.io_ceiling_bytes_per_s >= 100 * 1024 * 1024


def test_start_primes_so_the_first_sample_measures_from_start() -> None:
    monitor = ResourceMonitor(check_interval=60.0)
    started_before = time.monotonic()
    with monitor:
        usage = monitor.get_current_usage()
        assert usage["interval"] <= time.monotonic() - started_before


def test_history_is_bounded_timestamped_and_a_copy() -> None:
    monitor = ResourceMonitor(check_interval=60.0, history_size=3)
    taken = [monitor.sample_now() for _ in range(5)]
    history = monitor.get_history()
    assert [entry["timestamp"] for entry in history] == [s.timestamp for s in taken[-3:]]
    timestamps = [entry["timestamp"] for entry in history]
    assert timestamps == sorted(timestamps)
    history.clear()
    history_again = monitor.get_history()
    assert len(history_again) == 3
    assert monitor.get_samples(limit=2) == tuple(taken[-2:])
    assert monitor.get_history(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        monitor.get_history(limit=-1)


def test_real_monitor_thread_fires_on_a_provoked_crossing_then_recovers() -> None:
    alerts, recoveries = Recorder(only="memory"), Recorder(only="memory")
    # Memory use is always above 0.01% of the limit: the first sample crosses.
    monitor = ResourceMonitor(check_interval=0.02, memory_threshold=0.01)
    monitor.add_callback(alerts)
    monitor.add_recovery_callback(recoveries)
    with monitor:
        assert alerts.called.wait(WAIT)
        resource_type, value, threshold = alerts.calls[0]
        assert (resource_type, threshold) == ("memory", 0.01)
        assert value >= threshold
        assert monitor.memory_pressure
        # Hysteresis: further samples above the threshold raise nothing new.
        seen = len(monitor.get_samples())
        assert wait_for(lambda: len(monitor.get_samples()) >= seen + 3)
        assert alerts.types().count("memory") == 1
        # Raise the threshold far above use: the alert clears.
        monitor.update_thresholds(memory_threshold=100.0)
        assert recoveries.called.wait(WAIT)
        assert recoveries.calls[0][0] == "memory"
        assert not monitor.memory_pressure
        # And crossing again fires again.
        alerts.called.clear()
        monitor.update_thresholds(memory=0.01)
        assert alerts.called.wait(WAIT)
        assert alerts.types().count("memory") == 2


def test_a_raising_callback_is_logged_and_the_monitor_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(resource_type: str, value: float, threshold: float) -> None:
        raise RuntimeError("callback bug")

    after = Recorder(only="memory")
    monitor = ResourceMonitor(check_interval=0.02, memory_threshold=0.01)
    monitor.add_callback(broken)
    monitor.add_callback(after)
    with caplog.at_level(logging.ERROR, logger="threadloom.resource_monitor"), monitor:
        assert after.called.wait(WAIT)
        seen = len(monitor.get_samples())
        assert wait_for(lambda: len(monitor.get_samples()) >= seen + 2)
        assert monitor.running
    assert any("callback bug" in (record.exc_text or "") for record in caplog.records)


def test_real_io_bound_tasks_earn_more_threads_than_cores() -> None:
    # No sample is taken, so only the tasks' measured CPU/wall ratio drives the advice.
    monitor = ResourceMonitor(check_interval=60.0)
    sleeper = threading.Event()
    for _ in range(20):
        wall_start, cpu_start = time.perf_counter(), time.thread_time()
        sleeper.wait(0.005)  # the task waits, as on a socket
        monitor.observe_task(time.perf_counter() - wall_start, time.thread_time() - cpu_start)
    cpus = read_usable_cpu_count().count
    assert monitor.task_cpu_ratio is not None and monitor.task_cpu_ratio < 0.5
    assert monitor.calculate_optimal_thread_count() > cpus


def test_seed_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    cpu_line = next(line for line in lines if line.startswith("CPU: "))
    cpu_text, memory_text = cpu_line.removeprefix("CPU: ").split(", Memory: ")
    assert 0.0 <= float(cpu_text.rstrip("%")) <= 100.0
    assert 0.0 < float(memory_text.rstrip("%")) <= 100.0
    count_line = next(line for line in lines if line.startswith("Optimal thread count: "))
    assert int(count_line.removeprefix("Optimal thread count: ")) >= 1


# -- lifecycle ------------------------------------------------------------------------


def test_start_stop_are_idempotent_and_restartable() -> None:
    monitor, sampler = scripted_monitor(check_interval=0.01)
    assert monitor.stop()  # never started
    for _ in range(2):
        monitor.start()
        monitor.start()
        thread = monitor._thread
        assert thread is not None and thread.daemon and monitor.running
        calls = sampler.calls
        assert wait_for(lambda c=calls: sampler.calls > c)  # type: ignore[misc]
        assert monitor.stop()
        assert monitor.stop()
        assert not monitor.running and not thread.is_alive()
    assert sampler.primes == 2


def test_get_current_usage_does_not_wait_for_a_sampling_thread() -> None:
    gate, blocked = threading.Event(), threading.Event()

    class BlockingSampler(ScriptedSampler):
        def sample(self) -> ResourceSample:
            if self.calls >= 1:
                blocked.set()
                gate.wait(WAIT)
            return super().sample()

    sampler = BlockingSampler([sample(cpu_percent=42.0)])
    monitor = ResourceMonitor(check_interval=0.01, sampler=sampler)
    monitor.sample_now()
    with monitor:
        assert blocked.wait(WAIT)  # the monitor thread is stuck inside a sample
        answered: list[float] = []
        reader = threading.Thread(
            target=lambda: answered.append(monitor.get_current_usage()["cpu"])
        )
        reader.start()
        reader.join(WAIT)
        finished = not reader.is_alive()
        gate.set()
        assert finished and answered == [42.0]


def test_a_failing_sampler_does_not_end_the_monitor(caplog: pytest.LogCaptureFixture) -> None:
    class FlakySampler(ScriptedSampler):
        def sample(self) -> ResourceSample:
            if self.calls == 0:
                self.calls += 1
                raise OSError("disk vanished")
            return super().sample()

    sampler = FlakySampler([sample(cpu_percent=95.0)])
    alerts = Recorder()
    monitor = ResourceMonitor(check_interval=0.01, sampler=sampler)
    monitor.add_callback(alerts)
    with caplog.at_level(logging.ERROR, logger="threadloom.resource_monitor"), monitor:
        assert alerts.called.wait(WAIT)
    assert alerts.calls == [("cpu", 95.0, 80.0)]
    assert any("disk vanished" in (record.exc_text or "") for record in caplog.records)


# -- threshold logic with injected samples ----------------------------------------------


def test_hysteresis_fires_once_per_crossing_and_recovers_below_the_margin() -> None:
    monitor, sampler = scripted_monitor(cpu_threshold=80.0, hysteresis_margin=5.0)
    alerts, recoveries = Recorder(), Recorder()
    monitor.add_callback(alerts)
    monitor.add_recovery_callback(recoveries)
    values = [70.0, 80.0, 90.0, 76.0, 75.0, 74.9, 79.0, 81.0]
    sampler.samples = [sample(cpu_percent=value) for value in values]
    for _ in values:
        monitor.sample_now()
    # 80 reaches the threshold; 76 and 75 are not below 80 - 5; 74.9 is; 81 crosses again.
    assert alerts.calls == [("cpu", 80.0, 80.0), ("cpu", 81.0, 80.0)]
    assert recoveries.calls == [("cpu", 74.9, 80.0)]
    assert monitor.get_active_alerts()["cpu"] == ResourceAlert(
        "cpu", 81.0, 80.0, BASE.timestamp, recovered=False
    )


def test_margin_is_capped_at_half_a_low_threshold() -> None:
    monitor, sampler = scripted_monitor(disk_threshold=4.0, hysteresis_margin=5.0)
    recoveries = Recorder()
    monitor.add_recovery_callback(recoveries)
    sampler.samples = [sample(disk_percent=v) for v in (4.0, 2.0, 1.9)]
    for _ in range(3):
        monitor.sample_now()
    # 4 - 5 would never clear; the clear level is 4 - 2 instead.
    assert recoveries.calls == [("disk", 1.9, 4.0)]


def test_each_resource_alerts_on_its_own_threshold() -> None:
    monitor, sampler = scripted_monitor(
        cpu_threshold=50.0, memory_threshold=60.0, disk_threshold=70.0, io_threshold=40.0
    )
    alerts = Recorder()
    monitor.add_callback(alerts)
    sampler.samples = [
        sample(cpu_percent=49.0, memory_percent=59.0, disk_percent=69.0, io_percent=39.0),
        sample(cpu_percent=51.0, memory_percent=61.0, disk_percent=71.0, io_percent=41.0),
        sample(cpu_percent=51.0, memory_percent=61.0, disk_percent=71.0, io_percent=41.0),
    ]
    monitor.sample_now()
    assert alerts.calls == []
    monitor.sample_now()
    monitor.sample_now()
    assert sorted(alerts.calls) == [
        ("cpu", 51.0, 50.0),
        ("disk", 71.0, 70.0),
        ("io", 41.0, 40.0),
        ("memory", 61.0, 60.0),
    ]


def test_memory_pressure_follows_the_memory_alert() -> None:
    monitor, sampler = scripted_monitor(memory_threshold=80.0, hysteresis_margin=10.0)
    sampler.samples = [sample(memory_percent=v) for v in (50.0, 85.0, 75.0, 69.0, 69.0)]
    pressure = []
    for _ in range(4):
        monitor.sample_now()
        pressure.append(monitor.memory_pressure)
    assert pressure == [False, True, True, False]


def test_raising_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    monitor, sampler = scripted_monitor()
    after = Recorder()
    monitor.add_callback(lambda *args: 1 / 0)
    monitor.add_callback(after)
    sampler.samples = [sample(cpu_percent=90.0), sample(cpu_percent=10.0), sample(cpu_percent=90)]
    with caplog.at_level(logging.ERROR, logger="threadloom.resource_monitor"):
        for _ in range(3):
            monitor.sample_now()
    assert after.types() == ["cpu", "cpu"]
    assert sum("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records) == 2


def test_removed_callbacks_are_not_called() -> None:
    monitor, sampler = scripted_monitor()
    alerts, recoveries = Recorder(), Recorder()
    monitor.add_callback(alerts)
    monitor.add_recovery_callback(recoveries)
    monitor.remove_callback(alerts)
    monitor.remove_recovery_callback(recoveries)
    sampler.samples = [sample(cpu_percent=90.0), sample(cpu_percent=10.0)]
    monitor.sample_now()
    monitor.sample_now()
    assert alerts.calls == [] and recoveries.calls == []
    with pytest.raises(ValueError, match="not registered"):
        monitor.remove_callback(alerts)
    with pytest.raises(ValueError, match="not registered"):
        monitor.remove_recovery_callback(recoveries)
    with pytest.raises(TypeError, match="callable"):
        monitor.add_callback("not a function")  # type: ignore[arg-type]


def test_get_current_usage_of_a_stopped_monitor_does_not_deliver_alerts() -> None:
    monitor, sampler = scripted_monitor(check_interval=60.0)
    alerts = Recorder()
    monitor.add_callback(alerts)
    sampler.samples = [sample(cpu_percent=90.0)]
    assert monitor.get_current_usage()["cpu"] == 90.0
    # A fresh sample is reused, not re-taken.
    assert monitor.get_current_usage()["cpu"] == 90.0
    assert sampler.calls == 1
    assert alerts.calls == []


def test_thresholds_update_and_validate() -> None:
    monitor, _ = scripted_monitor()
    assert monitor.get_thresholds() == {
        "cpu": 80.0,
        "memory": 80.0,
        "disk": 80.0,
        "io": 80.0,
        "hysteresis_margin": 5.0,
    }
    monitor.update_thresholds(cpu_threshold=70, io=90.5, hysteresis_margin=2)
    assert monitor.get_thresholds() == {
        "cpu": 70.0,
        "memory": 80.0,
        "disk": 80.0,
        "io": 90.5,
        "hysteresis_margin": 2.0,
    }
    with pytest.raises(TypeError, match="gpu_threshold"):
        monitor.update_thresholds(gpu_threshold=50)
    with pytest.raises(ValueError, match="cpu threshold was given twice"):
        monitor.update_thresholds(cpu=50, cpu_threshold=60)
    with pytest.raises(ValueError, match="memory_threshold"):
        monitor.update_thresholds(memory_threshold=0)
    with pytest.raises(ValueError, match="disk_threshold"):
        monitor.update_thresholds(disk=101)
    with pytest.raises(TypeError, match="io_threshold"):
        monitor.update_thresholds(io="high")  # type: ignore[arg-type]
    # A rejected update changes nothing.
    assert monitor.get_thresholds()["cpu"] == 70.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"check_interval": 0}, ValueError, "check_interval"),
        ({"check_interval": math.nan}, ValueError, "check_interval"),
        ({"cpu_threshold": -1}, ValueError, "cpu_threshold"),
        ({"history_size": 0}, ValueError, "history_size"),
        ({"history_size": 2.5}, TypeError, "history_size"),
        ({"hysteresis_margin": 100}, ValueError, "hysteresis_margin"),
        ({"disk_path": "/no/such/dir"}, ValueError, "disk_path"),
        ({"io_ceiling_bytes_per_s": 0}, ValueError, "io_ceiling_bytes_per_s"),
    ],
)
def test_bad_constructor_arguments_raise(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ResourceMonitor(**kwargs)  # type: ignore[arg-type]


# -- the thread-count rule, with injected samples ----------------------------------------


def advised(
    ratio: float | None, min_threads: int = 1, max_threads: int | None = None, **changes: float
) -> int:
    monitor, sampler = scripted_monitor(cpu_threshold=80.0, io_threshold=80.0)
    sampler.samples = [sample(**changes)]
    monitor.sample_now()
    if ratio is not None:
        monitor.observe_task(1.0, ratio)
    return monitor.calculate_optimal_thread_count(min_threads, max_threads)


def test_thread_count_without_observed_tasks_is_cpus_plus_four() -> None:
    assert advised(None, cpu_count=4) == 8


def test_cpu_bound_work_gets_no_more_threads_than_cores() -> None:
    # 4 CPUs x 80% = 3.2 CPUs of budget, each task keeps one busy.
    assert advised(1.0, cpu_count=4) == 4
    assert advised(1.0, cpu_count=1) == 1


def test_io_bound_work_gets_more_threads_than_cores() -> None:
    assert advised(0.1, cpu_count=4) == 32  # ceil(3.2 / 0.1)
    assert advised(0.5, cpu_count=4) == 7  # ceil(3.2 / 0.5)
    # Tasks that never use CPU earn at most 16x the budget: ceil(3.2 * 16).
    assert advised(0.0, cpu_count=4) == 52


def test_cpu_above_its_threshold_shrinks_the_budget() -> None:
    # 3.2 x 80/100 = 2.56 CPUs of budget.
    assert advised(0.1, cpu_count=4, cpu_percent=100.0) == 26


def test_saturated_io_caps_the_count_at_the_cores() -> None:
    assert advised(0.1, cpu_count=4, io_percent=85.0) == 4


def test_memory_pressure_advises_the_minimum() -> None:
    assert advised(0.1, min_threads=3, cpu_count=4, memory_percent=95.0) == 3


def test_advice_is_clamped_and_validated() -> None:
    assert advised(0.1, min_threads=40, cpu_count=4) == 40
    assert advised(0.1, max_threads=10, cpu_count=4) == 10
    monitor, _ = scripted_monitor()
    with pytest.raises(ValueError, match="min_threads"):
        monitor.calculate_optimal_thread_count(0)
    with pytest.raises(ValueError, match="max_threads"):
        monitor.calculate_optimal_thread_count(4, 3)


def test_thread_count_before_any_sample_uses_the_usable_cpus() -> None:
    monitor, _ = scripted_monitor()
    assert monitor.calculate_optimal_thread_count() == read_usable_cpu_count().count + 4


def test_observe_task_decays_towards_recent_tasks() -> None:
    monitor, _ = scripted_monitor()
    assert monitor.task_cpu_ratio is None
    monitor.observe_task(2.0, 2.0)
    assert monitor.task_cpu_ratio == 1.0
    monitor.observe_task(1.0, 0.0)
    assert monitor.task_cpu_ratio == pytest.approx(0.95)
    monitor.observe_task(1.0, 1.5)  # CPU above wall (clock resolution) counts as 1
    assert monitor.task_cpu_ratio == pytest.approx(0.95 + 0.05 * 0.05)
    monitor.observe_task(0.0, 0.0)  # no information, ignored
    assert monitor.tasks_observed == 3
    for _ in range(200):
        monitor.observe_task(1.0, 0.1)
    assert monitor.task_cpu_ratio == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match="wall_seconds"):
        monitor.observe_task(-1.0, 0.0)
    with pytest.raises(ValueError, match="cpu_seconds"):
        monitor.observe_task(1.0, math.inf)


def test_observe_task_from_many_threads_loses_nothing() -> None:
    monitor, _ = scripted_monitor()
    workers, each = 8, 2000
    barrier = threading.Barrier(workers)

    def feed() -> None:
        barrier.wait(WAIT)
        for _ in range(each):
            monitor.observe_task(1.0, 0.25)

    threads = [threading.Thread(target=feed) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert monitor.tasks_observed == workers * each
    assert monitor.task_cpu_ratio == pytest.approx(0.25)
