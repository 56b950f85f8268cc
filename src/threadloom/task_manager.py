"""The original import path of :class:`TaskManager`, which lives in :mod:`threadloom.graph.manager`.

Code written for the original API imports ``threadloom.task_manager``; this
module keeps it working, and adds nothing.
"""

from .graph.manager import (
    DependencyCycleError,
    ExecutionInfo,
    RegisteredTask,
    TaskDependencyError,
    TaskInfo,
    TaskManager,
    TaskRunInfo,
    TriggerRule,
    UnknownDependencyError,
    UnknownExecutionError,
    UnknownTaskError,
)

__all__ = [
    "DependencyCycleError",
    "ExecutionInfo",
    "RegisteredTask",
    "TaskDependencyError",
    "TaskInfo",
    "TaskManager",
    "TaskRunInfo",
    "TriggerRule",
    "UnknownDependencyError",
    "UnknownExecutionError",
    "UnknownTaskError",
]
