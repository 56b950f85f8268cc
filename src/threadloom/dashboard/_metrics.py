"""``/metrics``: a Prometheus collector that reads the live counters at scrape time.

Nothing is counted for Prometheus on the hot path: task totals, retries,
rejections, queue depths and worker states are the pool's own counters, read
when scraped.  The wait/run histograms, execution totals and schedule misses
are counted by the dashboard's event subscriber (off the workers), so they
cover what happened while the dashboard was open.  No label holds a task id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from .._types import TaskPriority
from ..core import NATIVE
from ._collector import Histogram, LiveState

if TYPE_CHECKING:
    from ._sources import Sources


def _priority_label(priority: int) -> str:
    try:
        return TaskPriority(priority).name.lower()
    except ValueError:
        return str(priority)


class ThreadloomCollector(Collector):
    def __init__(self, sources: Sources, state: LiveState) -> None:
        self.sources = sources
        self.state = state

    def collect(self) -> Iterator[Metric]:
        from .. import __version__

        info = InfoMetricFamily("threadloom", "threadloom version and core")
        info.add_metric([], {"version": __version__, "core": "native" if NATIVE else "python"})
        yield info
        pool = self.sources.pool
        if pool is not None:
            yield from self._pool_metrics(pool.get_metrics())
        yield from self._event_metrics()
        yield from self._resource_metrics()

    def _pool_metrics(self, m: dict[str, Any]) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "threadloom_tasks_submitted", "Tasks accepted by the pool", value=m["tasks_submitted"]
        )
        yield CounterMetricFamily(
            "threadloom_tasks_started",
            "Tasks whose first attempt started",
            value=m["tasks_started"],
        )
        finished = CounterMetricFamily(
            "threadloom_tasks", "Tasks that ended, by final status", labels=["status"]
        )
        for status, key in (
            ("completed", "tasks_completed"),
            ("failed", "tasks_failed"),
            ("cancelled", "tasks_cancelled"),
            ("timed_out", "tasks_timed_out"),
        ):
            finished.add_metric([status], m[key])
        yield finished
        yield CounterMetricFamily(
            "threadloom_task_retries", "Failed attempts that were retried", value=m["tasks_retried"]
        )
        yield CounterMetricFamily(
            "threadloom_tasks_rejected",
            "Submissions refused (queue full)",
            value=m["tasks_rejected"],
        )
        depth = GaugeMetricFamily(
            "threadloom_queue_depth", "Tasks waiting to start, by priority", labels=["priority"]
        )
        by_priority = m["queue_size_by_priority"]
        for priority in sorted(set(by_priority) | {int(p) for p in TaskPriority}):
            depth.add_metric([_priority_label(priority)], by_priority.get(priority, 0))
        yield depth
        workers = GaugeMetricFamily(
            "threadloom_workers", "Worker threads by state", labels=["state"]
        )
        workers.add_metric(["busy"], m["active_workers"])
        workers.add_metric(["idle"], m["idle_workers"])
        yield workers
        yield GaugeMetricFamily(
            "threadloom_workers_target", "The sizing loop's worker limit", value=m["target_workers"]
        )
        yield GaugeMetricFamily(
            "threadloom_workers_max", "The configured most workers", value=m["max_workers"]
        )

    def _event_metrics(self) -> Iterator[Metric]:
        state = self.state
        with state.lock:
            wait = _histogram(
                "threadloom_task_wait_seconds",
                "Seconds from queued to first start (tasks seen by the dashboard)",
                state.wait_hist,
            )
            run = _histogram(
                "threadloom_task_run_seconds",
                "Seconds from first start to end (tasks seen by the dashboard)",
                state.run_hist,
            )
            executions = dict(state.executions_by_status)
            misses = dict(state.schedule_misses)
        yield wait
        yield run
        family = CounterMetricFamily(
            "threadloom_executions",
            "TaskManager executions that ended, by status",
            labels=["status"],
        )
        for status in sorted(set(executions) | {"completed", "failed", "cancelled"}):
            family.add_metric([status], executions.get(status, 0))
        yield family
        missed = CounterMetricFamily(
            "threadloom_schedule_misses",
            "Scheduled fire times not run, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(misses.items()):
            missed.add_metric([reason], count)
        yield missed

    def _resource_metrics(self) -> Iterator[Metric]:
        monitor = self.sources.monitor
        if monitor is None:
            return
        sample = monitor.get_current_sample()
        usage = GaugeMetricFamily(
            "threadloom_resource_usage_ratio", "Resource use (0-1)", labels=["resource"]
        )
        limit = GaugeMetricFamily(
            "threadloom_resource_threshold_ratio", "Alert thresholds (0-1)", labels=["resource"]
        )
        thresholds = monitor.get_thresholds()
        for resource in ("cpu", "memory", "disk", "io"):
            usage.add_metric([resource], sample.value(resource) / 100.0)
            value = thresholds.get(resource, thresholds.get(f"{resource}_threshold"))
            if value is not None:
                limit.add_metric([resource], float(value) / 100.0)
        yield usage
        yield limit
        yield GaugeMetricFamily(
            "threadloom_cpu_limit_cores", "Usable CPUs (container-aware)", value=sample.cpu_count
        )
        yield GaugeMetricFamily(
            "threadloom_memory_limit_bytes",
            "Memory limit (container-aware)",
            value=sample.memory_limit_bytes,
        )


def _histogram(name: str, documentation: str, hist: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], [(le, float(n)) for le, n in hist.cumulative()], hist.total)
    return family


def make_registry(sources: Sources, state: LiveState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ThreadloomCollector(sources, state))
    return registry
