"""Schedules (cron, interval, one-off) and the scheduler thread that fires them.

The modules, from the bottom up: ``clock`` (injectable time), ``zones``,
``windows`` (time windows, blackouts), ``base`` (what every schedule shares),
``cron``, ``interval``, ``oneoff``, ``parser`` (``parse_schedule``) and
``scheduler`` (the thread).

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

from .base import Schedule, SchedulePolicies
from .clock import Clock, ManualClock, SystemClock
from .cron import CronSchedule
from .interval import IntervalJob, IntervalSchedule, every
from .oneoff import OneOffSchedule
from .parser import parse_schedule
from .scheduler import MissedCallback, MissReason, ScheduleInfo, Scheduler, SubmitCallback
from .windows import Period, TimeWindow
from .zones import UTC, local_timezone

__all__ = [
    "UTC",
    "Clock",
    "CronSchedule",
    "IntervalJob",
    "IntervalSchedule",
    "ManualClock",
    "MissReason",
    "MissedCallback",
    "OneOffSchedule",
    "Period",
    "Schedule",
    "ScheduleInfo",
    "SchedulePolicies",
    "Scheduler",
    "SubmitCallback",
    "SystemClock",
    "TimeWindow",
    "every",
    "local_timezone",
    "parse_schedule",
]
