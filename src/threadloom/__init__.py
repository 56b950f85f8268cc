"""threadloom: a fast drop-in ThreadPoolExecutor, and the task machinery around it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._future import Future
from ._impl import NATIVE
from ._task import SubmitOptions, TaskCancelled, TaskContext, TaskFuture, current_task
from ._types import TaskPriority, TaskStatus
from .executor import BrokenThreadPool, ExecutorStatistics, Percentiles, ThreadPoolExecutor
from .retry import RetryPolicy
from .thread_pool_manager import (
    QueueFull,
    TaskInfo,
    TaskNotFinished,
    ThreadPoolManager,
    UnknownTaskError,
)

if TYPE_CHECKING:
    from .resource_monitor import ResourceMonitor

# psutil costs tens of milliseconds to import: load the monitor on first use.
_LAZY = {"ResourceMonitor": "resource_monitor"}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'threadloom' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "NATIVE",
    "BrokenThreadPool",
    "ExecutorStatistics",
    "Future",
    "Percentiles",
    "QueueFull",
    "ResourceMonitor",
    "RetryPolicy",
    "SubmitOptions",
    "TaskCancelled",
    "TaskContext",
    "TaskFuture",
    "TaskInfo",
    "TaskNotFinished",
    "TaskPriority",
    "TaskStatus",
    "ThreadPoolExecutor",
    "ThreadPoolManager",
    "UnknownTaskError",
    "__version__",
    "current_task",
]
