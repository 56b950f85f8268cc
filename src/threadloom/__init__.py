"""threadloom: a fast drop-in ThreadPoolExecutor, and the task machinery around it."""

from __future__ import annotations

from ._types import TaskPriority, TaskStatus

__version__ = "0.1.0"

__all__ = [
    "TaskPriority",
    "TaskStatus",
    "__version__",
]
