"""Task graphs: the dependency graph and trigger rules, and the engine that runs them.

One job a module, bottom to top: ``dag`` is the pure graph logic (no threads,
no pool); ``records`` the records the manager returns (``RegisteredTask``,
``TaskRunInfo``, ``ExecutionInfo``); ``build`` the checks that build a task's
record; ``execution`` an execution's state, its snapshot and its rows in the
history; ``manager`` the :class:`~threadloom.TaskManager` built on them, the
pool, the scheduler and the history.  Only the graph logic is imported here, so
that naming a trigger rule does not load SQLite and the scheduler.
"""

from .dag import (
    DependencyCycleError,
    DependencyGraph,
    TaskDependencyError,
    TriggerRule,
    UnknownDependencyError,
)

__all__ = [
    "DependencyCycleError",
    "DependencyGraph",
    "TaskDependencyError",
    "TriggerRule",
    "UnknownDependencyError",
]
