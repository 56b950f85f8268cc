"""Retry policies, and the one timer thread that re-queues retries and fires deadlines."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RetryPolicy"]

LOGGER = logging.getLogger("threadloom")


def _check_seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed task is retried.

    Attempt *n* (1-based) that fails is retried after
    ``min(max_delay, delay * backoff ** (n - 1)) + uniform(0, jitter)`` seconds,
    as long as fewer than ``max_retries`` retries were made and the exception
    is an instance of one of ``retry_on``.  The wait happens in the pool's
    timer thread, never in a worker.

    Args:
        max_retries: retries after the first attempt (0: none).
        delay: seconds before the first retry.
        backoff: factor applied to the delay after each retry (1.0: fixed).
        max_delay: upper bound of the delay before jitter.
        jitter: up to this many random seconds added to each delay.
        retry_on: exception classes that are retried; others fail at once.

    Raises:
        TypeError, ValueError: an argument is out of range (the message names it).
    """

    max_retries: int = 0
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError(f"max_retries must be an int, not {type(self.max_retries).__name__}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {self.max_retries}")
        _check_seconds("delay", self.delay)
        _check_seconds("max_delay", self.max_delay)
        _check_seconds("jitter", self.jitter)
        if isinstance(self.backoff, bool) or not isinstance(self.backoff, (int, float)):
            raise TypeError(f"backoff must be a number, not {type(self.backoff).__name__}")
        if not self.backoff >= 1.0 or math.isinf(self.backoff):
            raise ValueError(f"backoff must be a finite number >= 1, not {self.backoff!r}")
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
            object.__setattr__(self, "retry_on", retry_on)
        if not isinstance(retry_on, tuple) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in retry_on
        ):
            raise TypeError(f"retry_on must be a tuple of exception classes, not {retry_on!r}")

    def should_retry(self, exception: BaseException, failed_attempt: int) -> bool:
        """Whether the 1-based attempt *failed_attempt*, which raised *exception*, is retried."""
        return failed_attempt <= self.max_retries and isinstance(exception, self.retry_on)

    def delay_for(self, failed_attempt: int) -> float:
        """Seconds to wait before retrying after attempt *failed_attempt* failed."""
        exponent = max(0, failed_attempt - 1)
        try:
            base = self.delay * self.backoff**exponent
        except OverflowError:
            base = self.max_delay
        delay = min(self.max_delay, base)
        if self.jitter:
            delay += random.uniform(0.0, self.jitter)
        return delay


NO_RETRY = RetryPolicy()


class TimerHandle:
    """A scheduled call; ``cancel()`` it to stop it from running."""

    __slots__ = ("_callback", "_cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], object]) -> None:
        self.due = due
        self._callback: Callable[[], object] | None = callback
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        self._callback = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled


class Timers:
    """One daemon thread that runs short callbacks at monotonic due times.

    It sleeps until the earliest due time (a heap; woken early when an earlier
    one arrives), never polls.  Callbacks must be quick and must not block:
    they re-queue a task or fail a future.  One that raises is logged.
    """

    def __init__(self, name: str = "threadloom-timers") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None

    def call_at(self, due: float, callback: Callable[[], object]) -> TimerHandle:
        """Run *callback* on the timer thread at ``time.monotonic() >= due``."""
        handle = TimerHandle(due, callback)
        with self._lock:
            heapq.heappush(self._heap, (due, next(self._sequence), handle))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is handle:
                self._wake.notify()
        return handle

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        return self.call_at(time.monotonic() + delay, callback)

    def pending(self) -> int:
        with self._lock:
            return sum(1 for _, _, h in self._heap if not h.cancelled)

    def _run(self) -> None:
        while True:
            with self._lock:
                while True:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        # Nothing scheduled: wait for call_at to notify.
                        self._wake.wait()
                        continue
                    now = time.monotonic()
                    due = self._heap[0][0]
                    if due <= now:
                        handle = heapq.heappop(self._heap)[2]
                        break
                    self._wake.wait(due - now)
            callback = handle._callback
            handle._callback = None
            if callback is None or handle.cancelled:
                continue
            try:
                callback()
            except BaseException:
                LOGGER.exception("threadloom timer callback %r failed", callback)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread = None


TIMERS = Timers()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=TIMERS._after_fork_in_child)
