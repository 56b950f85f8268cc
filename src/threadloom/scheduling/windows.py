"""Time windows and blackout periods: when a schedule may fire."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from datetime import datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING

from .zones import to_utc, wall_to_utc

if TYPE_CHECKING:
    pass

# --------------------------------------------------------------------------- windows


_DAY_NAMES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_TIME_RE = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_WINDOW_RE = re.compile(
    rf"^\s*(?P<days>[A-Za-z,\-\s]+?)?\s*(?:(?P<start>{_TIME_RE})\s*-\s*(?P<end>{_TIME_RE}))?\s*$"
)


@dataclasses.dataclass(frozen=True)
class TimeWindow:
    """A stretch of wall-clock time recurring on some days, in the schedule's zone.

    Used both as an allowed window (``windows=``) and as a recurring blackout
    (``blackouts=``).  The stretch starts at *start* on each of *days* and ends at
    *end* (exclusive); when *end* is not after *start* it ends on the next day
    (``22:00-06:00``), and ``start == end`` means the whole day.

    Args:
        start: Wall time the window opens (naive ``datetime.time``).
        end: Wall time it closes.
        days: Weekdays it opens on, 0 = Monday .. 6 = Sunday.  Default: every day.

    Raises:
        TypeError: If a field has the wrong type.
        ValueError: If *days* is empty or holds a number outside 0..6.
    """

    start: time
    end: time
    days: frozenset[int] = frozenset(range(7))

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, time) or value.tzinfo is not None:
                raise TypeError(f"TimeWindow.{name} must be a naive datetime.time, not {value!r}")
        days = frozenset(self.days)
        if not days:
            raise ValueError("TimeWindow.days must name at least one weekday")
        for day in days:
            if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
                raise ValueError(f"TimeWindow.days holds {day!r}; weekdays are 0 (Mon) .. 6 (Sun)")
        object.__setattr__(self, "days", days)

    @classmethod
    def parse(cls, text: str) -> TimeWindow:
        """Parse ``"[DAYS] [HH:MM[:SS]-HH:MM[:SS]]"``.

        DAYS is a comma list of names or ranges (``MON-FRI``, ``SAT,SUN``,
        ``FRI-MON`` wraps).  ``24:00`` is accepted as an end.  Examples:
        ``"09:00-17:00"``, ``"MON-FRI 09:00-17:30"``, ``"SUN 02:00-04:00"``,
        ``"SAT,SUN"`` (whole days), ``"22:00-06:00"`` (overnight).

        Args:
            text: The window.

        Returns:
            The window.

        Raises:
            ValueError: If *text* does not parse; the message says which part is wrong.
        """
        if not isinstance(text, str):
            raise TypeError(f"a time window string was expected, not {text!r}")
        match = _WINDOW_RE.match(text)
        if match is None or not (match["days"] or match["start"]):
            raise ValueError(
                f"invalid time window {text!r}: expected '[DAYS] HH:MM-HH:MM', "
                "e.g. 'MON-FRI 09:00-17:00', or days alone, e.g. 'SAT,SUN'"
            )
        days = _parse_days(match["days"], text) if match["days"] else frozenset(range(7))
        if match["start"] is None:
            return cls(time(0), time(0), days)
        start = _parse_clock_time(match["start"], text, allow_24=False)
        end = _parse_clock_time(match["end"], text, allow_24=True)
        return cls(start, end, days)

    def occurrence(self, after: datetime, tz: tzinfo) -> tuple[datetime, datetime] | None:
        """The earliest occurrence (UTC start, UTC end) in time zone *tz* that ends after *after*.

        None if none does in the coming week (a window wholly inside a DST gap).
        """
        local_day = after.astimezone(tz).date()
        # Start a day early: an overnight window opened yesterday may still be open.
        for offset in range(-1, 9):
            day = local_day + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            end_day = day if self.end > self.start else day + timedelta(days=1)
            end = wall_to_utc(datetime.combine(end_day, self.end), tz)
            if end <= after:
                continue
            start = wall_to_utc(datetime.combine(day, self.start), tz)
            # A window wholly inside a DST gap resolves to nothing (start == end).
            if end > start:
                return start, end
        return None

    def __str__(self) -> str:
        days = ",".join(_DAY_NAMES[d] for d in sorted(self.days))
        return f"{days} {self.start.isoformat()}-{self.end.isoformat()}"


def _parse_days(text: str, whole: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.replace(" ", "").upper().split(","):
        names = item.split("-")
        if len(names) > 2 or any(name not in _DAY_NAMES for name in names):
            raise ValueError(
                f"invalid time window {whole!r}: bad days {item!r} (use MON..SUN, "
                "comma lists and ranges such as MON-FRI)"
            )
        first = _DAY_NAMES.index(names[0])
        last = _DAY_NAMES.index(names[-1])
        days.update((first + step) % 7 for step in range((last - first) % 7 + 1))
    return frozenset(days)


def _parse_clock_time(text: str, whole: str, *, allow_24: bool) -> time:
    parts = [int(part) for part in text.split(":")]
    hour, minute, second = parts[0], parts[1], parts[2] if len(parts) > 2 else 0
    if allow_24 and (hour, minute, second) == (24, 0, 0):
        return time(0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"invalid time window {whole!r}: bad time {text!r}")
    return time(hour, minute, second)


@dataclasses.dataclass(frozen=True)
class Period:
    """One absolute stretch of time, ``[start, end)``; naive ends are read in the schedule's zone.

    Args:
        start: When it begins.
        end: When it ends (exclusive); must be after *start*.

    Raises:
        TypeError: If an end is not a datetime, or one is naive and the other aware.
        ValueError: If *end* is not after *start*.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime):
                raise TypeError(f"Period.{name} must be a datetime, not {value!r}")
        if (self.start.tzinfo is None) != (self.end.tzinfo is None):
            raise TypeError("Period.start and Period.end must both be naive or both be aware")
        if not self.end > self.start:
            raise ValueError(f"Period end {self.end} is not after its start {self.start}")


