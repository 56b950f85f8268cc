"""Exceptions shared by every layer (the core included)."""

from __future__ import annotations

__all__ = ["TaskCancelled"]


class TaskCancelled(Exception):
    """Raised by ``current_task().check_cancelled()`` once cancellation was requested."""
