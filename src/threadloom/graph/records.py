"""The task manager's public records: a registered task, a task's run, an execution.

:class:`RegisteredTask` is a task's definition (``TaskInfo`` is its former
name); :class:`TaskRunInfo` is one task's run in one execution and
:class:`ExecutionInfo` a snapshot of a whole execution.  Also here: how the
registry makes a :class:`RegisteredTask` without its ``__init__``
(:func:`new_task_info`), for values already checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from .._types import TaskStatus
from ..core import core
from ..retry import RetryPolicy
from ..scheduling import Schedule
from .dag import TriggerRule

__all__ = ["ExecutionInfo", "RegisteredTask", "TaskInfo", "TaskRunInfo"]

#: The empty mapping a record holds for no keyword arguments, no results.
EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class RegisteredTask:
    """A registered task: its definition.  Immutable: :meth:`TaskManager.update_task` replaces it.

    Not the :class:`threadloom.TaskInfo` of a :class:`~threadloom.ThreadPoolManager`,
    which is a snapshot of one submitted run; one registered task has many runs
    (:class:`TaskRunInfo` inside an execution).  ``task_manager.TaskInfo`` is
    this class's former name, kept as an alias.

    Attributes:
        task_id: The id :meth:`TaskManager.register_task` returned.
        name: Unique among registered tasks; the key of its result in a
            dependent's upstream results.
        dependencies: The ids of the tasks it depends on.
        retry: The retry policy: the one given, or one built from
            ``max_retries`` and ``retry_delay`` (fixed delay); those two
            fields always reflect it.
        timeout: Seconds a run may take from being queued, or None.
        schedule: The parsed schedule, or None; ``schedule_spec`` is what was given.
    """

    task_id: str
    name: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    dependencies: tuple[str, ...]
    priority: int
    max_retries: int
    retry_delay: float
    retry: RetryPolicy
    timeout: float | None
    schedule_spec: object
    schedule: Schedule | None
    enabled: bool
    description: str
    tags: tuple[str, ...]
    trigger_rule: TriggerRule
    results_param: str | None


#: The former name of :class:`RegisteredTask`, kept so that imports of it keep working.
TaskInfo = RegisteredTask


# A frozen dataclass's __init__ sets each field through object.__setattr__,
# about 3 µs for this one: a registry of 100,000 tasks feels it.  The core
# fills the same slots directly (every field, in order; callers pass checked
# values), as __init__ would.
TASK_INFO_FIELDS = tuple(field.name for field in dataclasses.fields(TaskInfo))
TASK_INFO_SLOTS = core.slot_offsets(TaskInfo, TASK_INFO_FIELDS)


def new_task_info(**fields: Any) -> TaskInfo:
    """A :class:`RegisteredTask` of *fields* (every field, checked), made without ``__init__``."""
    values = tuple(fields[name] for name in TASK_INFO_FIELDS)
    task: TaskInfo = core.new_slotted(TaskInfo, TASK_INFO_SLOTS, values)
    return task


class TaskRunInfo(NamedTuple):
    """One task's run in one execution, as seen now."""

    task_id: str
    name: str
    status: TaskStatus
    priority: int
    attempts: int
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    duration: float | None
    error: BaseException | None


@dataclasses.dataclass(frozen=True)
class ExecutionInfo:
    """A snapshot of an execution.

    Attributes:
        status: RUNNING until every task has ended; then COMPLETED (every task
            completed or was skipped), FAILED (a task failed, timed out, was
            cancelled or was not run for a failed upstream) or CANCELLED (the
            execution was cancelled).
        tasks: task id -> its run.
        results: task name -> return value, for the tasks that completed.  Empty
            for an execution read back from the history (results are not stored).
    """

    execution_id: str
    status: TaskStatus
    targets: tuple[str, ...]
    trigger: str
    started_at: float
    finished_at: float | None
    tasks: Mapping[str, TaskRunInfo]
    results: Mapping[str, Any]