class BoundPeriod:
    __slots__ = ("end", "start")

    def __init__(self, period: Period, tz: tzinfo) -> None:
        self.start = to_utc(period.start, tz, "Period.start")
        self.end = to_utc(period.end, tz, "Period.end")

    def occurrence(self, after: datetime, tz: tzinfo) -> tuple[datetime, datetime] | None:
        """The period (UTC start, UTC end) if it ends after *after*, else None (as TimeWindow's)."""
        return (self.start, self.end) if self.end > after and self.end > self.start else None


WindowSpec = TimeWindow | Period | str | tuple[time, time] | tuple[datetime, datetime]


def _coerce_span(item: object, what: str) -> TimeWindow | Period:
    if isinstance(item, (TimeWindow, Period)):
        return item
    if isinstance(item, str):
        return TimeWindow.parse(item)
    if isinstance(item, tuple) and len(item) == 2:
        first, second = item
        if isinstance(first, datetime) and isinstance(second, datetime):
            return Period(first, second)
        if isinstance(first, time) and isinstance(second, time):
            return TimeWindow(first, second)
    raise TypeError(
        f"{what} entries must be TimeWindow, Period, a string such as 'MON-FRI 09:00-17:00', "
        f"or a (start, end) pair of times or datetimes; got {item!r}"
    )


def _is_bare_pair(value: object) -> bool:
    if not (isinstance(value, tuple) and len(value) == 2):
        return False
    first, second = value
    both_datetimes = isinstance(first, datetime) and isinstance(second, datetime)
    return both_datetimes or (isinstance(first, time) and isinstance(second, time))


def coerce_spans(value: object, what: str) -> tuple[TimeWindow | Period, ...]:
    if value is None:
        return ()
    if isinstance(value, (TimeWindow, Period, str)) or _is_bare_pair(value):
        # One window given bare; iterating a string would yield its characters.
        return (_coerce_span(value, what),)
    if not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a window, a list of windows, or None; got {value!r}")
    return tuple(_coerce_span(item, what) for item in value)
