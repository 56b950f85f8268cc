"""``parse_schedule``: a schedule from its text form."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

import schedule as _schedule_pkg

from .base import Schedule, SchedulePolicies
from .cron import CronSchedule
from .interval import IntervalSchedule
from .oneoff import OneOffSchedule

if TYPE_CHECKING:
    from typing_extensions import Unpack


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
