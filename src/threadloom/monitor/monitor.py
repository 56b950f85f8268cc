"""ResourceMonitor: container-aware CPU, memory, disk and IO readings, alerts, sizing advice.

One daemon thread samples the system every ``check_interval`` seconds; callers
read the latest sample and never wait for one.  Each sample is measured against
the monitor's own baseline (CPU times and IO counters from the previous sample),
so no caller's read disturbs another's, unlike ``psutil.cpu_percent(None)``
whose baseline is shared by the whole process.

Alerts have hysteresis: ``cb(resource_type, current_value, threshold)`` is
called when a resource rises to its threshold, and not again until it has
fallen below ``threshold - hysteresis_margin`` (which calls the recovery
callbacks, same signature) and risen again.

Example:
    >>> with ResourceMonitor(check_interval=1.0) as monitor:  # doctest: +SKIP
    ...     monitor.get_current_usage()["memory"]
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .. import events as tl_events
from .._limits import (
    usable_cpu_count,
)
from .._validate import check_count, check_percent, check_seconds
from .sampling import RESOURCE_TYPES, PsutilSampler, ResourceSample, Sampler

# The original module name, kept so that logging configured for it still applies.
logger = logging.getLogger("threadloom.resource_monitor")

ResourceCallback = Callable[[str, float, float], object]
"""``cb(resource_type, current_value, threshold)``; the return value is ignored."""

# shorter), so a caller soon sees a reading over a real window.
_FIRST_SAMPLE_DELAY_S = 0.25
_TASK_RATIO_ALPHA = 0.05
# A task busy on CPU for less than 1/16 of its wall time earns at most 16x oversubscription.
_MAX_IO_OVERSUBSCRIPTION = 16.0


@dataclass(frozen=True)
class ResourceAlert:
    """A threshold crossing (``recovered=False``) or the matching recovery (``recovered=True``)."""

    resource_type: str
    value: float
    threshold: float
    timestamp: float
    recovered: bool


class ResourceMonitor:
    """Watches CPU, memory, disk and IO; raises alerts; advises a pool on its size.

    Args:
        check_interval: seconds between samples of the monitor thread.
        cpu_threshold: ``cpu`` percentage that raises an alert.
        memory_threshold: ``memory`` percentage (of the container's limit) that
            raises an alert and sets :attr:`memory_pressure`.
        disk_threshold: ``disk`` fullness percentage that raises an alert.
        io_threshold: ``io`` activity percentage that raises an alert.
        history_size: how many samples :meth:`get_history` keeps (oldest dropped).
        hysteresis_margin: percentage points a resource must fall below its
            threshold before its alert clears and can fire again (at most half
            the threshold, so that a low threshold can clear).
        disk_path: a path on the filesystem whose fullness is ``disk``.
        io_ceiling_bytes_per_s: disk bytes per second that count as 100% ``io``;
            None measures it as the peak seen (at least 100 MiB/s).
        sampler: where samples come from; default a :class:`PsutilSampler` on
            *disk_path* and *io_ceiling_bytes_per_s*.  Tests pass a scripted one.

    Raises:
        ValueError, TypeError: an argument is out of range or of the wrong type.
    """

    def __init__(
        self,
        check_interval: float = 5.0,
        cpu_threshold: float = 80.0,
        memory_threshold: float = 80.0,
        disk_threshold: float = 80.0,
        io_threshold: float = 80.0,
        history_size: int = 720,
        *,
        hysteresis_margin: float = 5.0,
        disk_path: str = "/",
        io_ceiling_bytes_per_s: float | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        self._check_interval = check_seconds("check_interval", check_interval, allow_zero=False)
        check_count("history_size", history_size, minimum=1)
        self._thresholds = {
            "cpu": check_percent("cpu_threshold", cpu_threshold),
            "memory": check_percent("memory_threshold", memory_threshold),
            "disk": check_percent("disk_threshold", disk_threshold),
            "io": check_percent("io_threshold", io_threshold),
        }
        self._margin = check_percent("hysteresis_margin", hysteresis_margin, margin=True)
        self._sampler: Sampler = (
            sampler if sampler is not None else PsutilSampler(disk_path, io_ceiling_bytes_per_s)
        )

        # _state_lock guards the small shared state below; it is never held
        # while sampling or calling out.  _sample_lock serialises the sample
        # stream and the delivery of its alerts, so callbacks see the events of
        # one resource in the order they happened.  It is reentrant so that a
        # callback may call sample_now().
        self._state_lock = threading.Lock()
        self._sample_lock = threading.RLock()
        self._history: deque[ResourceSample] = deque(maxlen=history_size)
        self._latest: ResourceSample | None = None
        # time.monotonic() of _latest: a stopped monitor re-samples once it is stale.
        self._latest_at = 0.0
        self._active_alerts: dict[str, ResourceAlert] = {}
        # Callback lists are replaced, never mutated, so delivery iterates a snapshot.
        self._callbacks: tuple[ResourceCallback, ...] = ()
        self._recovery_callbacks: tuple[ResourceCallback, ...] = ()
        self._task_lock = threading.Lock()
        self._task_cpu_ratio: float | None = None
        self._tasks_observed = 0
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._events = tl_events.EventBus("monitor")

    # -- lifecycle ---------------------------------------------------------

    @property
    def check_interval(self) -> float:
        """Seconds between the monitor thread's samples."""
        return self._check_interval

    @property
    def running(self) -> bool:
        """Whether the monitor thread is running."""
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop_event.is_set()

    def start(self) -> None:
        """Start the monitor thread (a daemon); a no-op if it is running.

        The sampler is primed here, so the first sample measures from now and the
        meaningless first CPU reading is never reported.
        """
        # Lock order everywhere: _sample_lock, then _state_lock.
        with self._sample_lock, self._state_lock:
            if self.running:
                return
            self._sampler.prime()
            # A fresh Event per run: a previous thread that has not yet noticed
            # its stop keeps its own (set) event and exits.
            self._stop_event = threading.Event()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stop_event,),
                name="threadloom-resource-monitor",
                daemon=True,
            )
            self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop the monitor thread and wait up to *timeout* seconds for it; idempotent.

        Args:
            timeout: seconds to wait for the thread (None: without bound).

        Returns:
            True if the thread has ended (or was not running).
        """
        with self._state_lock:
            thread, self._thread = self._thread, None
            self._stop_event.set()
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("resource monitor thread did not stop within %s s", timeout)
            return False
        return True

    def __enter__(self) -> ResourceMonitor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, stop_event: threading.Event) -> None:
        delay = min(self._check_interval, _FIRST_SAMPLE_DELAY_S)
        while not stop_event.wait(delay):
            delay = self._check_interval
            try:
                self.sample_now()
            except Exception:
                # A failing read (a vanished disk_path, a sampler bug) must not
                # end monitoring; the next interval tries again.
                logger.exception("resource monitor: sampling failed")

    # -- sampling ----------------------------------------------------------

    def sample_now(self) -> ResourceSample:
        """Take a sample on the caller's thread, record it and deliver its alerts.

        This never waits for a measuring interval: it measures since the
        previous sample.  The monitor thread calls it every ``check_interval``.

        Returns:
            The new sample.
        """
        with self._sample_lock:
            sample = self._sampler.sample()
            with self._state_lock:
                self._record(sample)
                events = self._evaluate(sample)
            if self._events.active:
                self._events.emit(tl_events.resource_sampled(sample))
            self._deliver(events)
        return sample

    def _record(self, sample: ResourceSample) -> None:
        self._history.append(sample)
        self._latest = sample
        self._latest_at = time.monotonic()

    def _evaluate(self, sample: ResourceSample) -> list[ResourceAlert]:
        events = []
        for resource_type in RESOURCE_TYPES:
            value = sample.value(resource_type)
            threshold = self._thresholds[resource_type]
            active = resource_type in self._active_alerts
            if not active and value >= threshold:
                alert = ResourceAlert(resource_type, value, threshold, sample.timestamp, False)
                self._active_alerts[resource_type] = alert
                events.append(alert)
            # The margin is capped at half the threshold, so a low threshold's
            # alert can still clear (a value never falls below zero).
            elif active and value < threshold - min(self._margin, threshold / 2):
                del self._active_alerts[resource_type]
                events.append(
                    ResourceAlert(resource_type, value, threshold, sample.timestamp, True)
                )
        return events

    def _deliver(self, events: list[ResourceAlert]) -> None:
        for event in events:
            if self._events.active:
                self._events.emit(
                    tl_events.alert(
                        event.resource_type, event.value, event.threshold, recovered=event.recovered
                    )
                )
            callbacks = self._recovery_callbacks if event.recovered else self._callbacks
            for callback in callbacks:
                try:
                    callback(event.resource_type, event.value, event.threshold)
                except Exception:
                    logger.exception(
                        "resource monitor: callback %r raised on %s %s",
                        callback,
                        event.resource_type,
                        "recovery" if event.recovered else "alert",
                    )

    def _fresh_latest(self) -> ResourceSample | None:
        latest = self._latest
        if latest is None:
            return None
        if self.running or time.monotonic() - self._latest_at < self._check_interval:
            return latest
        return None

    def get_current_usage(self) -> dict[str, Any]:
        """The latest reading, without waiting for a measurement.

        While the monitor runs this is the monitor thread's latest sample.  With
        no sample yet, or a stopped monitor's sample older than
        ``check_interval``, one is taken now over the time since the last one
        (recorded in the history, but alerts are left to the monitor thread and
        :meth:`sample_now`).

        Returns:
            ``cpu``, ``memory``, ``disk``, ``io`` (percentages) and every field of
            :class:`ResourceSample` (limits and their sources, bytes, rates, timestamp).
        """
        return self.get_current_sample().as_usage()

    def get_current_sample(self) -> ResourceSample:
        """:meth:`get_current_usage` as a :class:`ResourceSample` record.

        Returns:
            The latest sample.
        """
        latest = self._fresh_latest()
        if latest is not None:
            return latest
        with self._sample_lock:
            # Another caller may have sampled while this one waited for the lock.
            latest = self._fresh_latest()
            if latest is not None:
                return latest
            sample = self._sampler.sample()
            with self._state_lock:
                self._record(sample)
            return sample

    def get_history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """A copy of the recorded samples, oldest first, each as :meth:`get_current_usage` gives it.

        Args:
            limit: return only the newest *limit* samples.

        Returns:
            Usage dicts, each with its ``timestamp``; at most ``history_size``.

        Raises:
            ValueError: *limit* is negative.
        """
        return [sample.as_usage() for sample in self.get_samples(limit)]

    def get_samples(self, limit: int | None = None) -> tuple[ResourceSample, ...]:
        """The recorded samples, oldest first, as records.

        Args:
            limit: return only the newest *limit* samples.

        Returns:
            At most ``history_size`` samples.

        Raises:
            ValueError: *limit* is negative.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be non-negative, not {limit}")
        with self._state_lock:
            samples = tuple(self._history)
        if limit is not None:
            samples = samples[len(samples) - limit :] if limit else ()
        return samples

    # -- thresholds and alerts --------------------------------------------

    def get_thresholds(self) -> dict[str, float]:
        """The alert thresholds by resource type, plus ``hysteresis_margin``.

        Returns:
            ``{"cpu": .., "memory": .., "disk": .., "io": .., "hysteresis_margin": ..}``.
        """
        with self._state_lock:
            thresholds = dict(self._thresholds)
            thresholds["hysteresis_margin"] = self._margin
        return thresholds

    def update_thresholds(self, **thresholds: float) -> None:
        """Change thresholds; the next sample is judged against them.

        Args:
            **thresholds: ``cpu_threshold=`` (or ``cpu=``), ``memory_threshold=``,
                ``disk_threshold=``, ``io_threshold=`` as percentages in (0, 100],
                and ``hysteresis_margin=``.  An active alert stays active until
                its resource falls below the new threshold minus the margin.

        Raises:
            TypeError: an unknown keyword, or a value that is not a number.
            ValueError: a value out of range, or one resource named twice.
        """
        updates: dict[str, float] = {}
        margin: float | None = None
        for key, value in thresholds.items():
            if key == "hysteresis_margin":
                margin = check_percent("hysteresis_margin", value, margin=True)
                continue
            resource_type = key.removesuffix("_threshold")
            if resource_type not in RESOURCE_TYPES:
                raise TypeError(
                    f"update_thresholds() got an unknown threshold {key!r}; expected "
                    "cpu_threshold, memory_threshold, disk_threshold, io_threshold "
                    "(or cpu, memory, disk, io) or hysteresis_margin"
                )
            if resource_type in updates:
                raise ValueError(f"the {resource_type} threshold was given twice")
            updates[resource_type] = check_percent(f"{resource_type}_threshold", value)
        with self._state_lock:
            self._thresholds.update(updates)
            if margin is not None:
                self._margin = margin

    def subscribe(
        self,
        callback: Callable[[tl_events.Event], object],
        kinds: Iterable[str | type[tl_events.Event]] | None = None,
    ) -> tl_events.Subscription:
        """Receive ``resource_sampled``, ``alert_raised`` and ``alert_cleared``
        events; see :mod:`threadloom.events`."""
        return self._events.subscribe(callback, kinds)

    def add_callback(self, callback: ResourceCallback) -> None:
        """Call ``callback(resource_type, current_value, threshold)`` when a resource crosses.

        It is called on the monitor thread (or the thread of :meth:`sample_now`)
        once per crossing, not on every sample while the resource stays high.
        An exception it raises is logged and ignored.

        Raises:
            TypeError: *callback* is not callable.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        with self._state_lock:
            self._callbacks = (*self._callbacks, callback)

    def remove_callback(self, callback: ResourceCallback) -> None:
        """Stop calling *callback* on alerts (one registration of it).

        Raises:
            ValueError: *callback* is not registered.
        """
        with self._state_lock:
            self._callbacks = _without(self._callbacks, callback, "callback")

    def add_recovery_callback(self, callback: ResourceCallback) -> None:
        """Call ``callback(resource_type, current_value, threshold)`` when an alert clears.

        An alert clears when its resource falls below ``threshold - hysteresis_margin``.

        Raises:
            TypeError: *callback* is not callable.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        with self._state_lock:
            self._recovery_callbacks = (*self._recovery_callbacks, callback)

    def remove_recovery_callback(self, callback: ResourceCallback) -> None:
        """Stop calling *callback* on recoveries (one registration of it).

        Raises:
            ValueError: *callback* is not registered.
        """
        with self._state_lock:
            self._recovery_callbacks = _without(
                self._recovery_callbacks, callback, "recovery callback"
            )

    def get_active_alerts(self) -> dict[str, ResourceAlert]:
        """The alerts raised and not yet cleared, by resource type.

        Returns:
            A copy: resource type -> the alert that raised it.
        """
        with self._state_lock:
            return dict(self._active_alerts)

    @property
    def memory_pressure(self) -> bool:
        """True while the memory alert is active: memory reached its threshold and has not yet
        fallen below threshold minus the margin.  A pool shrinks while this holds."""
        return "memory" in self._active_alerts

    # -- sizing advice -----------------------------------------------------

    def observe_task(self, wall_seconds: float, cpu_seconds: float) -> None:
        """Tell the monitor how long a finished task took and how much CPU it used.

        A pool calls this after each task (``time.perf_counter()`` and
        ``time.thread_time()`` deltas).  Each task moves a decaying estimate of
        CPU/wall time a step (weight 0.05) towards its own ratio.

        Args:
            wall_seconds: the task's elapsed time.
            cpu_seconds: the CPU time its thread used meanwhile.

        Raises:
            ValueError: either is negative or not finite.
        """
        if not (math.isfinite(wall_seconds) and wall_seconds >= 0):
            raise ValueError(f"wall_seconds must be a non-negative number, not {wall_seconds!r}")
        if not (math.isfinite(cpu_seconds) and cpu_seconds >= 0):
            raise ValueError(f"cpu_seconds must be a non-negative number, not {cpu_seconds!r}")
        if wall_seconds == 0:
            return
        # Clocks of different resolution can put CPU a little above wall time.
        ratio = min(1.0, cpu_seconds / wall_seconds)
        with self._task_lock:
            previous = self._task_cpu_ratio
            if previous is None:
                self._task_cpu_ratio = ratio
            else:
                self._task_cpu_ratio = previous + _TASK_RATIO_ALPHA * (ratio - previous)
            self._tasks_observed += 1

    @property
    def tasks_observed(self) -> int:
        """How many tasks :meth:`observe_task` has been told about."""
        return self._tasks_observed

    @property
    def task_cpu_ratio(self) -> float | None:
        """The decaying estimate of recent tasks' CPU time over wall time (None: none observed).

        Near 1 means CPU-bound work; near 0 means the tasks mostly wait (IO).
        """
        return self._task_cpu_ratio

    def calculate_optimal_thread_count(
        self, min_threads: int = 1, max_threads: int | None = None
    ) -> int:
        """Advise how many worker threads a pool should run now.

        The rule:

        * The CPU budget is ``usable CPUs x cpu_threshold / 100``, scaled down by
          ``cpu_threshold / cpu`` when the CPU is already above its threshold.
        * Each thread needs the recent tasks' CPU/wall ratio of a CPU, so the
          count is ``ceil(budget / ratio)``: CPU-bound work (ratio ~1) gets no
          more threads than cores (more cannot help under the GIL), IO-bound
          work gets more, up to 16x the budget.  With no tasks observed, the
          standard library's assumption stands: ``usable CPUs + 4``.
        * IO above its threshold caps the count at the usable CPUs (more
          waiting threads cannot speed a saturated disk).
        * Memory pressure (:attr:`memory_pressure`) gives *min_threads*.

        Args:
            min_threads: the least advice, at least 1.
            max_threads: the most advice (None: no cap beyond the rule).

        Returns:
            A count in ``[min_threads, max_threads]``.

        Raises:
            ValueError: *min_threads* < 1 or *max_threads* < *min_threads*.
        """
        if isinstance(min_threads, bool) or not isinstance(min_threads, int) or min_threads < 1:
            raise ValueError(f"min_threads must be an int of at least 1, not {min_threads!r}")
        if max_threads is not None and (
            isinstance(max_threads, bool)
            or not isinstance(max_threads, int)
            or max_threads < min_threads
        ):
            raise ValueError(
                f"max_threads must be None or an int of at least min_threads ({min_threads}), "
                f"not {max_threads!r}"
            )
        if self.memory_pressure:
            return min_threads
        latest = self._latest
        cpus = latest.cpu_count if latest is not None else usable_cpu_count().count
        with self._state_lock:
            cpu_threshold = self._thresholds["cpu"]
            io_threshold = self._thresholds["io"]
        ratio = self._task_cpu_ratio
        if ratio is None:
            advice = cpus + 4
        else:
            budget = cpus * cpu_threshold / 100.0
            if latest is not None and latest.cpu_percent > cpu_threshold:
                budget *= cpu_threshold / latest.cpu_percent
            advice = math.ceil(budget / max(ratio, 1.0 / _MAX_IO_OVERSUBSCRIPTION))
        if latest is not None and latest.io_percent >= io_threshold:
            advice = min(advice, cpus)
        advice = max(advice, min_threads)
        if max_threads is not None:
            advice = min(advice, max_threads)
        return advice


def _without(
    callbacks: tuple[ResourceCallback, ...], callback: ResourceCallback, what: str
) -> tuple[ResourceCallback, ...]:
    for index, registered in enumerate(callbacks):
        if registered == callback:
            return callbacks[:index] + callbacks[index + 1 :]
    raise ValueError(f"{what} {callback!r} is not registered")
