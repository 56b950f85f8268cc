"""What the dashboard knows: an event subscriber plus a periodic sampler.

Everything here is bounded: the task table keeps the latest ``max_tasks``
tasks, the task stream the latest ``max_bars`` attempt bars, the time series
``series_points`` samples.  Counters shown as totals are never kept here:
they are read from the pool at request or scrape time.  What is counted here
(histograms, executions and schedule misses) comes from events, on the
subscription's thread, never on a worker.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any, ClassVar

from .. import events as ev

#: Histogram bucket bounds, in seconds (Prometheus ``le`` values).
BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class Histogram:
    """Cumulative-at-read bucket counts and a sum (guarded by the owner's lock)."""

    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        out = []
        running = 0
        for bound, n in zip(BUCKETS, self.counts, strict=False):
            running += n
            out.append((_le(bound), running))
        out.append(("+Inf", self.count))
        return out


def _le(bound: float) -> str:
    return repr(bound) if bound != math.inf else "+Inf"


class TaskRow:
    """One task as the tasks table shows it (mutable, guarded by LiveState's lock)."""

    __slots__ = (
        "attempts",
        "attempts_log",
        "error_type",
        "finished_at",
        "message",
        "name",
        "priority",
        "queued_at",
        "run_time",
        "started_at",
        "status",
        "task_id",
        "traceback",
        "wait_time",
        "worker",
    )

    def __init__(self, task_id: str, name: str | None, priority: int, queued_at: float) -> None:
        self.task_id = task_id
        self.name = name
        self.priority = priority
        self.status = "queued"
        self.attempts = 0
        self.queued_at = queued_at
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.wait_time: float | None = None
        self.run_time: float | None = None
        self.error_type = ""
        self.message = ""
        self.traceback = ""
        self.worker = ""
        self.attempts_log: list[dict[str, Any]] = []

    def summary(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "name": self.name,
            "priority": self.priority,
            "status": self.status,
            "attempts": self.attempts,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wait_time": self.wait_time,
            "run_time": self.run_time,
            "error_type": self.error_type,
            "message": self.message[:300],
            "worker": self.worker,
        }

    def detail(self) -> dict[str, Any]:
        data = self.summary()
        data["message"] = self.message
        data["traceback"] = self.traceback
        data["attempts_log"] = [dict(a) for a in self.attempts_log]
        return data


_TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


class LiveState:
    """Aggregates events for the dashboard; see the module docstring.

    Args:
        max_tasks: tasks kept for the tasks table (oldest forgotten first).
        max_bars: attempt bars kept for the task stream.
        series_points: samples kept for the overview's time series.
    """

    def __init__(
        self,
        *,
        max_tasks: int = 5_000,
        max_bars: int = 200_000,
        series_points: int = 600,
    ) -> None:
        self.lock = threading.Lock()
        self.max_tasks = max_tasks
        self.max_bars = max_bars
        self.version = 0
        self.tasks: OrderedDict[str, TaskRow] = OrderedDict()
        self.dirty_tasks: set[str] = set()
        self.dirty_executions: set[str] = set()
        self.active_executions: set[str] = set()
        # Attempt bars, in the order they ended: parallel lists, trimmed from
        # the front in chunks (amortised O(1)), so a window is found by bisect.
        self.bar_end: list[float] = []
        self.bar_start: list[float] = []
        self.bar_worker: list[int] = []
        self.bar_name: list[str] = []
        self.bar_failed: list[bool] = []
        self.longest_bar = 0.0
        self.workers: dict[str, int] = {}
        self.running: dict[str, tuple[int, float, str]] = {}  # task id -> bar in progress
        self.series: deque[dict[str, Any]] = deque(maxlen=series_points)
        self.wait_hist = Histogram()
        self.run_hist = Histogram()
        self.executions_by_status: Counter[str] = Counter()
        self.schedule_misses: Counter[str] = Counter()
        self.recent_misses: deque[dict[str, Any]] = deque(maxlen=200)
        self.alerts: deque[dict[str, Any]] = deque(maxlen=200)
        self.active_alerts: dict[str, dict[str, Any]] = {}
        self.latest_resources: dict[str, Any] | None = None
        self.events_seen = 0

    # -- the subscriber (on the subscription's thread) -------------------------
    def on_event(self, event: ev.Event) -> None:
        handler = self._HANDLERS.get(event.kind)
        if handler is None:
            return
        with self.lock:
            handler(self, event)
            self.events_seen += 1
            self.version += 1

    def _row(self, task_id: str, name: str | None, priority: int, when: float) -> TaskRow:
        row = self.tasks.get(task_id)
        if row is None:
            row = self.tasks[task_id] = TaskRow(task_id, name, priority, when)
            while len(self.tasks) > self.max_tasks:
                old, _ = self.tasks.popitem(last=False)
                self.dirty_tasks.discard(old)
                self.running.pop(old, None)
        self.dirty_tasks.add(task_id)
        return row

    def _queued(self, event: Any) -> None:
        if event.execution_id is not None:
            self.dirty_executions.add(event.execution_id)
            return
        self._row(event.task_id, event.name, event.priority, event.timestamp)

    def _started(self, event: Any) -> None:
        if event.execution_id is not None:
            self.dirty_executions.add(event.execution_id)
            return
        row = self._row(
            event.task_id, event.name, event.priority, event.timestamp - event.wait_time
        )
        row.status = "running"
        row.attempts = max(row.attempts, event.attempt)
        row.worker = event.worker
        if row.started_at is None:
            row.started_at = event.timestamp
            row.wait_time = event.wait_time
            self.wait_hist.observe(event.wait_time)
        row.attempts_log.append(
            {"attempt": event.attempt, "worker": event.worker, "started_at": event.timestamp}
        )
        worker = self.workers.setdefault(event.worker, len(self.workers))
        self.running[event.task_id] = (worker, event.timestamp, event.name or "")

    def _retrying(self, event: Any) -> None:
        row = self._row(event.task_id, event.name, 0, event.timestamp)
        row.status = "retrying"
        if row.attempts_log:
            row.attempts_log[-1].update(
                ended_at=event.timestamp,
                error_type=event.error_type,
                message=event.message,
                traceback=event.traceback,
                retry_delay=event.delay,
            )
        self._end_bar(event.task_id, event.timestamp, failed=True)

    def _finished(self, event: Any) -> None:
        if event.execution_id is not None:
            self.dirty_executions.add(event.execution_id)
            return
        row = self._row(event.task_id, event.name, event.priority, event.timestamp)
        row.status = event.status
        row.attempts = max(row.attempts, event.attempts)
        row.finished_at = event.timestamp
        row.run_time = event.run_time
        if event.wait_time is not None and row.wait_time is None:
            row.wait_time = event.wait_time
        row.error_type = event.error_type
        row.message = event.message
        row.traceback = event.traceback
        if row.attempts_log and "ended_at" not in row.attempts_log[-1]:
            row.attempts_log[-1].update(
                ended_at=event.timestamp, error_type=event.error_type, message=event.message
            )
        if event.run_time is not None:
            self.run_hist.observe(event.run_time)
        self._end_bar(event.task_id, event.timestamp, failed=event.status != "completed")

    def _end_bar(self, task_id: str, end: float, *, failed: bool) -> None:
        bar = self.running.pop(task_id, None)
        if bar is None:
            return
        worker, start, name = bar
        self.bar_end.append(end)
        self.bar_start.append(start)
        self.bar_worker.append(worker)
        self.bar_name.append(name)
        self.bar_failed.append(failed)
        self.longest_bar = max(self.longest_bar, end - start)
        excess = len(self.bar_end) - self.max_bars
        if excess > self.max_bars // 10:
            for column in (
                self.bar_end,
                self.bar_start,
                self.bar_worker,
                self.bar_name,
                self.bar_failed,
            ):
                del column[:excess]

    def _execution_started(self, event: Any) -> None:
        self.active_executions.add(event.execution_id)
        self.dirty_executions.add(event.execution_id)

    def _execution_finished(self, event: Any) -> None:
        self.active_executions.discard(event.execution_id)
        self.dirty_executions.add(event.execution_id)
        self.executions_by_status[event.status] += 1

    def _schedule_missed(self, event: Any) -> None:
        self.schedule_misses[event.reason] += 1
        self.recent_misses.appendleft(
            {"job_id": event.job_id, "fire_time": event.fire_time, "reason": event.reason}
        )

    def _schedule_fired(self, event: Any) -> None:
        pass

    def _resources(self, event: Any) -> None:
        self.latest_resources = event.to_dict()

    def _alert(self, event: Any) -> None:
        record = event.to_dict()
        self.alerts.appendleft(record)
        if event.kind == "alert_raised":
            self.active_alerts[event.resource] = record
        else:
            self.active_alerts.pop(event.resource, None)

    def _workers_changed(self, event: Any) -> None:
        pass

    # The kinds followed, each with its handler (called under self.lock).
    _HANDLERS: ClassVar[dict[str, Callable[[LiveState, Any], None]]] = {
        "task_queued": _queued,
        "task_started": _started,
        "task_retrying": _retrying,
        "task_finished": _finished,
        "execution_started": _execution_started,
        "execution_finished": _execution_finished,
        "schedule_fired": _schedule_fired,
        "schedule_missed": _schedule_missed,
        "resource_sampled": _resources,
        "alert_raised": _alert,
        "alert_cleared": _alert,
        "workers_changed": _workers_changed,
    }

    # -- readers (any thread) --------------------------------------------------
    def take_dirty(self, limit: int) -> tuple[list[dict[str, Any]], bool, list[str]]:
        """Rows changed since the last call (at most *limit*; True if more were
        dropped), and the executions changed since then."""
        with self.lock:
            overflow = len(self.dirty_tasks) > limit
            rows = (
                []
                if overflow
                else [self.tasks[t].summary() for t in self.dirty_tasks if t in self.tasks]
            )
            self.dirty_tasks.clear()
            executions = sorted(self.dirty_executions | self.active_executions)
            self.dirty_executions.clear()
        return rows, overflow, executions

    def task_rows(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        sort: str = "queued_at",
        descending: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        with self.lock:
            rows = [row.summary() for row in self.tasks.values()]
        if status:
            wanted = set(status.split(","))
            rows = [r for r in rows if r["status"] in wanted]
        if name:
            needle = name.lower()
            rows = [r for r in rows if needle in (r["name"] or "").lower()]
        if sort not in _SORTABLE:
            raise ValueError(f"cannot sort by {sort!r} (use one of {', '.join(_SORTABLE)})")
        rows.sort(key=lambda r: _sort_key(r[sort]), reverse=descending)
        return rows[offset : offset + limit], len(rows)

    def task_detail(self, task_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.tasks.get(task_id)
            return None if row is None else row.detail()

    def stream(self, t0: float, t1: float, width: int, max_bars: int = 4000) -> dict[str, Any]:
        """The task stream between *t0* and *t1* for a chart *width* pixels wide.

        Bars at least a pixel wide are sent as they are (up to *max_bars*);
        thinner ones are folded into per-worker pixel cells with their busy
        share and counts, so the page draws at most workers x width cells
        whatever the number of tasks.
        """
        width = max(10, min(width, 4000))
        span = max(t1 - t0, 1e-6)
        cell = span / width
        bars: list[list[Any]] = []
        cells: dict[tuple[int, int], list[float]] = {}
        with self.lock:
            workers = sorted(self.workers, key=self.workers.__getitem__)
            first = bisect.bisect_left(self.bar_end, t0)
            stop = t1 + self.longest_bar
            ends, starts = self.bar_end, self.bar_start
            for i in range(first, len(ends)):
                end = ends[i]
                if end > stop:
                    break
                start = starts[i]
                if start > t1:
                    continue
                self._place(
                    bars,
                    cells,
                    max_bars,
                    t0,
                    t1,
                    cell,
                    self.bar_worker[i],
                    start,
                    end,
                    self.bar_name[i],
                    self.bar_failed[i],
                    False,
                )
            now = time.time()
            for worker, start, name in self.running.values():
                if start <= t1:
                    self._place(
                        bars, cells, max_bars, t0, t1, cell, worker, start, now, name, False, True
                    )
        return {
            "t0": t0,
            "t1": t1,
            "width": width,
            "workers": workers,
            "bars": bars,
            "cells": [
                [w, x, round(min(1.0, c[0] / cell), 3), int(c[1]), int(c[2])]
                for (w, x), c in cells.items()
            ],
        }

    @staticmethod
    def _place(
        bars: list[list[Any]],
        cells: dict[tuple[int, int], list[float]],
        max_bars: int,
        t0: float,
        t1: float,
        cell: float,
        worker: int,
        start: float,
        end: float,
        name: str,
        failed: bool,
        running: bool,
    ) -> None:
        if end - start >= cell and len(bars) < max_bars:
            bars.append(
                [
                    worker,
                    start,
                    end,
                    name,
                    "failed" if failed else ("running" if running else "completed"),
                ]
            )
            return
        lo, hi = max(start, t0), min(end, t1)
        x = int((lo - t0) / cell)
        slot = cells.setdefault((worker, x), [0.0, 0, 0])
        slot[0] += max(0.0, hi - lo)
        slot[1] += 1
        slot[2] += 1 if failed else 0

    def add_sample(self, sample: dict[str, Any]) -> None:
        with self.lock:
            self.series.append(sample)
            self.version += 1

    def series_points(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.series)


_SORTABLE = (
    "queued_at",
    "started_at",
    "finished_at",
    "name",
    "status",
    "priority",
    "attempts",
    "wait_time",
    "run_time",
    "error_type",
    "task_id",
)


def _sort_key(value: Any) -> tuple[int, Any]:
    # None sorts first ascending (last descending); mixed types never compare.
    if value is None:
        return (0, 0)
    if isinstance(value, str):
        return (1, value.lower())
    return (2, value)
