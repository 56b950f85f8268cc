"""Retry policies (the timer that re-queues a retry is the core's)."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field

from ._validate import check_count, check_seconds

__all__ = ["RetryPolicy"]

LOGGER = logging.getLogger("threadloom")


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
        check_count("max_retries", self.max_retries)
        check_seconds("delay", self.delay)
        check_seconds("max_delay", self.max_delay)
        check_seconds("jitter", self.jitter)
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
