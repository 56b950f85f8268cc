"""Task graphs: the dependency graph and trigger rules, and the engine that runs them.

``dag`` is the pure graph logic (no threads, no pool); ``manager`` is the
:class:`~threadloom.TaskManager` built on it, the pool, the scheduler and the
history.  Only the graph logic is imported here, so that naming a trigger rule
does not load SQLite and the scheduler.
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
