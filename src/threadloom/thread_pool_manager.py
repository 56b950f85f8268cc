"""The seed's import path for :class:`ThreadPoolManager`, which lives in :mod:`threadloom.pool`.

The seed's documents and examples import ``threadloom.thread_pool_manager``;
this module keeps them working, and adds nothing.
"""

from .pool import (
    QueueFull,
    QueueFullPolicy,
    TaskInfo,
    TaskNotFinished,
    TaskPriority,
    TaskStatus,
    ThreadPoolManager,
    UnknownTaskError,
    current_task,
)

__all__ = [
    "QueueFull",
    "QueueFullPolicy",
    "TaskInfo",
    "TaskNotFinished",
    "TaskPriority",
    "TaskStatus",
    "ThreadPoolManager",
    "UnknownTaskError",
    "current_task",
]
