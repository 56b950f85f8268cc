"""What every schedule shares: its policies (misfire grace, coalescing, instances,
jitter, windows, blackouts) and the search for its next fire time."""

from __future__ import annotations

import abc
import copy
import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, get_args

from .._validate import check_seconds
from .windows import BoundPeriod, Period, TimeWindow, WindowSpec, coerce_spans
from .zones import ONE_MICROSECOND, to_utc

if TYPE_CHECKING:
    from typing_extensions import Unpack

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
            else check_seconds("misfire_grace_time", misfire_grace_time, allow_zero=False)
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
        self.jitter = check_seconds("jitter", jitter, allow_zero=True)
        self.windows = coerce_spans(windows, "windows")
        self.blackouts = coerce_spans(blackouts, "blackouts")
        _check_choice("blackout_policy", blackout_policy, get_args(BlackoutPolicy))
        self.blackout_policy = blackout_policy
        self._window_spans = tuple(self._bind_span(span) for span in self.windows)
        self._blackout_spans = tuple(self._bind_span(span) for span in self.blackouts)
        self._check_can_fire()

    def _check_can_fire(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Raise ValueError if the schedule can never fire (subclasses that can tell)."""

    def _bind_span(self, span: TimeWindow | Period) -> TimeWindow | BoundPeriod:
        return BoundPeriod(span, self.tz) if isinstance(span, Period) else span

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
        start = to_utc(after, self.tz, "start")
        return (moment.astimezone(self.tz) for moment in self.iter_utc(start))

    def allows(self, moment: datetime) -> bool:
        """Return whether *moment* is inside the windows and outside every blackout."""
        return self.allows_utc(to_utc(moment, self.tz, "moment"))

    def is_misfire(self, fire_time: datetime, now: datetime) -> bool:
        """Return whether a run due at *fire_time* starting at *now* is past the grace time.

        The owner may call this when a run actually starts on a worker, to catch
        runs that waited too long in the pool's queue.
        """
        if self.misfire_grace_time is None:
            return False
        late = to_utc(now, self.tz, "now") - to_utc(fire_time, self.tz, "fire_time")
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

    def bind(self, now: datetime) -> Schedule:
        """The schedule as a :class:`Scheduler` keeps it once added at *now* (UTC).

        An interval schedule without an anchor is anchored at *now*; every
        other schedule returns itself.
        """
        return self

    def fire_times_from(self, now: datetime) -> Iterator[datetime]:
        """The UTC fire times a :class:`Scheduler` uses when the schedule is added at *now* (UTC).

        Those strictly after *now* (:meth:`iter_utc`); a one-off time that just
        passed, within its ``misfire_grace_time``, is due at once.
        """
        return self.iter_utc(now)

    # -- the search

    def iter_utc(self, after: datetime) -> Iterator[datetime]:
        """Ascending UTC fire times strictly after UTC *after*, windows and blackouts applied.

        :meth:`iter_fire_times` is the same in the schedule's time zone.
        """
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
                raw = self._iter_raw(resume_at - ONE_MICROSECOND)

    def _in_windows(self, moment: datetime) -> bool:
        if not self._window_spans:
            return True
        for span in self._window_spans:
            occurrence = span.occurrence(moment, self.tz)
            if occurrence is not None and occurrence[0] <= moment:
                return True
        return False

    def _next_opening(self, moment: datetime) -> datetime | None:
        """*moment* if inside a window, else the next window start, else None."""
        best: datetime | None = None
        for span in self._window_spans:
            occurrence = span.occurrence(moment, self.tz)
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
                if (occurrence := span.occurrence(probe, self.tz)) is not None
                and occurrence[0] <= probe
            ]
            if not ends:
                return end
            end = probe = max(ends)
        return end

    def allows_utc(self, moment: datetime) -> bool:
        """Whether the windows and blackouts allow a run at UTC *moment* (see :meth:`allows`)."""
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
