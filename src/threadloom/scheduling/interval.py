"""Interval schedules, written with the schedule package's fluent API (``every``)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import schedule as _schedule_pkg

from .base import Schedule, SchedulePolicies
from .zones import UTC, local_timezone, resolve_tz, to_utc, wall_to_utc

if TYPE_CHECKING:
    from typing_extensions import Unpack

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
            self.zone = resolve_tz(tz)
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
        resolved = resolve_tz(tz if tz is not None else job_zone)
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
            else to_utc(job.cancel_after, local_timezone(), "until").astimezone(resolved)
        )
        self._until_utc = None if self.until is None else self.until.astimezone(UTC)
        self._wall_units = self.unit in ("days", "weeks")
        self._step = timedelta(**{self.unit: self.interval})
        super().__init__(resolved, dict(policies))
        self.anchor: datetime | None = (
            None if anchor is None else to_utc(anchor, self.tz, "anchor").astimezone(self.tz)
        )

    def bind(self, now: datetime) -> Schedule:
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
        first_utc = wall_to_utc(first, self.tz) if self.at_time is not None else anchor

        def instant(index: int) -> datetime:
            if self._wall_units:
                return wall_to_utc(first + index * self._step, self.tz)
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
