"""Readings: one :class:`ResourceSample`, and the psutil sampler that takes it
(container-aware, each sample against its own baseline)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, fields
from typing import Any, Protocol

import psutil

from .._limits import (
    CpuLimit,
    MemoryLimit,
    cgroup_memory_usage,
    read_memory_limit,
    read_usable_cpu_count,
    usable_cpu_count,
)

RESOURCE_TYPES: tuple[str, ...] = ("cpu", "memory", "disk", "io")

# A CPU reading over a shorter window than this is mostly clock-tick noise
# (Linux counts CPU time in 10 ms ticks), so the load average stands in.
_MIN_CPU_WINDOW_S = 0.05
# The first sample after start() comes this soon (or after check_interval if
# Limits change rarely (a container resize); re-reading them costs file reads.
_LIMIT_REFRESH_S = 30.0
# Without a configured ceiling the IO ceiling is the peak rate seen, but at
# least this, so a quiet disk's first small burst does not read as saturation.
_MIN_MEASURED_IO_CEILING = 100 * 1024 * 1024


# Weight of each observed task in the decaying CPU/wall estimate (~20 tasks).
@dataclass(frozen=True)
class ResourceSample:
    """One reading of the system.

    Attributes:
        timestamp: wall-clock time of the reading (``time.time()``).
        interval: seconds the CPU and IO rates were measured over.
        cpu_percent: busy share of the host's CPUs over ``interval``.
        cpu_source: ``"cpu_times"``, or ``"loadavg"`` when the window was too
            short to measure and the 1-minute load average stood in.
        cpu_count: usable CPUs (container-aware) and ``cpu_count_source`` what set it.
        memory_percent: ``memory_used_bytes`` against ``memory_limit_bytes``,
            the container's limit where one applies (``memory_limit_source``).
        disk_percent: fullness of the filesystem holding ``disk_path``.
        io_percent: disk read+write bytes per second against
            ``io_ceiling_bytes_per_s`` (``io_ceiling_source``: ``"configured"``
            or ``"measured"``, the peak seen).
        net_sent_bytes_per_s, net_recv_bytes_per_s: network throughput.
    """

    timestamp: float
    interval: float
    cpu_percent: float
    cpu_source: str
    cpu_count: int
    cpu_count_source: str
    memory_percent: float
    memory_used_bytes: int
    memory_limit_bytes: int
    memory_limit_source: str
    disk_percent: float
    disk_path: str
    disk_used_bytes: int
    disk_total_bytes: int
    io_percent: float
    disk_read_bytes_per_s: float
    disk_write_bytes_per_s: float
    io_ceiling_bytes_per_s: float
    io_ceiling_source: str
    net_sent_bytes_per_s: float
    net_recv_bytes_per_s: float

    def value(self, resource_type: str) -> float:
        """The percentage reading for *resource_type* (``cpu``, ``memory``, ``disk`` or ``io``).

        Raises:
            ValueError: *resource_type* is not one of those.
        """
        if resource_type == "cpu":
            return self.cpu_percent
        if resource_type == "memory":
            return self.memory_percent
        if resource_type == "disk":
            return self.disk_percent
        if resource_type == "io":
            return self.io_percent
        raise ValueError(
            f"unknown resource type {resource_type!r}; expected one of {RESOURCE_TYPES}"
        )

    def as_usage(self) -> dict[str, Any]:
        """The original API's usage dict: the four percentages by resource, then every field."""
        usage: dict[str, Any] = {name: self.value(name) for name in RESOURCE_TYPES}
        for field in fields(self):
            usage[field.name] = getattr(self, field.name)
        return usage


class Sampler(Protocol):
    """Where samples come from: :class:`PsutilSampler`, or a test's scripted source."""

    def prime(self) -> None:
        """Take the baseline the next sample is measured against."""

    def sample(self) -> ResourceSample:
        """Measure since the previous call (or ``prime``) and move the baseline here."""


def _busy_and_total(times: Any) -> tuple[float, float]:
    # As psutil's cpu_percent: guest time is already inside user/nice on Linux,
    # and iowait is idle time spent waiting, not work.
    total = float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    busy = total - times.idle - getattr(times, "iowait", 0.0)
    return busy, total


def _clamp_percent(value: float) -> float:
    return min(100.0, max(0.0, value))


