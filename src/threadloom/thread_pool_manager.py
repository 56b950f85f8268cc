"""The original import path of :class:`ThreadPoolManager`, which lives in :mod:`threadloom.pool`.

Code written for the original API imports ``threadloom.thread_pool_manager``;
this module keeps it working, and adds nothing.
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
