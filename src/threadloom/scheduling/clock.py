"""Injectable time: the real clock, and a manual one that tests move by hand.

A component that waits for a moment in time (the scheduler, a retry timer) asks a
:class:`Clock` for the time and sleeps through it, so that a test can hand it a
:class:`ManualClock` and move time forward without sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]

UTC = timezone.utc


@runtime_checkable
class Clock(Protocol):
    """What a component that waits for wall-clock moments needs from time."""

    def now(self) -> datetime:
        """Return the current moment as an aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Return seconds from an arbitrary origin; never goes backwards."""
        ...

    def sleep_until(self, deadline: datetime | None, wake: threading.Event) -> None:
        """Block until *deadline* has passed or *wake* is set, whichever is first.

        The call may also return early (spuriously): callers re-read the time and
        their state after it returns.  ``deadline=None`` means "until woken".
        """
        ...


class SystemClock:
    """The real clock: ``datetime.now(UTC)`` and ``time.monotonic()``.

    Args:
        max_sleep: The longest single sleep, in seconds.  ``Event.wait`` measures
            its timeout on the monotonic clock, which stops during a system
            suspend and ignores wall-clock steps (NTP, a manual change), while
            deadlines are wall-clock moments; capping each sleep bounds how late a
            deadline can be noticed after such a jump.  One wake-up a minute costs
            nothing measurable, so this is not polling.

    Raises:
        ValueError: If *max_sleep* is not a positive finite number.
    """

    def __init__(self, max_sleep: float = 60.0) -> None:
        if isinstance(max_sleep, bool) or not isinstance(max_sleep, (int, float)):
            raise TypeError(f"max_sleep must be a number of seconds, not {max_sleep!r}")
        if not (math.isfinite(max_sleep) and max_sleep > 0):
            raise ValueError(f"max_sleep must be a positive finite number, not {max_sleep!r}")
        self._max_sleep = float(max_sleep)

    def now(self) -> datetime:
        """Return the current moment as an aware UTC datetime."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def sleep_until(self, deadline: datetime | None, wake: threading.Event) -> None:
        """Block until *deadline* passes, *wake* is set, or ``max_sleep`` elapses."""
        timeout = self._max_sleep
        if deadline is not None:
            timeout = min(timeout, max(0.0, (deadline - self.now()).total_seconds()))
        wake.wait(timeout)

    def __repr__(self) -> str:
        return f"SystemClock(max_sleep={self._max_sleep!r})"


class ManualClock:
    """A clock that only moves when told to; sleepers wake when it passes their deadline.

    Nothing here sleeps for real: :meth:`sleep_until` blocks on the caller's wake
    event, which :meth:`advance` and :meth:`set` set once the deadline is reached.

    Args:
        start: The initial moment (aware; converted to UTC).  Default: 2024-01-01
            00:00 UTC.

    Raises:
        TypeError: If *start* is not a datetime.
        ValueError: If *start* is naive.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._cond = threading.Condition()
        self._now = _aware_utc(start) if start is not None else datetime(2024, 1, 1, tzinfo=UTC)
        self._monotonic = 0.0
        # token -> (wake event, deadline) for every thread inside sleep_until
        self._sleepers: dict[object, tuple[threading.Event, datetime | None]] = {}

    def now(self) -> datetime:
        """Return the clock's current moment (aware UTC)."""
        with self._cond:
            return self._now

    def monotonic(self) -> float:
        """Return the seconds this clock has moved forward since it was made."""
        with self._cond:
            return self._monotonic

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and wake every sleeper whose deadline has passed.

        Args:
            seconds: How far to move, ``>= 0``.

        Returns:
            The new current moment.

        Raises:
            ValueError: If *seconds* is negative or not finite.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, not {seconds!r}")
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, not {seconds!r}")
        with self._cond:
            self._now += timedelta(seconds=seconds)
            self._monotonic += float(seconds)
            self._wake_due_sleepers()
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to *moment* (forwards or, like a stepped wall clock, backwards).

        ``monotonic()`` moves forward by the jump when it is forward and stays put
        when it is backward.  Sleepers whose deadline has passed are woken.

        Raises:
            TypeError: If *moment* is not a datetime.
            ValueError: If *moment* is naive.
        """
        moment = _aware_utc(moment)
        with self._cond:
            self._monotonic += max(0.0, (moment - self._now).total_seconds())
            self._now = moment
            self._wake_due_sleepers()

    def sleep_until(self, deadline: datetime | None, wake: threading.Event) -> None:
        """Block until the clock reaches *deadline* or *wake* is set."""
        token = object()
        with self._cond:
            if deadline is not None and self._now >= deadline:
                return
            # Registered under the lock that advance() takes: an advance that lands
            # after this point sees the sleeper and sets its event, so it is never missed.
            self._sleepers[token] = (wake, deadline)
            self._cond.notify_all()
        try:
            wake.wait()
        finally:
            with self._cond:
                del self._sleepers[token]
                self._cond.notify_all()

    def wait_for_sleepers(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until *count* threads sleep here with nothing due and no wake pending.

        This is how a test knows that a scheduler has finished reacting to the last
        change (a clock move, an added schedule) before it asserts what happened.

        Args:
            count: How many sleeping threads to wait for.
            timeout: Real seconds to wait at most.

        Returns:
            True when the condition held, False on timeout.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._idle_sleepers() >= count, timeout)

    def _idle_sleepers(self) -> int:
        return sum(
            1
            for event, deadline in self._sleepers.values()
            if not event.is_set() and (deadline is None or deadline > self._now)
        )

    def _wake_due_sleepers(self) -> None:
        for event, deadline in self._sleepers.values():
            if deadline is not None and deadline <= self._now:
                event.set()
        self._cond.notify_all()

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()})"


def _aware_utc(moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"expected a datetime, not {type(moment).__name__} ({moment!r})")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected an aware datetime (with a tzinfo), got naive {moment!r}")
    return moment.astimezone(UTC)
