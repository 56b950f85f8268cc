"""threadloom: a fast drop-in ThreadPoolExecutor, and the task machinery around it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._future import Future
from ._impl import NATIVE
from ._task import SubmitOptions, TaskCancelled, TaskContext, TaskFuture, current_task
from ._types import TaskPriority, TaskStatus
from ._version import __version__
from .executor import BrokenThreadPool, ExecutorStatistics, Percentiles, ThreadPoolExecutor

if TYPE_CHECKING:
    from ._graph import (
        DependencyCycleError,
        TaskDependencyError,
        TriggerRule,
        UnknownDependencyError,
    )
    from .history import HistoryError, TaskHistory
    from .resource_monitor import ResourceMonitor
    from .retry import RetryPolicy
    from .scheduling import (
        CronSchedule,
        IntervalSchedule,
        MissReason,
        OneOffSchedule,
        Schedule,
        Scheduler,
        every,
        parse_schedule,
    )
    from .task_manager import ExecutionInfo, TaskManager, UnknownExecutionError
    from .thread_pool_manager import (
        QueueFull,
        TaskInfo,
        TaskNotFinished,
        ThreadPoolManager,
        UnknownTaskError,
    )

# psutil, sqlite3, cronsim and schedule cost tens of milliseconds to import:
# the modules that need them load on first use.
_LAZY = {
    "RetryPolicy": "retry",
    "ThreadPoolManager": "thread_pool_manager",
    "QueueFull": "thread_pool_manager",
    "TaskInfo": "thread_pool_manager",
    "TaskNotFinished": "thread_pool_manager",
    "UnknownTaskError": "thread_pool_manager",
    "ResourceMonitor": "resource_monitor",
    "TaskManager": "task_manager",
    "ExecutionInfo": "task_manager",
    "UnknownExecutionError": "task_manager",
    "TaskHistory": "history",
    "HistoryError": "history",
    "TriggerRule": "_graph",
    "TaskDependencyError": "_graph",
    "DependencyCycleError": "_graph",
    "UnknownDependencyError": "_graph",
    "Schedule": "scheduling",
    "CronSchedule": "scheduling",
    "IntervalSchedule": "scheduling",
    "OneOffSchedule": "scheduling",
    "Scheduler": "scheduling",
    "MissReason": "scheduling",
    "every": "scheduling",
    "parse_schedule": "scheduling",
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
    "BrokenThreadPool",
    "CronSchedule",
    "DependencyCycleError",
    "ExecutionInfo",
    "ExecutorStatistics",
    "Future",
    "HistoryError",
    "IntervalSchedule",
    "MissReason",
    "OneOffSchedule",
    "Percentiles",
    "QueueFull",
    "ResourceMonitor",
    "RetryPolicy",
    "Schedule",
    "Scheduler",
    "SubmitOptions",
    "TaskCancelled",
    "TaskContext",
    "TaskDependencyError",
    "TaskFuture",
    "TaskHistory",
    "TaskInfo",
    "TaskManager",
    "TaskNotFinished",
    "TaskPriority",
    "TaskStatus",
    "ThreadPoolExecutor",
    "ThreadPoolManager",
    "TriggerRule",
    "UnknownDependencyError",
    "UnknownExecutionError",
    "UnknownTaskError",
    "__version__",
    "current_task",
    "every",
    "parse_schedule",
]
