"""threadloom: a fast drop-in ThreadPoolExecutor, and the task machinery around it."""

from __future__ import annotations

from ._future import Future
from ._impl import NATIVE
from ._types import TaskPriority, TaskStatus
from .executor import BrokenThreadPool, ExecutorStatistics, Percentiles, ThreadPoolExecutor

__version__ = "0.1.0"

__all__ = [
    "NATIVE",
    "BrokenThreadPool",
    "ExecutorStatistics",
    "Future",
    "Percentiles",
    "TaskPriority",
    "TaskStatus",
    "ThreadPoolExecutor",
    "__version__",
]
