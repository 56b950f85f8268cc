"""Schedules (cron, interval, one-off) and the scheduler thread that fires them.

A :class:`Schedule` answers "when does this fire next?"; a :class:`Scheduler`
keeps a heap of next due times for many schedules, sleeps until the earliest and
hands each due run to its owner's ``submit`` callback (the task manager, which
queues it on the pool at the task's priority).  The scheduler never runs a job.

Time zones and daylight-saving time
-----------------------------------
Every schedule has a time zone (a :mod:`zoneinfo` zone; by default the local
one).  Fire times follow Debian cron, whose rules cronsim implements:

* A job at a specific wall time (no ``*`` at the start of the minute or hour
  field, e.g. ``30 2 * * *``) that falls in a spring-forward gap runs once, at the
  first instant after the gap (02:30 in New York on 2024-03-10 runs at 03:00 EDT).
  Several such times in the same gap collapse into that one run.
* Such a job at a time repeated by the autumn shift runs once, at the first
  occurrence (01:30 in New York on 2024-11-03 runs at 01:30 EDT only).
* Jobs with a wildcard minute or hour (``*/5 * * * *``, ``0 * * * *``,
  ``@hourly``) run by the wall clock as it is: nothing in the gap (those wall
  times do not exist), and twice in the repeated hour (each wall time happens twice).
* Six-field expressions (with seconds) are not Debian cron and follow the wall
  clock as it is, like wildcard jobs.

Intervals follow the same rules: ``seconds``/``minutes``/``hours`` are elapsed
time (``every(30).minutes`` is 30 real minutes apart across any shift), while
``days``/``weeks`` keep the wall time (``every().day.at("02:30")`` is 02:30 local,
moved to the end of a gap, first occurrence of a repeat).  Window and blackout
boundaries (wall times) resolve the same way.

Internally every instant is an aware UTC datetime: Python compares and subtracts
two datetimes that share a tzinfo by their wall time, ignoring ``fold``, which is
wrong inside a repeated hour.  Fire times are converted to the schedule's zone
only on the way out.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import enum
import heapq
import itertools
import logging
import math
import os
import random
import re
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, time, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import schedule as _schedule_pkg

# Cron is computed by cronsim rather than croniter.  cronsim follows Debian cron
# where it matters to us: daylight-saving gaps and repeats (see the module
# docstring; croniter has a long record of DST bugs and instead offers
# non-standard extras we do not want, such as Jenkins "H" and a year field); the
# day-of-month/day-of-week OR rule with Debian's star exception; strict parsing
# whose errors name the bad field; and zoneinfo without pytz.  It is one small
# pure-Python module.  croniter was also declared abandoned by its maintainer in
# 2025 before being adopted by pallets-eco, a risk for a core dependency.
from cronsim import CronSim, CronSimError

from . import events as tl_events
from ._clock import Clock, ManualClock, SystemClock

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "Clock",
    "CronSchedule",
    "IntervalJob",
    "IntervalSchedule",
    "ManualClock",
    "MissReason",
    "OneOffSchedule",
    "Period",
    "Schedule",
    "ScheduleInfo",
    "SchedulePolicies",
    "Scheduler",
    "SystemClock",
    "TimeWindow",
    "every",
    "local_timezone",
    "parse_schedule",
]

logger = logging.getLogger("threadloom.scheduling")

UTC = timezone.utc
_ONE_MICROSECOND = timedelta(microseconds=1)
# How far past the last fire time a search goes before deciding that a schedule
# has no more fire times; cronsim itself gives up after 50 years.
_SEARCH_HORIZON = timedelta(days=366 * 50)
# How many fire-time candidates in a row windows and blackouts may reject before
# the search gives up.  Each rejection jumps to the next window opening or
# blackout end, so a schedule that fires at all needs few: cron's day sets and
# intervals meet a weekly window within a few weekday cycles (Feb 29 with a
# Monday window: about 7 rejections per hit).  It bounds the "never fires" proof.
_MAX_REJECTIONS = 1000

Coalesce = Literal["latest", "earliest", "all"]
OnMaxInstances = Literal["skip", "queue"]
BlackoutPolicy = Literal["skip", "defer"]


# --------------------------------------------------------------------------- time zones


def local_timezone() -> tzinfo:
    """Return the local time zone, as a zoneinfo zone when one can be found.

    Looks at ``$TZ``, then at what ``/etc/localtime`` names or contains.  Where
    neither works (Windows without the ``tzdata`` package), falls back to the
    current fixed UTC offset, which knows no daylight-saving rules.

    Returns:
        The local ``tzinfo``.
    """
    key = os.environ.get("TZ", "").lstrip(":")
    if key:
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:
        target = ""
    marker = "/zoneinfo/"
    if marker in target:
        try:
            return ZoneInfo(target.split(marker, 1)[1])
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        with open("/etc/localtime", "rb") as tzfile:
            return ZoneInfo.from_file(tzfile, key="localtime")
    except (OSError, ValueError):
        pass
    fallback = datetime.now().astimezone().tzinfo
    assert fallback is not None
    return fallback


def _resolve_tz(tz: tzinfo | str | None) -> tzinfo:
    if tz is None:
        return local_timezone()
    if isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, str):
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {tz!r} (expected an IANA name)") from None
    raise TypeError(f"tz must be a tzinfo, an IANA zone name or None, not {tz!r}")


def _wall_to_utc(wall: datetime, tz: tzinfo) -> datetime:
    """Return the instant of naive wall time *wall* in *tz*, resolved as cron does.

    A wall time repeated by a backward shift is its first occurrence; one skipped
    by a forward shift becomes the first instant after the gap.
    """
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # In a gap.  Step a minute at a time, as cronsim does, to the first wall time
    # that exists; gaps are whole minutes long and at most a day (Samoa, 2011).
    candidate = wall.replace(second=0, microsecond=0)
    for _ in range(2 * 24 * 60):
        candidate += timedelta(minutes=1)
        instant = candidate.replace(tzinfo=tz).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == candidate:
            return instant
    raise ValueError(f"wall time {wall} does not exist in {tz} and no later one was found")


def _to_utc(moment: datetime, tz: tzinfo, what: str) -> datetime:
    """Aware -> UTC; naive -> read as a wall time in *tz*."""
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(moment).__name__} ({moment!r})")
    if moment.tzinfo is None or moment.utcoffset() is None:
        return _wall_to_utc(moment, tz)
    return moment.astimezone(UTC)


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

    def _occurrence(self, after: datetime, tz: tzinfo) -> tuple[datetime, datetime] | None:
        """The earliest occurrence (UTC start, UTC end) that ends after *after*."""
        local_day = after.astimezone(tz).date()
        # Start a day early: an overnight window opened yesterday may still be open.
        for offset in range(-1, 9):
            day = local_day + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            end_day = day if self.end > self.start else day + timedelta(days=1)
            end = _wall_to_utc(datetime.combine(end_day, self.end), tz)
            if end <= after:
                continue
            start = _wall_to_utc(datetime.combine(day, self.start), tz)
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


class _BoundPeriod:
    __slots__ = ("end", "start")

    def __init__(self, period: Period, tz: tzinfo) -> None:
        self.start = _to_utc(period.start, tz, "Period.start")
        self.end = _to_utc(period.end, tz, "Period.end")

    def _occurrence(self, after: datetime, tz: tzinfo) -> tuple[datetime, datetime] | None:
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


def _coerce_spans(value: object, what: str) -> tuple[TimeWindow | Period, ...]:
    if value is None:
        return ()
    if isinstance(value, (TimeWindow, Period, str)) or _is_bare_pair(value):
        # One window given bare; iterating a string would yield its characters.
        return (_coerce_span(value, what),)
    if not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a window, a list of windows, or None; got {value!r}")
    return tuple(_coerce_span(item, what) for item in value)


# --------------------------------------------------------------------------- policies


class SchedulePolicies(TypedDict, total=False):
    """The policy keywords every schedule accepts (see :class:`Schedule`)."""

    misfire_grace_time: float | None
    coalesce: Coalesce
    max_instances: int
    on_max_instances: OnMaxInstances
    jitter: float
    windows: WindowSpec | Iterable[WindowSpec] | None
    blackouts: WindowSpec | Iterable[WindowSpec] | None
    blackout_policy: BlackoutPolicy


_POLICY_NAMES = tuple(SchedulePolicies.__annotations__)
_S = TypeVar("_S", bound="Schedule")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}; got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- schedules


class Schedule(abc.ABC):
    """When a job fires, in a time zone, and what to do when a run cannot happen on time.

    Policies (keyword arguments of every concrete schedule):

    Args:
        misfire_grace_time: Seconds a run may start late.  A run that cannot start
            within it is reported missed (:attr:`MissReason.MISFIRE`) instead of
            running late.  ``None`` (default): a run is never too late.
        coalesce: When several fire times are due at once (the process was busy or
            asleep): ``"latest"`` (default) runs only the most recent,
            ``"earliest"`` only the oldest, ``"all"`` runs each.  The others are
            reported missed (:attr:`MissReason.COALESCED`).  Runs past the grace
            time are dropped first, so coalescing picks among runs still on time.
            It also bounds the queue of ``on_max_instances="queue"`` to one run
            unless it is ``"all"``.
        max_instances: How many runs of this job may be in progress at once
            (default 1).
        on_max_instances: When that many are in progress: ``"skip"`` (default)
            reports the run missed (:attr:`MissReason.MAX_INSTANCES`); ``"queue"``
            holds it until a run finishes.
        jitter: Delay each run by a random ``0..jitter`` seconds (default 0), to
            spread load; the run keeps its nominal fire time.  No jitter is applied
            where the delay would leave a window or enter a blackout.
        windows: Allowed times: the job fires only inside one of them.  A
            :class:`TimeWindow`, a :class:`Period`, a string such as
            ``"MON-FRI 09:00-17:00"``, a ``(start, end)`` pair, or a list of these.
            Default: always allowed.
        blackouts: Forbidden times, in the same forms (e.g. ``"SUN 02:00-04:00"``,
            a maintenance window).
        blackout_policy: A fire time inside a blackout is ``"skip"``-ped (default)
            or ``"defer"``-red to the blackout's end; the runs deferred to one end
            become one run, and a deferred run whose new time is outside the
            windows is skipped.

    Fire times skipped by windows or blackouts are not fire times at all: they are
    not reported missed.  Wall times in windows resolve through DST as cron does.

    Raises (from every constructor):
        TypeError: A policy has the wrong type, or an unknown policy is given.
        ValueError: A policy value is out of range.
    """

    tz: tzinfo
    misfire_grace_time: float | None
    coalesce: Coalesce
    max_instances: int
    on_max_instances: OnMaxInstances
    jitter: float
    windows: tuple[TimeWindow | Period, ...]
    blackouts: tuple[TimeWindow | Period, ...]
    blackout_policy: BlackoutPolicy

    def __init__(self, tz: tzinfo, policies: dict[str, Any]) -> None:
        self.tz = tz
        unknown = sorted(set(policies) - set(_POLICY_NAMES))
        if unknown:
            raise TypeError(
                f"unknown schedule policy {', '.join(map(repr, unknown))}; "
                f"the policies are {', '.join(_POLICY_NAMES)}"
            )
        self._init_policies(**policies)

    def _init_policies(
        self,
        *,
        misfire_grace_time: float | None = None,
        coalesce: Coalesce = "latest",
        max_instances: int = 1,
        on_max_instances: OnMaxInstances = "skip",
        jitter: float = 0.0,
        windows: object = None,
        blackouts: object = None,
        blackout_policy: BlackoutPolicy = "skip",
    ) -> None:
        self.misfire_grace_time = (
            None
            if misfire_grace_time is None
            else _check_seconds("misfire_grace_time", misfire_grace_time, allow_zero=False)
        )
        _check_choice("coalesce", coalesce, get_args(Coalesce))
        self.coalesce = coalesce
        if isinstance(max_instances, bool) or not isinstance(max_instances, int):
            raise TypeError(f"max_instances must be an int, not {max_instances!r}")
        if max_instances < 1:
            raise ValueError(f"max_instances must be >= 1; got {max_instances}")
        self.max_instances = max_instances
        _check_choice("on_max_instances", on_max_instances, get_args(OnMaxInstances))
        self.on_max_instances = on_max_instances
        self.jitter = _check_seconds("jitter", jitter, allow_zero=True)
        self.windows = _coerce_spans(windows, "windows")
        self.blackouts = _coerce_spans(blackouts, "blackouts")
        _check_choice("blackout_policy", blackout_policy, get_args(BlackoutPolicy))
        self.blackout_policy = blackout_policy
        self._window_spans = tuple(self._bind_span(span) for span in self.windows)
        self._blackout_spans = tuple(self._bind_span(span) for span in self.blackouts)
        self._check_can_fire()

    def _check_can_fire(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Raise ValueError if the schedule can never fire (subclasses that can tell)."""

    def _bind_span(self, span: TimeWindow | Period) -> TimeWindow | _BoundPeriod:
        return _BoundPeriod(span, self.tz) if isinstance(span, Period) else span

    # -- the public questions

    def next_fire_times(self, start: datetime, n: int) -> list[datetime]:
        """Return the next *n* fire times strictly after *start*.

        Args:
            start: The moment to count from; aware, or naive read in :attr:`tz`.
            n: How many fire times, ``>= 0``.

        Returns:
            Up to *n* aware datetimes in :attr:`tz`, ascending; fewer when the
            schedule ends (a one-off, an ``until``).

        Raises:
            TypeError: If *start* is not a datetime or *n* not an int.
            ValueError: If *n* is negative.
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {n!r}")
        if n < 0:
            raise ValueError(f"n must be >= 0; got {n}")
        return list(itertools.islice(self.iter_fire_times(start), n))

    def next_fire_time(self, after: datetime) -> datetime | None:
        """Return the first fire time strictly after *after*, or None if there is none.

        Args:
            after: Aware, or naive read in :attr:`tz`.

        Returns:
            An aware datetime in :attr:`tz`, or None.

        Raises:
            TypeError: If *after* is not a datetime.
        """
        return next(self.iter_fire_times(after), None)

    def iter_fire_times(self, after: datetime) -> Iterator[datetime]:
        """Iterate over the fire times strictly after *after* (aware, in :attr:`tz`).

        Raises:
            TypeError: If *after* is not a datetime.
        """
        start = _to_utc(after, self.tz, "start")
        return (moment.astimezone(self.tz) for moment in self._iter_utc(start))

    def allows(self, moment: datetime) -> bool:
        """Return whether *moment* is inside the windows and outside every blackout."""
        return self._allows_utc(_to_utc(moment, self.tz, "moment"))

    def is_misfire(self, fire_time: datetime, now: datetime) -> bool:
        """Return whether a run due at *fire_time* starting at *now* is past the grace time.

        The owner may call this when a run actually starts on a worker, to catch
        runs that waited too long in the pool's queue.
        """
        if self.misfire_grace_time is None:
            return False
        late = _to_utc(now, self.tz, "now") - _to_utc(fire_time, self.tz, "fire_time")
        return late.total_seconds() > self.misfire_grace_time

    def replace(self: _S, **policies: Unpack[SchedulePolicies]) -> _S:
        """Return a copy with some policies changed.

        Raises:
            TypeError, ValueError: As the constructor does.
        """
        merged: dict[str, Any] = {name: getattr(self, name) for name in _POLICY_NAMES}
        unknown = sorted(set(policies) - set(_POLICY_NAMES))
        if unknown:
            raise TypeError(f"unknown schedule policy {', '.join(map(repr, unknown))}")
        merged.update(policies)
        clone = copy.copy(self)
        clone._init_policies(**merged)  # noqa: SLF001 (same module)
        return clone

    # -- what subclasses provide

    @abc.abstractmethod
    def _iter_raw(self, after: datetime) -> Iterator[datetime]:
        """Ascending UTC fire times strictly after UTC *after*, before windows/blackouts."""

    def _bind(self, now: datetime) -> Schedule:
        """The schedule as the scheduler keeps it once added at *now* (UTC)."""
        return self

    def _fire_times_from(self, now: datetime) -> Iterator[datetime]:
        """The UTC fire times the scheduler should use when the schedule is added at *now*."""
        return self._iter_utc(now)

    # -- the search

    def _iter_utc(self, after: datetime) -> Iterator[datetime]:
        """Ascending UTC fire times strictly after *after*, windows and blackouts applied."""
        last = after
        horizon = after + _SEARCH_HORIZON
        rejections = 0
        raw = self._iter_raw(after)
        while True:
            moment = next(raw, None)
            if moment is None or moment > horizon or rejections > _MAX_REJECTIONS:
                return
            fire: datetime | None = moment
            resume_at: datetime | None = None  # restart the raw search at this instant
            if self._window_spans:
                opening = self._next_opening(moment)
                if opening is None:
                    return
                if opening != moment:
                    fire, resume_at = None, opening
            if fire is not None and self._blackout_spans:
                end = self._blackout_end(moment)
                if end is not None:
                    resume_at = end
                    defer = self.blackout_policy == "defer" and self._in_windows(end)
                    fire = end if defer else None
            # A deferred run lands on the blackout's end, which may also be a raw
            # fire time: "> last" keeps it to one run.
            if fire is not None and fire > last:
                last = fire
                horizon = fire + _SEARCH_HORIZON
                rejections = 0
                yield fire
            elif fire is None:
                rejections += 1
            if resume_at is not None:
                raw = self._iter_raw(resume_at - _ONE_MICROSECOND)

    def _in_windows(self, moment: datetime) -> bool:
        if not self._window_spans:
            return True
        for span in self._window_spans:
            occurrence = span._occurrence(moment, self.tz)  # noqa: SLF001 (same module)
            if occurrence is not None and occurrence[0] <= moment:
                return True
        return False

    def _next_opening(self, moment: datetime) -> datetime | None:
        """*moment* if inside a window, else the next window start, else None."""
        best: datetime | None = None
        for span in self._window_spans:
            occurrence = span._occurrence(moment, self.tz)  # noqa: SLF001 (same module)
            if occurrence is not None:
                opening = max(occurrence[0], moment)
                if best is None or opening < best:
                    best = opening
        return best

    def _blackout_end(self, moment: datetime) -> datetime | None:
        """None if *moment* is outside every blackout, else the end of the blackout
        stretch that holds it (following overlapping and adjacent blackouts)."""
        end: datetime | None = None
        probe = moment
        limit = moment + _SEARCH_HORIZON
        while probe <= limit:
            ends = [
                occurrence[1]
                for span in self._blackout_spans
                if (occurrence := span._occurrence(probe, self.tz)) is not None  # noqa: SLF001 (same module)
                and occurrence[0] <= probe
            ]
            if not ends:
                return end
            end = probe = max(ends)
        return end

    def _allows_utc(self, moment: datetime) -> bool:
        return self._in_windows(moment) and (
            not self._blackout_spans or self._blackout_end(moment) is None
        )

    def _policy_repr(self) -> str:
        defaults = {
            "misfire_grace_time": None,
            "coalesce": "latest",
            "max_instances": 1,
            "on_max_instances": "skip",
            "jitter": 0.0,
            "windows": (),
            "blackouts": (),
            "blackout_policy": "skip",
        }
        parts = [f"tz={str(self.tz)!r}"]
        for name, default in defaults.items():
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)


_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_FIELD_HELP = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L or LW",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday), N#k for the k-th, NL for the last",
}


def _validate_cron(expr: str) -> str:
    """Return *expr* with any macro expanded; raise ValueError naming the bad field."""
    text = expr.strip()
    if not text:
        raise ValueError("cron expression is empty")
    if text.startswith("@"):
        macro = _CRON_MACROS.get(text.lower())
        if macro is None:
            if text.lower() == "@reboot":
                raise ValueError("cron macro '@reboot' is not supported: there is no boot event")
            raise ValueError(
                f"unknown cron macro {expr!r}; known macros: {', '.join(_CRON_MACROS)}"
            )
        text = macro
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"cron expression {expr!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 (a leading second field, "
            "then those five)"
        )
    names = _CRON_FIELDS[6 - len(fields) :]
    try:
        CronSim(text, datetime(2000, 1, 1))
    except (CronSimError, ValueError, AssertionError) as exc:
        message = str(exc)
        field = next((name for name in _CRON_FIELDS if message == f"Bad {name}"), None)
        if field is None:
            raise ValueError(f"invalid cron expression {expr!r}: {message}") from None
        value = fields[names.index(field)]
        if field == "day-of-month":
            # cronsim also says "Bad day-of-month" when the days are valid but
            # occur in none of the months: tell that case apart.
            any_month = list(fields)
            any_month[names.index("month")] = "*"
            try:
                CronSim(" ".join(any_month), datetime(2000, 1, 1))
            except (CronSimError, ValueError, AssertionError):
                pass
            else:
                month = fields[names.index("month")]
                raise ValueError(
                    f"cron expression {expr!r} can never fire: day-of-month {value!r} "
                    f"does not occur in month {month!r}"
                ) from None
        raise ValueError(
            f"invalid cron expression {expr!r}: bad {field} field {value!r} "
            f"(allowed: {_CRON_FIELD_HELP[field]}, with lists, ranges and /steps)"
        ) from None
    return text


class CronSchedule(Schedule):
    """A cron expression, evaluated by cronsim in a time zone.

    Five fields (minute hour day-of-month month day-of-week) or six (a leading
    seconds field).  Names (``MON``, ``JAN``), lists, ranges, steps, ``L`` and
    ``LW`` (day of month), ``5L`` and ``MON#2`` (day of week) and the macros
    ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``,
    ``@hourly`` are accepted.  When both day fields are restricted, a day matching
    either fires (Debian cron).  DST: see the module docstring.

    Args:
        expr: The expression.
        tz: Time zone (zoneinfo zone or IANA name); default local.
        **policies: See :class:`Schedule`.

    Raises:
        TypeError: If *expr* is not a string.
        ValueError: If *expr* is invalid (the message names the field) or can
            never fire, or a policy is invalid.
    """

    def __init__(
        self, expr: str, tz: tzinfo | str | None = None, **policies: Unpack[SchedulePolicies]
    ) -> None:
        if not isinstance(expr, str):
            raise TypeError(f"a cron expression must be a string, not {expr!r}")
        self._cron = _validate_cron(expr)
        self.expr = expr
        super().__init__(_resolve_tz(tz), dict(policies))

    def _check_can_fire(self) -> None:
        # Cron and weekly windows repeat, so a probe from any moment tells;
        # absolute periods do not, and are checked when the scheduler adds it.
        if any(isinstance(span, Period) for span in self.windows + self.blackouts):
            return
        if next(self._iter_utc(datetime(2000, 1, 1, tzinfo=UTC)), None) is None:
            raise ValueError(
                f"cron expression {self.expr!r} can never fire inside these windows "
                "and outside these blackouts"
            )

    def _iter_raw(self, after: datetime) -> Iterator[datetime]:
        iterator = CronSim(self._cron, after.astimezone(self.tz))
        last = after
        while True:
            try:
                moment = next(iterator).astimezone(UTC)
            except StopIteration:
                return
            # For specific-time expressions cronsim walks naive wall time, so the
            # first result can lie before *after* when *after* is in the second
            # pass of a repeated hour: compare instants and keep going.
            if moment > last:
                last = moment
                yield moment

    def __repr__(self) -> str:
        return f"CronSchedule({self.expr!r}, {self._policy_repr()})"


_UNITS = ("seconds", "minutes", "hours", "days", "weeks")
_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class IntervalJob(_schedule_pkg.Job):
    """The ``schedule`` package's fluent job, used here only to describe an interval.

    Made by :func:`every`; build it as with ``schedule`` (``every(10).minutes``,
    ``every().monday.at("09:30")``, ``every().day.at("10:00", "Europe/Paris")``)
    and pass it as a task's ``schedule``.  It belongs to no ``schedule.Scheduler``
    (the package's global scheduler is never touched) and ``do()`` is refused.
    """

    def __init__(self, interval: int) -> None:
        super().__init__(interval, scheduler=None)
        self.zone: tzinfo | None = None

    def at(self, time_str: str, tz: tzinfo | str | None = None) -> IntervalJob:
        """Fire at this time (``HH:MM[:SS]`` daily, ``MM:SS``/``:MM`` hourly, ``:SS`` minutely).

        Args:
            time_str: As in ``schedule.Job.at``.
            tz: Time zone of the time (zoneinfo zone or IANA name); it becomes the
                schedule's zone.  pytz is not needed.

        Returns:
            This job.

        Raises:
            schedule.ScheduleValueError: If *time_str* does not suit the unit.
            ValueError: If *tz* is not a known zone.
        """
        super().at(time_str)
        if tz is not None:
            self.zone = _resolve_tz(tz)
        return self

    def do(self, job_func: Callable[..., Any], *args: Any, **kwargs: Any) -> IntervalJob:
        """Refused: threadloom runs the task this schedule is given to."""
        raise TypeError(
            "every(...) describes when a task runs; pass it as the task's schedule "
            "(register_task(..., schedule=every(10).minutes)) instead of calling do()"
        )


def every(interval: int = 1) -> IntervalJob:
    """Start an interval description in the ``schedule`` package's style.

    Args:
        interval: How many units between runs, ``>= 1``.

    Returns:
        An :class:`IntervalJob` to finish with a unit: ``every(10).minutes``.

    Raises:
        TypeError: If *interval* is not an int.
        ValueError: If *interval* is less than 1.
    """
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise TypeError(f"every() takes an int number of units, not {interval!r}")
    if interval < 1:
        raise ValueError(f"every() needs an interval >= 1; got {interval}")
    return IntervalJob(interval)


class IntervalSchedule(Schedule):
    """An interval from the ``schedule`` package's fluent API.

    The job object is the model (unit, interval, ``at`` time, weekday, ``until``);
    due times are computed here, in the schedule's zone, with an injectable clock.
    (``schedule.Job`` computes its next run from the system clock in naive local
    time and needs pytz for zones, so it cannot answer "next N after t" itself.)

    The first run follows ``schedule``: the next ``at`` time (or weekday) after the
    anchor, one interval later when the interval is not 1, and never at or before
    the anchor; then every interval.  ``seconds``/``minutes``/``hours`` are
    elapsed time; ``days``/``weeks`` keep the wall time across DST.

    Args:
        job: A finished job from :func:`every` (or from ``schedule.every``).
        tz: Time zone; default the one given to ``at()``, else local.
        anchor: The moment the interval counts from.  Default None: the scheduler
            anchors it when the schedule is added, and :meth:`next_fire_times`
            counts from its *start*.
        **policies: See :class:`Schedule`.

    Raises:
        TypeError: If *job* is not a ``schedule`` job.
        ValueError: If the job has no unit, uses ``to()`` (random intervals: use
            ``jitter``), a pytz zone, or a zone that conflicts with *tz*.
    """

    def __init__(
        self,
        job: _schedule_pkg.Job,
        tz: tzinfo | str | None = None,
        *,
        anchor: datetime | None = None,
        **policies: Unpack[SchedulePolicies],
    ) -> None:
        if not isinstance(job, _schedule_pkg.Job):
            raise TypeError(
                f"IntervalSchedule needs a job from every(), e.g. every(10).minutes; got {job!r}"
            )
        if job.unit not in _UNITS:
            raise ValueError(
                f"the interval {job!r} has no unit: finish it, e.g. every(10).minutes or "
                "every().day.at('09:30')"
            )
        if isinstance(job.interval, bool) or not isinstance(job.interval, int):
            raise TypeError(f"the interval must be an int, not {job.interval!r}")
        if job.interval < 1:
            raise ValueError(f"the interval must be >= 1; got {job.interval}")
        if job.latest is not None:
            raise ValueError(
                "every(...).to(...) (a random interval) is not supported: it has no next "
                "fire times to show; use the jitter= policy to spread runs"
            )
        if job.at_time_zone is not None:
            raise ValueError("pass the zone as tz= (or to threadloom's every().at()), not pytz")
        if job.start_day is not None and job.unit != "weeks":
            raise ValueError(f"a weekday interval must be weekly; got unit {job.unit!r}")
        job_zone: tzinfo | None = getattr(job, "zone", None)
        resolved = _resolve_tz(tz if tz is not None else job_zone)
        if job_zone is not None and tz is not None and str(job_zone) != str(resolved):
            raise ValueError(f"the interval's at() zone {job_zone} conflicts with tz={tz!r}")
        self.interval: int = job.interval
        self.unit: str = job.unit
        self.at_time: time | None = job.at_time
        self.start_day: str | None = job.start_day
        # schedule computes until() values in naive local time, so read them so.
        self.until: datetime | None = (
            None
            if job.cancel_after is None
            else _to_utc(job.cancel_after, local_timezone(), "until").astimezone(resolved)
        )
        self._until_utc = None if self.until is None else self.until.astimezone(UTC)
        self._wall_units = self.unit in ("days", "weeks")
        self._step = timedelta(**{self.unit: self.interval})
        super().__init__(resolved, dict(policies))
        self.anchor: datetime | None = (
            None if anchor is None else _to_utc(anchor, self.tz, "anchor").astimezone(self.tz)
        )

    def _bind(self, now: datetime) -> Schedule:
        if self.anchor is not None:
            return self
        bound = copy.copy(self)
        bound.anchor = now.astimezone(self.tz)
        return bound

    def _first_wall(self, anchor: datetime) -> datetime:
        """Naive wall time of the first run after *anchor* (UTC), as schedule computes it."""
        moment = anchor.astimezone(self.tz).replace(tzinfo=None)
        if self.start_day is not None:
            moment += timedelta(days=(_WEEKDAY_NAMES.index(self.start_day) - moment.weekday()) % 7)
        at = self.at_time
        if at is None:
            return moment
        if self.unit in ("days", "weeks"):
            return moment.replace(hour=at.hour, minute=at.minute, second=at.second, microsecond=0)
        if self.unit == "hours":
            return moment.replace(minute=at.minute, second=at.second, microsecond=0)
        return moment.replace(second=at.second, microsecond=0)

    def _iter_raw(self, after: datetime) -> Iterator[datetime]:
        anchor = after if self.anchor is None else self.anchor.astimezone(UTC)
        first = self._first_wall(anchor)
        first_utc = _wall_to_utc(first, self.tz) if self.at_time is not None else anchor

        def instant(index: int) -> datetime:
            if self._wall_units:
                return _wall_to_utc(first + index * self._step, self.tz)
            return first_utc + index * self._step

        # schedule's rule: one interval later unless it is 1, never at or before the anchor.
        index = 0 if self.interval == 1 else 1
        while instant(index) <= anchor:
            index += 1
        # Jump to just before *after* (wall and elapsed time differ by at most a
        # few hours, hence the one step of slack), then step forward.
        if self._wall_units:
            wall_after = after.astimezone(self.tz).replace(tzinfo=None)
            index = max(index, (wall_after - first) // self._step - 1)
        elif after > first_utc:
            index = max(index, (after - first_utc) // self._step)
        while True:
            moment = instant(index)
            if self._until_utc is not None and moment > self._until_utc:
                return
            if moment > after:
                yield moment
            index += 1

    def __repr__(self) -> str:
        text = f"every({self.interval}).{self.unit}"
        if self.start_day is not None:
            text = f"every().{self.start_day}"
        if self.at_time is not None:
            text += f".at({self.at_time.isoformat()!r})"
        anchor = "" if self.anchor is None else f", anchor={self.anchor.isoformat()!r}"
        return f"IntervalSchedule({text}{anchor}, {self._policy_repr()})"


class OneOffSchedule(Schedule):
    """A single fire time.

    Args:
        at: When; aware, or naive read in *tz*.
        tz: Time zone; default *at*'s zone if aware, else local.
        **policies: See :class:`Schedule`.

    Raises:
        TypeError: If *at* is not a datetime.
    """

    def __init__(
        self, at: datetime, tz: tzinfo | str | None = None, **policies: Unpack[SchedulePolicies]
    ) -> None:
        if not isinstance(at, datetime):
            raise TypeError(f"OneOffSchedule needs a datetime, not {at!r}")
        aware = at.tzinfo is not None and at.utcoffset() is not None
        resolved = at.tzinfo if aware and tz is None else _resolve_tz(tz)
        assert resolved is not None
        self._at_utc = _to_utc(at, resolved, "at")
        self.at = self._at_utc.astimezone(resolved)
        super().__init__(resolved, dict(policies))

    def _iter_raw(self, after: datetime) -> Iterator[datetime]:
        if self._at_utc > after:
            yield self._at_utc

    def _fire_times_from(self, now: datetime) -> Iterator[datetime]:
        if self._at_utc > now:
            return self._iter_utc(now)
        if self.misfire_grace_time is not None and self.is_misfire(self._at_utc, now):
            raise ValueError(
                f"one-off time {self.at.isoformat()} is {now - self._at_utc} in the past, "
                f"beyond its misfire_grace_time of {self.misfire_grace_time}s"
            )
        # Just passed (within the grace time): due now.
        return self._iter_utc(self._at_utc - _ONE_MICROSECOND)

    def __repr__(self) -> str:
        return f"OneOffSchedule({self.at.isoformat()!r}, {self._policy_repr()})"


def parse_schedule(
    spec: object, tz: tzinfo | str | None = None, **policies: Unpack[SchedulePolicies]
) -> Schedule:
    """Turn what a user wrote as a task's schedule into a :class:`Schedule`.

    Args:
        spec: A cron string (``"*/5 * * * *"``, ``"@daily"``), a job from
            :func:`every` (``every(10).minutes``), a ``datetime`` (one-off), or a
            :class:`Schedule` (returned as is).
        tz: Time zone for a new schedule; default local.
        **policies: Policies for a new schedule (see :class:`Schedule`).

    Returns:
        The schedule.

    Raises:
        TypeError: If *spec* is none of these, or *tz*/policies are given with a
            ready-made Schedule (set them when constructing it).
        ValueError: If *spec* is invalid; for cron, the message names the field.
    """
    if isinstance(spec, Schedule):
        if tz is not None or policies:
            raise TypeError(
                "tz and policies cannot be applied to an existing Schedule; "
                "pass them to its constructor or use Schedule.replace()"
            )
        return spec
    if isinstance(spec, str):
        return CronSchedule(spec, tz, **policies)
    if isinstance(spec, _schedule_pkg.Job):
        return IntervalSchedule(spec, tz, **policies)
    if isinstance(spec, datetime):
        return OneOffSchedule(spec, tz, **policies)
    raise TypeError(
        "a schedule must be a cron string, every(...) interval, datetime or Schedule; "
        f"got {type(spec).__name__} ({spec!r})"
    )


# --------------------------------------------------------------------------- scheduler


class MissReason(str, enum.Enum):
    """Why a fire time did not become a run (passed to ``on_missed``)."""

    MISFIRE = "misfire"
    """It could not start within the schedule's ``misfire_grace_time``."""
    COALESCED = "coalesced"
    """Folded into another run of the same backlog (``coalesce``)."""
    MAX_INSTANCES = "max_instances"
    """``max_instances`` runs were in progress and ``on_max_instances="skip"``."""
    SUBMIT_FAILED = "submit_failed"
    """The owner's ``submit`` callback raised (the error is logged)."""
    REMOVED = "removed"
    """It was queued for a free instance when its schedule was removed."""

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class ScheduleInfo:
    """A snapshot of one scheduled job (from :meth:`Scheduler.list`)."""

    job_id: str
    schedule: Schedule
    next_fire_time: datetime | None
    """Next nominal fire time in the schedule's zone; None when paused or finished."""
    paused: bool
    running: int
    """Runs submitted and not yet reported finished."""
    queued: int
    """Runs waiting for a free instance (``on_max_instances="queue"``)."""


class _Entry:
    __slots__ = ("due", "job_id", "next_fire", "paused", "queued", "schedule", "token", "upcoming")

    def __init__(self, job_id: str, schedule: Schedule, upcoming: Iterator[datetime]) -> None:
        self.job_id = job_id
        self.schedule = schedule
        self.upcoming = upcoming  # live UTC fire-time iterator; only touched under the lock
        self.next_fire: datetime | None = None
        self.due: datetime | None = None  # next_fire plus this run's jitter
        self.paused = False
        self.token = 0  # bumped to invalidate heap items
        self.queued: deque[datetime] = deque()


@dataclasses.dataclass(frozen=True)
class _Action:
    job_id: str
    fire_time: datetime  # aware, in the schedule's zone
    missed: MissReason | None  # None: submit


# Spelled as aliases: inside Scheduler, "list" names its list() method.
_ActionList = list[_Action]
_InfoList = list[ScheduleInfo]
SubmitCallback = Callable[[str, datetime], object]
MissedCallback = Callable[[str, datetime, MissReason], object]


class Scheduler:
    """One thread that fires many schedules by handing due runs to *submit*.

    The thread keeps a heap of due times and sleeps (through the clock) until the
    earliest, woken early when schedules change; it never polls.  For each due
    run it calls ``submit(job_id, fire_time)`` on its own thread, with the
    nominal fire time (aware, in the schedule's zone).  The owner queues the job
    on its pool and calls :meth:`run_finished` when that run ends, however it
    ends, so that ``max_instances`` can count runs in progress.  Fire times that
    do not become runs are reported to ``on_missed(job_id, fire_time, reason)``.
    Exceptions from either callback are logged and never stop the thread; a
    failed submit is reported missed (:attr:`MissReason.SUBMIT_FAILED`).

    A submit that does not start a run must raise, so that the run is not
    counted in progress (no :meth:`run_finished` will come for it).  The
    callbacks run without the scheduler's lock, after the decision to fire was
    taken under it: a run being dispatched when :meth:`remove` or :meth:`pause`
    is called may still be submitted just after that call returns, so *submit*
    should raise for a job its owner no longer runs.

    Args:
        submit: Called once per run, on the scheduler thread.
        clock: Time source; default :class:`SystemClock`.
        on_missed: Called for each fire time that was not run, on the scheduler
            thread.
        rng: Random source for jitter; default a fresh ``random.Random``.
        events: The bus to emit ``schedule_fired`` / ``schedule_missed`` on
            (a ``TaskManager`` passes its pool's); default a bus of its own.

    Raises:
        TypeError: If a callback is not callable.
    """

    def __init__(
        self,
        submit: SubmitCallback,
        clock: Clock | None = None,
        *,
        on_missed: MissedCallback | None = None,
        rng: random.Random | None = None,
        events: tl_events.EventBus | None = None,
    ) -> None:
        if not callable(submit):
            raise TypeError(f"submit must be callable, not {submit!r}")
        if on_missed is not None and not callable(on_missed):
            raise TypeError(f"on_missed must be callable or None, not {on_missed!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must provide now(), monotonic() and sleep_until(); {clock!r}")
        self._submit = submit
        self._on_missed = on_missed
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[datetime, int, _Entry, int]] = []
        self._sequence = itertools.count()
        # Runs in progress per job, kept apart from entries: a run outlives the
        # removal (and re-adding) of its schedule and still counts against max_instances.
        self._running: dict[str, int] = {}
        self._ready: set[str] = set()  # jobs with queued runs and a freed instance
        self._reports: _ActionList = []  # missed runs found outside the thread
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._events = events if events is not None else tl_events.EventBus("scheduler")

    def subscribe(
        self,
        callback: Callable[[tl_events.Event], object],
        kinds: Iterable[str | type[tl_events.Event]] | None = None,
    ) -> tl_events.Subscription:
        """Receive ``schedule_fired`` and ``schedule_missed`` events (see
        :mod:`threadloom.events`); on a shared bus, its other events too."""
        return self._events.subscribe(callback, kinds)

    # -- lifecycle

    def start(self) -> None:
        """Start the scheduler thread.

        Raises:
            RuntimeError: If it is already running.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError("the scheduler is already running")
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="threadloom-scheduler", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread; schedules are kept, so :meth:`start` can resume them.

        Args:
            timeout: Seconds to wait for the thread to end; None waits for it.

        Returns:
            True if the thread has ended (or never ran).
        """
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is None or thread is threading.current_thread():
            return thread is None
        thread.join(timeout)
        return not thread.is_alive()

    def __enter__(self) -> Scheduler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- schedules

    def add(self, job_id: str, schedule: object, *, replace: bool = False) -> None:
        """Start firing *schedule* for *job_id*.

        An interval without an anchor is anchored at the clock's current time.

        Args:
            job_id: The owner's id for the job; passed back to the callbacks.
            schedule: A :class:`Schedule` or anything :func:`parse_schedule` takes.
            replace: Replace an existing schedule for *job_id* (keeping its paused
                state and queued runs) instead of refusing.

        Raises:
            TypeError: If *job_id* is not a string or *schedule* is not a schedule.
            ValueError: If *job_id* is empty, already has a schedule and not *replace*, the
                schedule never fires from now on, or a one-off time has passed
                beyond its grace time.
        """
        if not isinstance(job_id, str):
            raise TypeError(f"job_id must be a string, not {job_id!r}")
        if not job_id:
            raise ValueError("job_id must not be empty")
        parsed = parse_schedule(schedule)
        now = self._clock.now()
        bound = parsed._bind(now)  # noqa: SLF001 (same module: the scheduler drives its schedules)
        upcoming = bound._fire_times_from(now)  # noqa: SLF001 (same module: the scheduler drives its schedules)
        # Found outside the lock (a sparse window search can take a while); a
        # first fire time that passes meanwhile is simply due at once.
        first = next(upcoming, None)
        if first is None:
            raise ValueError(f"{parsed!r} never fires after {now.astimezone(parsed.tz)}")
        entry = _Entry(job_id, bound, upcoming)
        entry.next_fire = first
        with self._lock:
            old = self._entries.get(job_id)
            if old is not None:
                if not replace:
                    raise ValueError(
                        f"job {job_id!r} already has a schedule; remove it first or "
                        "pass replace=True"
                    )
                old.token += 1
                entry.paused = old.paused
                entry.queued = old.queued
            self._entries[job_id] = entry
            wake = self._push(entry)
        if wake:
            self._wake.set()

    def remove(self, job_id: str) -> None:
        """Stop firing *job_id*'s schedule and forget it.

        Runs in progress still count until reported with :meth:`run_finished`;
        runs queued for a free instance are reported missed (:attr:`MissReason.REMOVED`).

        Raises:
            KeyError: If *job_id* has no schedule.
        """
        with self._lock:
            entry = self._pop_entry(job_id)
            tz = entry.schedule.tz
            for fire in entry.queued:
                self._reports.append(_Action(job_id, fire.astimezone(tz), MissReason.REMOVED))
            entry.queued.clear()
            wake = bool(self._reports)
        if wake:
            self._wake.set()

    def pause(self, job_id: str) -> None:
        """Stop firing *job_id* until :meth:`resume`; fire times meanwhile are not run
        nor reported.  Runs already queued still run when an instance frees.

        Raises:
            KeyError: If *job_id* has no schedule.
        """
        with self._lock:
            entry = self._get_entry(job_id)
            entry.paused = True
            entry.token += 1

    def resume(self, job_id: str) -> None:
        """Fire *job_id* again, from its first fire time after now.

        Raises:
            KeyError: If *job_id* has no schedule.
        """
        with self._lock:
            entry = self._get_entry(job_id)
            if not entry.paused:
                return
            entry.paused = False
            now = self._clock.now()
            entry.upcoming = entry.schedule._iter_utc(now)  # noqa: SLF001 (same module: the scheduler drives its schedules)
            entry.next_fire = next(entry.upcoming, None)
            wake = self._push(entry)
        if wake:
            self._wake.set()

    def run_finished(self, job_id: str) -> None:
        """Report that a run submitted for *job_id* has ended (call once per submit).

        Raises:
            ValueError: If *job_id* has no run in progress.
        """
        with self._lock:
            count = self._running.get(job_id, 0)
            if count == 0:
                raise ValueError(f"run_finished({job_id!r}) without a run of it in progress")
            if count == 1:
                del self._running[job_id]
            else:
                self._running[job_id] = count - 1
            entry = self._entries.get(job_id)
            wake = entry is not None and bool(entry.queued)
            if wake:
                # Submitted by the scheduler thread, never by this (worker) thread.
                self._ready.add(job_id)
        if wake:
            self._wake.set()

    def get(self, job_id: str) -> ScheduleInfo:
        """Return a snapshot of *job_id*'s schedule.

        Raises:
            KeyError: If *job_id* has no schedule.
        """
        with self._lock:
            return self._info(self._get_entry(job_id))

    def list_schedules(self) -> list[ScheduleInfo]:
        """Return a snapshot of every schedule, soonest next fire time first."""
        with self._lock:
            infos = [self._info(entry) for entry in self._entries.values()]
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(infos, key=lambda info: (info.next_fire_time or far, info.job_id))

    def list(self) -> _InfoList:
        """Deprecated alias of :meth:`list_schedules` (its name shadowed a builtin)."""
        warnings.warn(
            "Scheduler.list() is deprecated; use Scheduler.list_schedules()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.list_schedules()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- internals (all under self._lock unless said otherwise)

    def _info(self, entry: _Entry) -> ScheduleInfo:
        tz = entry.schedule.tz
        upcoming = None if entry.paused or entry.next_fire is None else entry.next_fire
        return ScheduleInfo(
            job_id=entry.job_id,
            schedule=entry.schedule,
            next_fire_time=None if upcoming is None else upcoming.astimezone(tz),
            paused=entry.paused,
            running=self._running.get(entry.job_id, 0),
            queued=len(entry.queued),
        )

    def _get_entry(self, job_id: str) -> _Entry:
        try:
            return self._entries[job_id]
        except KeyError:
            raise KeyError(f"no schedule for job {job_id!r}") from None

    def _pop_entry(self, job_id: str) -> _Entry:
        entry = self._get_entry(job_id)
        del self._entries[job_id]
        entry.token += 1
        self._ready.discard(job_id)
        return entry

    def _push(self, entry: _Entry) -> bool:
        """Queue *entry*'s next fire time on the heap; True if it became the earliest."""
        entry.token += 1
        if entry.paused or entry.next_fire is None:
            entry.due = None
            return False
        due = entry.next_fire
        schedule = entry.schedule
        if schedule.jitter:
            jittered = due + timedelta(seconds=self._rng.uniform(0.0, schedule.jitter))
            if schedule._allows_utc(jittered):  # noqa: SLF001 (same module: the scheduler drives its schedules)
                due = jittered
        entry.due = due
        item = (due, next(self._sequence), entry, entry.token)
        heapq.heappush(self._heap, item)
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [it for it in self._heap if self._is_current(it[2], it[3])]
            heapq.heapify(self._heap)
        return self._heap[0] is item

    def _is_current(self, entry: _Entry, token: int) -> bool:
        return (
            token == entry.token and not entry.paused and self._entries.get(entry.job_id) is entry
        )

    def _next_deadline(self) -> datetime | None:
        while self._heap and not self._is_current(self._heap[0][2], self._heap[0][3]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def _collect(self, now: datetime) -> _ActionList:
        """Decide what to do at *now*; the callbacks run later, outside the lock."""
        actions = self._reports
        self._reports = []
        for job_id in self._ready:
            entry = self._entries.get(job_id)
            if entry is not None:
                self._release_queued(entry, now, actions)
        self._ready.clear()
        while self._heap and self._heap[0][0] <= now:
            _, _, entry, token = heapq.heappop(self._heap)
            if not self._is_current(entry, token):
                continue
            try:
                self._fire(entry, now, actions)
            except Exception:
                # A schedule whose computation fails stops firing; the others go on.
                logger.exception("schedule of job %r failed; it will not fire again", entry.job_id)
                entry.next_fire = entry.due = None
        return actions

    def _fire(self, entry: _Entry, now: datetime, actions: _ActionList) -> None:
        schedule = entry.schedule
        assert entry.next_fire is not None and entry.due is not None
        # The backlog: every fire time up to now.  Lateness counts from the due
        # time, so that jitter does not count as being late.
        backlog = [(entry.next_fire, now - entry.due)]
        upcoming = next(entry.upcoming, None)
        while upcoming is not None and upcoming <= now:
            backlog.append((upcoming, now - upcoming))
            upcoming = next(entry.upcoming, None)
        grace = schedule.misfire_grace_time
        on_time = [fire for fire, late in backlog if grace is None or late.total_seconds() <= grace]
        if schedule.coalesce == "all" or not on_time:
            chosen = set(on_time)
        else:
            chosen = {on_time[-1] if schedule.coalesce == "latest" else on_time[0]}
        on_time_set = set(on_time)
        for fire, _ in backlog:
            if fire in chosen:
                self._admit(entry, fire, actions)
            else:
                reason = MissReason.COALESCED if fire in on_time_set else MissReason.MISFIRE
                actions.append(_Action(entry.job_id, fire.astimezone(schedule.tz), reason))
        entry.next_fire = upcoming
        self._push(entry)

    def _admit(self, entry: _Entry, fire: datetime, actions: _ActionList) -> None:
        schedule = entry.schedule
        running = self._running.get(entry.job_id, 0)
        if running < schedule.max_instances:
            self._running[entry.job_id] = running + 1
            actions.append(_Action(entry.job_id, fire.astimezone(schedule.tz), None))
        elif schedule.on_max_instances == "skip":
            actions.append(
                _Action(entry.job_id, fire.astimezone(schedule.tz), MissReason.MAX_INSTANCES)
            )
        elif schedule.coalesce == "all" or not entry.queued:
            entry.queued.append(fire)
        else:
            # At most one queued run: keep the latest or the earliest (fire times
            # arrive in ascending order, so *fire* is the latest).
            dropped = fire
            if schedule.coalesce == "latest":
                dropped, entry.queued[0] = entry.queued[0], fire
            actions.append(
                _Action(entry.job_id, dropped.astimezone(schedule.tz), MissReason.COALESCED)
            )

    def _release_queued(self, entry: _Entry, now: datetime, actions: _ActionList) -> None:
        schedule = entry.schedule
        while entry.queued and self._running.get(entry.job_id, 0) < schedule.max_instances:
            fire = entry.queued.popleft()
            if schedule.is_misfire(fire, now):
                actions.append(
                    _Action(entry.job_id, fire.astimezone(schedule.tz), MissReason.MISFIRE)
                )
            else:
                self._admit(entry, fire, actions)

    # -- the thread

    def _run(self) -> None:
        while True:
            # Cleared before the state is read: a change made after this line sets
            # the event again, so sleep_until returns at once and none is lost.
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
                actions = self._collect(self._clock.now())
                deadline = None if actions else self._next_deadline()
            if actions:
                self._perform(actions)
                continue
            self._clock.sleep_until(deadline, self._wake)

    def _perform(self, actions: _ActionList) -> None:
        """Run the callbacks (scheduler thread, lock not held)."""
        for action in actions:
            if action.missed is not None:
                self._report_missed(action.job_id, action.fire_time, action.missed)
                continue
            try:
                self._submit(action.job_id, action.fire_time)
                if self._events.active:
                    self._events.emit(tl_events.schedule_fired(action.job_id, action.fire_time))
            except Exception:
                logger.exception(
                    "submit for scheduled job %r (due %s) raised; the run is recorded missed",
                    action.job_id,
                    action.fire_time.isoformat(),
                )
                with self._lock:
                    self._release_instance(action.job_id)
                self._report_missed(action.job_id, action.fire_time, MissReason.SUBMIT_FAILED)

    def _release_instance(self, job_id: str) -> None:
        count = self._running.get(job_id, 0) - 1
        if count > 0:
            self._running[job_id] = count
        else:
            self._running.pop(job_id, None)
        entry = self._entries.get(job_id)
        if entry is not None and entry.queued:
            self._ready.add(job_id)

    def _report_missed(self, job_id: str, fire_time: datetime, reason: MissReason) -> None:
        logger.debug("scheduled run of %r due %s missed: %s", job_id, fire_time, reason)
        if self._events.active:
            self._events.emit(tl_events.schedule_missed(job_id, fire_time, reason))
        if self._on_missed is None:
            return
        try:
            self._on_missed(job_id, fire_time, reason)
        except Exception:
            logger.exception("on_missed for scheduled job %r raised", job_id)

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"<Scheduler {len(self._entries)} schedules, {'running' if running else 'stopped'}>"
