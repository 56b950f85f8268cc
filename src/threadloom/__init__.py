"""threadloom: a fast drop-in ThreadPoolExecutor, and the task machinery around it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import (
    ClusterUnreachableError,
    DashboardError,
    DependencyCycleError,
    DesignerError,
    HistoryError,
    PaletteError,
    QueueFull,
    RequestRefused,
    TaskCancelled,
    TaskDependencyError,
    TaskNotFinished,
    UnknownDependencyError,
    UnknownExecutionError,
    UnknownTaskError,
    WorkflowError,
    WorkflowProblem,
)
from ._types import TaskPriority, TaskStatus
from ._version import __version__
from .core import NATIVE, Future
from .executor import BrokenThreadPool, ExecutorStatistics, Percentiles, ThreadPoolExecutor
from .managed import ManagedOptions, SubmitOptions, TaskContext, TaskFuture, current_task

if TYPE_CHECKING:
    from .events import (
        AlertCleared,
        AlertRaised,
        Event,
        EventBus,
        ExecutionFinished,
        ExecutionStarted,
        ResourceSampled,
        ScheduleFired,
        ScheduleMissed,
        Subscription,
        TaskFinished,
        TaskProfiled,
        TaskQueued,
        TaskRetrying,
        TaskStarted,
        WorkersChanged,
    )
    from .graph.dag import (
        TriggerRule,
    )
    from .graph.manager import (
        ExecutionInfo,
        RegisteredTask,
        TaskManager,
        TaskRunInfo,
    )
    from .history import (
        ExecutionRecord,
        HistoryStats,
        TaskHistory,
        TaskRunRecord,
    )
    from .monitor import (
        PsutilSampler,
        ResourceAlert,
        ResourceCallback,
        ResourceMonitor,
        ResourceSample,
        Sampler,
    )
    from .pool import (
        QueueFullPolicy,
        TaskInfo,
        ThreadPoolManager,
    )
    from .profiling import (
        Profiler,
    )
    from .retry import (
        RetryPolicy,
    )
    from .scheduling import (
        CronSchedule,
        IntervalJob,
        IntervalSchedule,
        MissedCallback,
        MissReason,
        OneOffSchedule,
        Period,
        Schedule,
        ScheduleInfo,
        SchedulePolicies,
        Scheduler,
        SubmitCallback,
        TimeWindow,
        every,
        parse_schedule,
    )
    from .scheduling.clock import (
        Clock,
        ManualClock,
        SystemClock,
    )

# psutil, sqlite3, cronsim and schedule cost tens of milliseconds to import:
# the modules that need them load on first use.  Every name here is also
# imported under TYPE_CHECKING above, so that type checkers and IDEs see it
# (tests/test_init.py holds the two lists together).
_LAZY = {
    "Clock": "scheduling.clock",
    "ManualClock": "scheduling.clock",
    "SystemClock": "scheduling.clock",
    "TriggerRule": "graph.dag",
    "AlertCleared": "events",
    "AlertRaised": "events",
    "Event": "events",
    "EventBus": "events",
    "ExecutionFinished": "events",
    "ExecutionStarted": "events",
    "ResourceSampled": "events",
    "ScheduleFired": "events",
    "ScheduleMissed": "events",
    "Subscription": "events",
    "TaskFinished": "events",
    "TaskProfiled": "events",
    "TaskQueued": "events",
    "TaskRetrying": "events",
    "TaskStarted": "events",
    "WorkersChanged": "events",
    "ExecutionRecord": "history",
    "HistoryStats": "history",
    "TaskHistory": "history",
    "TaskRunRecord": "history",
    "PsutilSampler": "monitor",
    "ResourceAlert": "monitor",
    "ResourceCallback": "monitor",
    "ResourceMonitor": "monitor",
    "ResourceSample": "monitor",
    "Sampler": "monitor",
    "Profiler": "profiling",
    "RetryPolicy": "retry",
    "CronSchedule": "scheduling",
    "IntervalJob": "scheduling",
    "IntervalSchedule": "scheduling",
    "MissReason": "scheduling",
    "MissedCallback": "scheduling",
    "OneOffSchedule": "scheduling",
    "Period": "scheduling",
    "Schedule": "scheduling",
    "ScheduleInfo": "scheduling",
    "SchedulePolicies": "scheduling",
    "Scheduler": "scheduling",
    "SubmitCallback": "scheduling",
    "TimeWindow": "scheduling",
    "every": "scheduling",
    "parse_schedule": "scheduling",
    "ExecutionInfo": "graph.manager",
    "RegisteredTask": "graph.manager",
    "TaskManager": "graph.manager",
    "TaskRunInfo": "graph.manager",
    "QueueFullPolicy": "pool",
    "TaskInfo": "pool",
    "ThreadPoolManager": "pool",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'threadloom' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "NATIVE",
    "AlertCleared",
    "AlertRaised",
    "BrokenThreadPool",
    "Clock",
    "ClusterUnreachableError",
    "CronSchedule",
    "DashboardError",
    "DependencyCycleError",
    "DesignerError",
    "Event",
    "EventBus",
    "ExecutionFinished",
    "ExecutionInfo",
    "ExecutionRecord",
    "ExecutionStarted",
    "ExecutorStatistics",
    "Future",
    "HistoryError",
    "HistoryStats",
    "IntervalJob",
    "IntervalSchedule",
    "ManagedOptions",
    "ManualClock",
    "MissReason",
    "MissedCallback",
    "OneOffSchedule",
    "PaletteError",
    "Percentiles",
    "Period",
    "Profiler",
    "PsutilSampler",
    "QueueFull",
    "QueueFullPolicy",
    "RegisteredTask",
    "RequestRefused",
    "ResourceAlert",
    "ResourceCallback",
    "ResourceMonitor",
    "ResourceSample",
    "ResourceSampled",
    "RetryPolicy",
    "Sampler",
    "Schedule",
    "ScheduleFired",
    "ScheduleInfo",
    "ScheduleMissed",
    "SchedulePolicies",
    "Scheduler",
    "SubmitCallback",
    "SubmitOptions",
    "Subscription",
    "SystemClock",
    "TaskCancelled",
    "TaskContext",
    "TaskDependencyError",
    "TaskFinished",
    "TaskFuture",
    "TaskHistory",
    "TaskInfo",
    "TaskManager",
    "TaskNotFinished",
    "TaskPriority",
    "TaskProfiled",
    "TaskQueued",
    "TaskRetrying",
    "TaskRunInfo",
    "TaskRunRecord",
    "TaskStarted",
    "TaskStatus",
    "ThreadPoolExecutor",
    "ThreadPoolManager",
    "TimeWindow",
    "TriggerRule",
    "UnknownDependencyError",
    "UnknownExecutionError",
    "UnknownTaskError",
    "WorkersChanged",
    "WorkflowError",
    "WorkflowProblem",
    "__version__",
    "current_task",
    "every",
    "parse_schedule",
]
