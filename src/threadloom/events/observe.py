"""Attempt observation: a pool task's function wrapped to report each attempt
(its start, and a retry) while someone subscribes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .build import task_queued, task_retrying, task_started

if TYPE_CHECKING:
    from .bus import EventBus

__all__ = ["AttemptObserver", "observe_attempts"]


class AttemptObserver:
    """Wraps a pool task's function to report each attempt (used only while
    someone subscribes, so unobserved tasks pay nothing).

    Runs on the worker: emits :class:`TaskStarted` before the attempt and, if
    it raises and *retry* would retry it, :class:`TaskRetrying` (the delay is
    the policy's nominal one: jitter is drawn later, by the pool).  An attempt
    of a task submitted before the first subscription is not reported.
    """

    __slots__ = ("_announced", "_lock", "bus", "func", "queued_at", "retry")

    def __init__(self, bus: EventBus, func: Callable[..., Any], retry: Any) -> None:
        self.bus = bus
        self.func = func
        self.retry = retry
        self._lock = threading.Lock()
        self._announced = False
        # Written by the attempt that fails, read by the next one: attempts of
        # one task never overlap (the retry is queued after this one returns).
        self.queued_at = time.time()

    def announce(self, task_id: str, name: str | None, priority: int) -> None:
        """Emit the task's :class:`TaskQueued`, once: by its submitter after the
        submit, or by its first attempt (or its end) if that comes first, so
        that a subscriber sees it queued before anything else about it."""
        with self._lock:
            if self._announced:
                return
            self._announced = True
        if self.bus.active:
            self.bus.emit(task_queued(task_id, name, priority))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        context = (_current_task or _load_current_task())()
        bus = self.bus
        attempt = context.attempt
        self.announce(context.task_id, context.name, context.priority)
        if bus.active:
            bus.emit(
                task_started(
                    context.task_id, context.name, context.priority, attempt, self.queued_at
                )
            )
        start = time.perf_counter()
        try:
            return self.func(*args, **kwargs)
        except BaseException as exc:
            retry = self.retry
            if retry is not None and not context.cancelled and retry.should_retry(exc, attempt):
                delay = retry.delay_for(attempt)
                self.queued_at = time.time() + delay
                if bus.active:
                    bus.emit(
                        task_retrying(
                            context.task_id,
                            context.name,
                            attempt,
                            time.perf_counter() - start,
                            delay,
                            exc,
                        )
                    )
            raise


_current_task: Callable[[], Any] | None = None


def _load_current_task() -> Callable[[], Any]:
    # Imported on first use, so that importing the event types alone stays cheap.
    global _current_task
    from ..core import core

    current_task: Callable[[], Any] = core.current_task
    _current_task = current_task
    return current_task


def observe_attempts(
    bus: EventBus,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    retry: Any,
) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """``(func, args, kwargs)`` rewritten to run through an :class:`AttemptObserver`."""
    return AttemptObserver(bus, func, retry), args, kwargs
