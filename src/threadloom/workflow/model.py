"""The validated shapes of a workflow: :class:`TaskSpec`, :class:`Workflow`,
:class:`WorkflowCheck`, and the bounds every field respects."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .._types import TaskPriority
from ..graph.dag import TriggerRule
from ..retry import RetryPolicy
from ..scheduling import Schedule

__all__ = ["MAX_SECONDS", "MAX_WORKERS", "TaskSpec", "Workflow", "WorkflowCheck"]

#: The most worker threads a workflow (or ``threadloom run --workers``) may ask for.
MAX_WORKERS = 10_000
#: The longest duration any field accepts, in seconds (a year).  Longer is a
#: mistake, and past ``threading.TIMEOUT_MAX`` it would break the timers.
MAX_SECONDS = 365 * 86_400


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A validated task of a workflow, ready to register.

    Attributes:
        name: The task's name (its key under ``[tasks]``).
        func: The callable, imported.
        call: Where *func* came from (``module:attribute``), for display.
        retry: The retry policy, or None for no retries.
        timeout: Seconds from queueing to the end, or None.
        schedule: When the task fires on its own, or None.
        depends_on: Names of the tasks it depends on.
    """

    name: str
    func: Callable[..., Any]
    call: str = ""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    depends_on: tuple[str, ...] = ()
    priority: int = TaskPriority.NORMAL
    retry: RetryPolicy | None = None
    timeout: float | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    results_param: str | None = None
    schedule: Schedule | None = None
    tags: tuple[str, ...] = ()
    description: str = ""
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Workflow:
    """A validated workflow: tasks in dependency order (every task after its dependencies).

    Attributes:
        source: The file it was read from (or the name given to :func:`parse_workflow`).
        name: Its name.
        tasks: Name -> task, in dependency order.
        workers: The pool's maximum worker count it asks for, or None.
        cluster: The Dask cluster to run on (``local:N`` or a scheduler
            address; see :mod:`threadloom.distributed`), or None for the pool.
    """

    source: str
    name: str
    tasks: Mapping[str, TaskSpec]
    workers: int | None = None
    cluster: str | None = None

    @property
    def scheduled(self) -> list[TaskSpec]:
        """The enabled tasks that have a schedule."""
        return [t for t in self.tasks.values() if t.schedule is not None and t.enabled]

    def closure(self, names: Iterable[str]) -> list[str]:
        """Return *names* and everything they depend on, in dependency order."""
        wanted: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name not in wanted:
                wanted.add(name)
                stack.extend(self.tasks[name].depends_on)
        return [name for name in self.tasks if name in wanted]


@dataclasses.dataclass(frozen=True)
class WorkflowCheck:
    """What :func:`check_workflow` found in a valid file (nothing imported).

    Attributes:
        source: The file.
        name: The workflow's name.
        tasks: The task names, in dependency order.
        scheduled: The enabled tasks that have a schedule.
        workers: The pool's maximum worker count it asks for, or None.
    """

    source: str
    name: str
    tasks: tuple[str, ...]
    scheduled: tuple[str, ...]
    workers: int | None = None
