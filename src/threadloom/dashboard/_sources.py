"""What a dashboard watches, resolved from the ``source`` it was given."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..history import TaskHistory
    from ..resource_monitor import ResourceMonitor
    from ..scheduling import Scheduler
    from ..task_manager import TaskManager
    from ..thread_pool_manager import ThreadPoolManager


@dataclass
class Sources:
    pool: ThreadPoolManager | None
    manager: TaskManager | None
    monitor: ResourceMonitor | None
    history: TaskHistory | None
    owns_history: bool

    @property
    def scheduler(self) -> Scheduler | None:
        return None if self.manager is None else self.manager.scheduler

    @property
    def live(self) -> bool:
        return self.pool is not None


def resolve(source: Any, history: Any) -> Sources:
    """Sort *source* (a pool, a task manager, or None) and *history* (a
    ``TaskHistory``, a path, or None) into what the views read.

    Raises:
        TypeError: *source* is something else.
        DashboardError: the history file cannot be opened.
    """
    from ..history import HistoryError, TaskHistory
    from ..task_manager import TaskManager
    from ..thread_pool_manager import ThreadPoolManager
    from . import DashboardError

    manager: TaskManager | None = None
    pool: ThreadPoolManager | None = None
    if isinstance(source, TaskManager):
        manager, pool = source, source.thread_pool
    elif isinstance(source, ThreadPoolManager):
        pool = source
    elif source is not None:
        raise TypeError(
            "source must be a ThreadPoolManager, a TaskManager or None, "
            f"not {type(source).__name__}"
        )
    owns = False
    store: TaskHistory | None
    if history is None:
        store = manager.history if manager is not None else None
    elif isinstance(history, TaskHistory):
        store = history
    elif isinstance(history, str | os.PathLike):
        path = os.fspath(history)
        if path != ":memory:" and not os.path.isfile(path):
            raise DashboardError(f"no history database at {path!r}")
        if path != ":memory:" and not os.access(path, os.R_OK):
            raise DashboardError(f"history database {path!r} is not readable")
        try:
            store = TaskHistory(path)
        except HistoryError as exc:
            raise DashboardError(f"cannot open history {path!r}: {exc}") from None
        owns = True
    else:
        raise TypeError(
            f"history must be a TaskHistory, a path or None, not {type(history).__name__}"
        )
    if pool is None and store is None:
        raise ValueError("a dashboard needs a source (a pool or task manager) or a history")
    monitor = pool.resource_monitor if pool is not None else None
    return Sources(pool, manager, monitor, store, owns)
