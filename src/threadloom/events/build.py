"""The builders: plain values in, events out (so that an emitter's hook stays one line)."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterable
from typing import Any

from .records import (
    MAX_TRACEBACK_CHARS,
    AlertCleared,
    AlertRaised,
    Event,
    ExecutionFinished,
    ExecutionStarted,
    ResourceSampled,
    ScheduleFired,
    ScheduleMissed,
    TaskFinished,
    TaskQueued,
    TaskRetrying,
    TaskStarted,
    WorkersChanged,
)

__all__ = [
    "alert",
    "execution_finished",
    "execution_started",
    "resource_sampled",
    "schedule_fired",
    "schedule_missed",
    "task_finished",
    "task_finished_from_future",
    "task_queued",
    "task_retrying",
    "task_started",
    "workers_changed",
]


def _safe_str(error: BaseException) -> str:
    # A user's exception may fail to print itself: that must never end a
    # task's bookkeeping (or an event).
    try:
        return str(error)
    except Exception as exc:
        return f"<{type(error).__qualname__}: str() raised {type(exc).__qualname__}>"


def _error_fields(error: BaseException | None) -> tuple[str, str, str]:
    if error is None:
        return "", "", ""
    try:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:
        text = ""
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return type(error).__qualname__, _safe_str(error), text


def _span(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, end - start)


def task_queued(
    task_id: str, name: str | None, priority: int, execution_id: str | None = None
) -> TaskQueued:
    # Positional: these builders run once per task while someone listens.
    return TaskQueued(time.time(), task_id, name, int(priority), execution_id)


def task_started(
    task_id: str, name: str | None, priority: int, attempt: int, queued_at: float
) -> TaskStarted:
    """The event of an attempt starting on the calling (worker) thread."""
    now = time.time()
    wait = now - queued_at
    return TaskStarted(
        now,
        task_id,
        name,
        int(priority),
        attempt,
        threading.current_thread().name,
        wait if wait > 0.0 else 0.0,
    )


def task_retrying(
    task_id: str,
    name: str | None,
    attempt: int,
    run_time: float,
    delay: float,
    error: BaseException,
) -> TaskRetrying:
    error_type, message, text = _error_fields(error)
    return TaskRetrying(
        timestamp=time.time(),
        task_id=task_id,
        name=name,
        attempt=attempt,
        worker=threading.current_thread().name,
        run_time=run_time,
        delay=delay,
        error_type=error_type,
        message=message,
        traceback=text,
    )


def task_finished(
    task_id: str,
    name: str | None,
    priority: int,
    status: object,
    attempts: int,
    queued_at: float | None,
    started_at: float | None,
    finished_at: float | None,
    error: BaseException | None = None,
    execution_id: str | None = None,
) -> TaskFinished:
    """*status* is a ``TaskStatus`` (or its value); times are epoch seconds."""
    if error is None:
        error_type = message = text = ""
    else:
        error_type, message, text = _error_fields(error)
    return TaskFinished(
        time.time(),
        task_id,
        name,
        int(priority),
        str(getattr(status, "value", status)),
        attempts,
        _span(queued_at, started_at),
        _span(started_at, finished_at),
        error_type,
        message,
        text,
        execution_id,
    )


def task_finished_from_future(task: Any, future: Any) -> TaskFinished:
    """The end of a pool task: *task* has the ``ManagedTask`` attributes
    (``task_id``, ``name``, ``priority``, ``status``, ``attempts``,
    ``submitted_at``, ``started_at``, ``finished_at``); the error is read from
    its resolved *future*."""
    error = None
    if getattr(task.status, "value", task.status) in ("failed", "timed_out"):
        error = future.exception(0)
    return task_finished(
        task.task_id,
        task.name,
        task.priority,
        task.status,
        task.attempts,
        task.submitted_at,
        task.started_at,
        task.finished_at,
        error,
    )


def execution_started(
    execution_id: str, targets: Iterable[str], tasks: Iterable[str], trigger: str
) -> ExecutionStarted:
    return ExecutionStarted(
        timestamp=time.time(),
        execution_id=execution_id,
        targets=tuple(targets),
        tasks=tuple(tasks),
        trigger=trigger,
    )


def execution_finished(
    execution_id: str,
    status: object,
    started_at: float,
    finished_at: float | None,
    first_error: tuple[str, BaseException] | None = None,
) -> ExecutionFinished:
    """*first_error* is (task name, exception) of the first task that failed."""
    return ExecutionFinished(
        timestamp=time.time(),
        execution_id=execution_id,
        status=str(getattr(status, "value", status)),
        duration=_span(started_at, finished_at),
        error=""
        if first_error is None
        else f"task {first_error[0]!r}: {_safe_str(first_error[1])}",
    )


def schedule_fired(job_id: str, fire_time: Any) -> ScheduleFired:
    return ScheduleFired(timestamp=time.time(), job_id=job_id, fire_time=fire_time.isoformat())


def schedule_missed(job_id: str, fire_time: Any, reason: object) -> ScheduleMissed:
    return ScheduleMissed(
        timestamp=time.time(),
        job_id=job_id,
        fire_time=fire_time.isoformat(),
        reason=str(getattr(reason, "value", reason)),
    )


def workers_changed(previous: int, target: int, running: int) -> WorkersChanged:
    return WorkersChanged(timestamp=time.time(), previous=previous, target=target, running=running)


def resource_sampled(sample: Any) -> ResourceSampled:
    """From a ``ResourceSample`` (read by attribute, so this module imports nothing above it)."""
    return ResourceSampled(
        timestamp=float(sample.timestamp),
        cpu_percent=float(sample.cpu_percent),
        memory_percent=float(sample.memory_percent),
        disk_percent=float(sample.disk_percent),
        io_percent=float(sample.io_percent),
        usable_cpus=float(sample.cpu_count),
        memory_limit=int(sample.memory_limit_bytes),
    )


def alert(resource: str, value: float, threshold: float, *, recovered: bool) -> Event:
    """An :class:`AlertCleared` if *recovered*, else an :class:`AlertRaised`."""
    cls = AlertCleared if recovered else AlertRaised
    return cls(
        timestamp=time.time(), resource=resource, value=float(value), threshold=float(threshold)
    )
