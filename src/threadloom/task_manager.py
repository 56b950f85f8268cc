"""The seed's import path for :class:`TaskManager`, which lives in :mod:`threadloom.graph.manager`.

The seed's documents and examples import ``threadloom.task_manager``; this
module keeps them working, and adds nothing.
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