class PsutilSampler:
    """Samples the real system through psutil and the cgroup files.

    Not thread-safe by itself: :class:`ResourceMonitor` serialises its calls.

    Args:
        disk_path: a path on the filesystem whose fullness is ``disk``.
        io_ceiling_bytes_per_s: disk bytes per second that count as 100% ``io``;
            None measures it as the peak seen (at least 100 MiB/s).

    Raises:
        ValueError: *disk_path* does not exist or the ceiling is not positive.
    """

    def __init__(self, disk_path: str = "/", io_ceiling_bytes_per_s: float | None = None) -> None:
        if not os.path.exists(disk_path):
            raise ValueError(f"disk_path {disk_path!r} does not exist")
        if io_ceiling_bytes_per_s is not None and not (
            math.isfinite(io_ceiling_bytes_per_s) and io_ceiling_bytes_per_s > 0
        ):
            raise ValueError(
                f"io_ceiling_bytes_per_s must be a positive number or None, "
                f"not {io_ceiling_bytes_per_s!r}"
            )
        self._disk_path = disk_path
        self._configured_ceiling = io_ceiling_bytes_per_s
        self._peak_io_rate = 0.0
        self._cpu_limit: CpuLimit = usable_cpu_count()
        self._memory_limit: MemoryLimit = read_memory_limit()
        self._limits_read_at = time.monotonic()
        self.prime()

    def prime(self) -> None:
        """Take the baseline (CPU times, disk and network counters) the next sample starts from."""
        self._last_time = time.monotonic()
        self._last_cpu = _busy_and_total(psutil.cpu_times())
        self._last_disk = psutil.disk_io_counters()
        self._last_net = psutil.net_io_counters()

    def _refresh_limits(self, now: float) -> None:
        if now - self._limits_read_at >= _LIMIT_REFRESH_S:
            self._cpu_limit = read_usable_cpu_count()
            self._memory_limit = read_memory_limit()
            self._limits_read_at = now

    def _memory_used(self) -> int:
        if self._memory_limit.source != "host":
            used = cgroup_memory_usage()
            if used is not None:
                return used
        memory = psutil.virtual_memory()
        return int(memory.total - memory.available)

    def _cpu_percent(self, window: float) -> tuple[float, str]:
        busy, total = _busy_and_total(psutil.cpu_times())
        busy_delta, total_delta = busy - self._last_cpu[0], total - self._last_cpu[1]
        self._last_cpu = (busy, total)
        if window < _MIN_CPU_WINDOW_S or total_delta <= 0:
            load_1min = psutil.getloadavg()[0]
            return _clamp_percent(100.0 * load_1min / self._cpu_limit.host_count), "loadavg"
        return _clamp_percent(100.0 * busy_delta / total_delta), "cpu_times"

    def _io_rates(self, window: float) -> tuple[float, float, float, float]:
        disk = psutil.disk_io_counters()
        net = psutil.net_io_counters()
        read_rate = write_rate = sent_rate = recv_rate = 0.0
        if window > 0:
            # max(0, ...): counters restart when a disk or interface goes away.
            if disk is not None and self._last_disk is not None:
                read_rate = max(0, disk.read_bytes - self._last_disk.read_bytes) / window
                write_rate = max(0, disk.write_bytes - self._last_disk.write_bytes) / window
            if net is not None and self._last_net is not None:
                sent_rate = max(0, net.bytes_sent - self._last_net.bytes_sent) / window
                recv_rate = max(0, net.bytes_recv - self._last_net.bytes_recv) / window
        self._last_disk, self._last_net = disk, net
        return read_rate, write_rate, sent_rate, recv_rate

    def sample(self) -> ResourceSample:
        """Measure since the previous sample (or ``prime``) and move the baseline here.

        Returns:
            The new sample.
        """
        now = time.monotonic()
        window = now - self._last_time
        self._last_time = now
        self._refresh_limits(now)
        cpu_percent, cpu_source = self._cpu_percent(window)
        read_rate, write_rate, sent_rate, recv_rate = self._io_rates(window)
        io_rate = read_rate + write_rate
        if self._configured_ceiling is not None:
            ceiling, ceiling_source = self._configured_ceiling, "configured"
        else:
            self._peak_io_rate = max(self._peak_io_rate, io_rate)
            ceiling = max(self._peak_io_rate, float(_MIN_MEASURED_IO_CEILING))
            ceiling_source = "measured"
        memory_used = self._memory_used()
        limit = self._memory_limit
        disk = psutil.disk_usage(self._disk_path)
        return ResourceSample(
            timestamp=time.time(),
            interval=window,
            cpu_percent=cpu_percent,
            cpu_source=cpu_source,
            cpu_count=self._cpu_limit.count,
            cpu_count_source=self._cpu_limit.source,
            memory_percent=_clamp_percent(100.0 * memory_used / limit.bytes),
            memory_used_bytes=memory_used,
            memory_limit_bytes=limit.bytes,
            memory_limit_source=limit.source,
            disk_percent=float(disk.percent),
            disk_path=self._disk_path,
            disk_used_bytes=int(disk.used),
            disk_total_bytes=int(disk.total),
            io_percent=_clamp_percent(100.0 * io_rate / ceiling),
            disk_read_bytes_per_s=read_rate,
            disk_write_bytes_per_s=write_rate,
            io_ceiling_bytes_per_s=ceiling,
            io_ceiling_source=ceiling_source,
            net_sent_bytes_per_s=sent_rate,
            net_recv_bytes_per_s=recv_rate,
        )
