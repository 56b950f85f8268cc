"""Enumerations shared by every layer."""

from __future__ import annotations

import enum

__all__ = ["TaskPriority", "TaskStatus"]


class TaskPriority(enum.IntEnum):
    """Queueing priority: a higher value runs first.

    Any ``int`` is accepted wherever a priority is; these names are the usual
    steps.  Tasks of equal priority run in submission order.
    """

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


class TaskStatus(str, enum.Enum):
    """Where a task is in its life.  The last seven are terminal except RETRYING."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    #: An execution whose process ended (killed, crashed) before recording its
    #: end; set by the history, never by a live task manager.
    INTERRUPTED = "interrupted"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
        TaskStatus.SKIPPED,
        TaskStatus.UPSTREAM_FAILED,
        TaskStatus.INTERRUPTED,
    }
)
