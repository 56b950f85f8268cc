"""The event records: one small frozen dataclass per kind of event, with a
``kind`` (a class attribute, the name subscriptions filter on) and a
``timestamp`` (``time.time()`` when it was made)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "EVENT_TYPES",
    "KINDS",
    "MAX_TRACEBACK_CHARS",
    "AlertCleared",
    "AlertRaised",
    "Event",
    "ExecutionFinished",
    "ExecutionStarted",
    "ResourceSampled",
    "ScheduleFired",
    "ScheduleMissed",
    "TaskFinished",
    "TaskProfiled",
    "TaskQueued",
    "TaskRetrying",
    "TaskStarted",
    "WorkersChanged",
]

#: The longest formatted traceback an event carries (longer ones keep their tail).
MAX_TRACEBACK_CHARS = 16_000


@dataclass(frozen=True, slots=True)
class Event:
    """The base of every event: ``kind`` names the type, ``timestamp`` is epoch seconds."""

    kind: ClassVar[str] = "event"
    timestamp: float

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready plain values (``kind`` included)."""
        data: dict[str, Any] = {"kind": self.kind}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if isinstance(value, frozenset | tuple):
                value = sorted(value) if isinstance(value, frozenset) else list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            data[name] = value
        return data


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    return names


@dataclass(frozen=True, slots=True)
class TaskQueued(Event):
    """A task was accepted and queued (its first attempt).

    ``execution_id`` is set when the event comes from a ``TaskManager`` run
    (then ``task_id`` is the registered task's id); the pool's own events for
    the same work carry the pool's task id and no execution id.
    """

    kind: ClassVar[str] = "task_queued"
    task_id: str
    name: str | None
    priority: int
    execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskStarted(Event):
    """An attempt started on a worker thread (``worker`` is the thread's name).

    ``wait_time`` is seconds from queued to this attempt's start.
    """

    kind: ClassVar[str] = "task_started"
    task_id: str
    name: str | None
    priority: int
    attempt: int
    worker: str
    wait_time: float
    execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRetrying(Event):
    """An attempt failed and the task will be retried after about ``delay`` seconds."""

    kind: ClassVar[str] = "task_retrying"
    task_id: str
    name: str | None
    attempt: int
    worker: str
    run_time: float
    delay: float
    error_type: str
    message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class TaskFinished(Event):
    """A task ended (``status`` is its final status's value, e.g. ``"failed"``).

    ``wait_time`` is queued to first start, ``run_time`` first start to end
    (None if it never started); the error fields are empty strings when it
    ended without an exception.
    """

    kind: ClassVar[str] = "task_finished"
    task_id: str
    name: str | None
    priority: int
    status: str
    attempts: int
    wait_time: float | None
    run_time: float | None
    error_type: str = ""
    message: str = ""
    traceback: str = ""
    execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionStarted(Event):
    """A ``TaskManager`` execution started; ``tasks`` are the ids of every task it runs."""

    kind: ClassVar[str] = "execution_started"
    execution_id: str
    targets: tuple[str, ...]
    tasks: tuple[str, ...]
    trigger: str


@dataclass(frozen=True, slots=True)
class ExecutionFinished(Event):
    """An execution ended with ``status`` (``"completed"``, ``"failed"``, ``"cancelled"``)."""

    kind: ClassVar[str] = "execution_finished"
    execution_id: str
    status: str
    duration: float | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class ScheduleFired(Event):
    """A schedule's fire time was handed to its owner (``fire_time`` is ISO 8601)."""

    kind: ClassVar[str] = "schedule_fired"
    job_id: str
    fire_time: str


@dataclass(frozen=True, slots=True)
class ScheduleMissed(Event):
    """A fire time did not become a run; ``reason`` is a ``MissReason`` value."""

    kind: ClassVar[str] = "schedule_missed"
    job_id: str
    fire_time: str
    reason: str


@dataclass(frozen=True, slots=True)
class WorkersChanged(Event):
    """The pool's worker limit changed from ``previous`` to ``target``."""

    kind: ClassVar[str] = "workers_changed"
    previous: int
    target: int
    running: int


@dataclass(frozen=True, slots=True)
class ResourceSampled(Event):
    """A resource monitor sample (percentages; limits as the monitor reports them)."""

    kind: ClassVar[str] = "resource_sampled"
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    io_percent: float
    usable_cpus: float
    memory_limit: int


@dataclass(frozen=True, slots=True)
class AlertRaised(Event):
    """A resource crossed its threshold."""

    kind: ClassVar[str] = "alert_raised"
    resource: str
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class AlertCleared(Event):
    """A resource fell back below its threshold (minus the monitor's margin)."""

    kind: ClassVar[str] = "alert_cleared"
    resource: str
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class TaskProfiled(Event):
    """One profiled attempt's measurements (a pool with a ``Profiler`` timing it).

    ``cpu_time`` is the worker thread's CPU time during the attempt;
    ``off_cpu_share`` the share of ``wall_time`` not on a CPU (waiting on IO,
    locks, or the GIL); ``memory`` the bytes it left allocated (with
    ``trace_memory``), else None.
    """

    kind: ClassVar[str] = "task_profiled"
    task_id: str
    name: str | None
    attempt: int
    worker: str
    wall_time: float
    cpu_time: float
    off_cpu_share: float
    failed: str = ""
    memory: int | None = None


EVENT_TYPES: tuple[type[Event], ...] = (
    TaskQueued,
    TaskStarted,
    TaskRetrying,
    TaskFinished,
    ExecutionStarted,
    ExecutionFinished,
    ScheduleFired,
    ScheduleMissed,
    WorkersChanged,
    ResourceSampled,
    AlertRaised,
    AlertCleared,
    TaskProfiled,
)
#: Every event kind name.
KINDS: frozenset[str] = frozenset(cls.kind for cls in EVENT_TYPES)
