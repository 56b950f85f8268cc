"""Tests for threadloom.scheduling: schedules, their fire times, and the scheduler thread.

The scheduler tests drive a ManualClock: they move time and then wait (bounded)
until the scheduler thread is asleep again, so no test sleeps or depends on timing.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import schedule as schedule_pkg

from threadloom.scheduling import (
    CronSchedule,
    IntervalSchedule,
    ManualClock,
    MissReason,
    OneOffSchedule,
    Period,
    Schedule,
    Scheduler,
    TimeWindow,
    every,
    local_timezone,
    parse_schedule,
)

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
WAIT = 10.0  # real seconds a test waits at most for the scheduler thread


def iso(moments: list[datetime]) -> list[str]:
    return [moment.isoformat() for moment in moments]


def utc_iso(moments: list[datetime]) -> list[str]:
    return [moment.astimezone(UTC).isoformat() for moment in moments]


# --------------------------------------------------------------------------- cron fields


@pytest.mark.parametrize(
    ("expr", "start", "expected"),
    [
        (
            "15 10 * * *",
            datetime(2024, 5, 1, 10, 15),
            ["2024-05-02T10:15:00", "2024-05-03T10:15:00", "2024-05-04T10:15:00"],
        ),
        (
            "0-10/5 8,12 * * *",
            datetime(2024, 5, 1, 9, 0),
            [
                "2024-05-01T12:00:00",
                "2024-05-01T12:05:00",
                "2024-05-01T12:10:00",
                "2024-05-02T08:00:00",
            ],
        ),
        (
            "*/20 * * * *",
            datetime(2024, 5, 1, 23, 30),
            ["2024-05-01T23:40:00", "2024-05-02T00:00:00", "2024-05-02T00:20:00"],
        ),
        # Day of month and day of week both restricted: either matches (Debian).
        (
            "0 0 13 * FRI",
            datetime(2024, 9, 1),
            [
                "2024-09-06T00:00:00",
                "2024-09-13T00:00:00",
                "2024-09-20T00:00:00",
                "2024-09-27T00:00:00",
                "2024-10-04T00:00:00",
                "2024-10-11T00:00:00",
                "2024-10-13T00:00:00",
            ],
        ),
        # A star in day of week makes it AND again.
        ("0 0 13 * *", datetime(2024, 9, 1), ["2024-09-13T00:00:00", "2024-10-13T00:00:00"]),
        # Seconds field first.
        (
            "*/15 * * * * *",
            datetime(2024, 5, 1, 10, 0, 50),
            ["2024-05-01T10:01:00", "2024-05-01T10:01:15", "2024-05-01T10:01:30"],
        ),
    ],
)
def test_cron_fields_lists_ranges_and_steps(
    expr: str, start: datetime, expected: list[str]
) -> None:
    schedule = CronSchedule(expr, tz="UTC")
    times = schedule.next_fire_times(start, len(expected))
    assert [t.replace(tzinfo=None).isoformat() for t in times] == expected


@pytest.mark.parametrize(
    ("named", "numeric"),
    [
        ("0 9 * JAN,JUL MON-FRI", "0 9 * 1,7 1-5"),
        ("0 9 * jan,jul mon-fri", "0 9 * 1,7 1-5"),
        ("30 6 * * SUN", "30 6 * * 7"),
        ("30 6 * * sun", "30 6 * * 0"),
        ("0 0 1 DEC *", "0 0 1 12 *"),
    ],
)
def test_cron_names_mean_their_numbers(named: str, numeric: str) -> None:
    start = datetime(2024, 1, 1)
    assert CronSchedule(named, "UTC").next_fire_times(start, 20) == CronSchedule(
        numeric, "UTC"
    ).next_fire_times(start, 20)


@pytest.mark.parametrize(
    ("expr", "expected_days"),
    [
        ("0 0 L * *", ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"]),
        ("0 0 LW * *", ["2024-01-31", "2024-02-29", "2024-03-29", "2024-04-30"]),
        ("0 0 * * 5L", ["2024-01-26", "2024-02-23", "2024-03-29", "2024-04-26"]),
        ("0 0 * * MON#2", ["2024-01-08", "2024-02-12", "2024-03-11", "2024-04-08"]),
        ("0 0 * * 1#5", ["2024-01-29", "2024-04-29", "2024-07-29", "2024-09-30"]),
    ],
)
def test_cron_last_and_nth_weekday(expr: str, expected_days: list[str]) -> None:
    times = CronSchedule(expr, "UTC").next_fire_times(datetime(2024, 1, 1), 4)
    assert [t.date().isoformat() for t in times] == expected_days


@pytest.mark.parametrize(
    ("macro", "expansion"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_cron_macros(macro: str, expansion: str) -> None:
    start = datetime(2024, 3, 30, 22, 30)
    assert CronSchedule(macro, LONDON).next_fire_times(start, 5) == CronSchedule(
        expansion, LONDON
    ).next_fire_times(start, 5)


def test_cron_leap_days() -> None:
    feb29 = CronSchedule("0 0 29 2 *", "UTC")
    assert [t.date().isoformat() for t in feb29.next_fire_times(datetime(2023, 1, 1), 3)] == [
        "2024-02-29",
        "2028-02-29",
        "2032-02-29",
    ]
    # 2100 is not a leap year.
    assert feb29.next_fire_time(datetime(2096, 3, 1)) == datetime(2104, 2, 29, tzinfo=UTC)
    last_of_feb = CronSchedule("0 12 L 2 *", "UTC")
    assert [t.date().isoformat() for t in last_of_feb.next_fire_times(datetime(2024, 1, 1), 3)] == [
        "2024-02-29",
        "2025-02-28",
        "2026-02-28",
    ]


@pytest.mark.parametrize(
    ("expr", "field", "value"),
    [
        ("61 * * * *", "minute", "61"),
        ("* 24 * * *", "hour", "24"),
        ("* * 0 * *", "day-of-month", "0"),
        ("* * 32 * *", "day-of-month", "32"),
        ("* * * 13 *", "month", "13"),
        ("* * * JAN-FOO *", "month", "JAN-FOO"),
        ("* * * * 8", "day-of-week", "8"),
        ("* * * * MON#6", "day-of-week", "MON#6"),
        ("* * * * JAN", "day-of-week", "JAN"),
        ("*/0 * * * *", "minute", "*/0"),
        ("5-1 * * * *", "minute", "5-1"),
        ("60 * * * * *", "second", "60"),
        ("x * * * *", "minute", "x"),
    ],
)
def test_invalid_cron_names_the_field(expr: str, field: str, value: str) -> None:
    with pytest.raises(ValueError) as info:
        CronSchedule(expr, "UTC")
    message = str(info.value)
    assert f"bad {field} field {value!r}" in message
    assert repr(expr) in message


@pytest.mark.parametrize(
    ("expr", "match"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("* * *", "has 3 fields; expected 5"),
        ("* * * * * * *", "has 7 fields"),
        ("@reboot", "@reboot"),
        ("@fortnightly", "unknown cron macro"),
    ],
)
def test_malformed_cron_is_explained(expr: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CronSchedule(expr, "UTC")


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 FEB *"])
def test_cron_that_can_never_fire_is_refused(expr: str) -> None:
    with pytest.raises(ValueError, match="can never fire: day-of-month"):
        CronSchedule(expr, "UTC")


def test_cron_that_can_never_fire_inside_its_windows_is_refused() -> None:
    with pytest.raises(ValueError, match="can never fire"):
        CronSchedule("0 12 * * *", "UTC", windows="09:00-10:00")


def test_rare_combination_of_cron_and_window_still_fires() -> None:
    # 29 February falls on a Monday every 28 years.
    schedule = CronSchedule("0 0 29 2 *", "UTC", windows="MON")
    assert [t.year for t in schedule.next_fire_times(datetime(2000, 1, 1), 3)] == [2016, 2044, 2072]


def test_cron_rejects_non_strings_and_unknown_zones() -> None:
    with pytest.raises(TypeError, match="string"):
        CronSchedule(5, "UTC")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        CronSchedule("* * * * *", "Mars/Olympus")
    with pytest.raises(TypeError, match="tz must be"):
        CronSchedule("* * * * *", 5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- DST


@pytest.mark.parametrize(
    ("tz", "expr", "start", "expected"),
    [
        # Spring forward, New York 2024-03-10 02:00 EST -> 03:00 EDT.
        (
            NY,
            "30 2 * * *",
            datetime(2024, 3, 9, 12),
            ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
        ),
        (  # several times in the gap: one run after it
            NY,
            "0,15,30,45 2 * * *",
            datetime(2024, 3, 10, 0),
            ["2024-03-10T03:00:00-04:00", "2024-03-11T02:00:00-04:00"],
        ),
        (  # wildcard jobs run by the wall clock: nothing in the gap
            NY,
            "*/30 * * * *",
            datetime(2024, 3, 10, 1, 0),
            ["2024-03-10T01:30:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-10T03:30:00-04:00"],
        ),
        # Fall back, New York 2024-11-03 02:00 EDT -> 01:00 EST: 01:xx happens twice.
        (
            NY,
            "30 1 * * *",
            datetime(2024, 11, 2, 12),
            ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"],
        ),
        (
            NY,
            "*/30 * * * *",
            datetime(2024, 11, 3, 0, 40),
            [
                "2024-11-03T01:00:00-04:00",
                "2024-11-03T01:30:00-04:00",
                "2024-11-03T01:00:00-05:00",
                "2024-11-03T01:30:00-05:00",
                "2024-11-03T02:00:00-05:00",
            ],
        ),
        (
            NY,
            "0 * * * *",
            datetime(2024, 11, 3, 0, 10),
            ["2024-11-03T01:00:00-04:00", "2024-11-03T01:00:00-05:00", "2024-11-03T02:00:00-05:00"],
        ),
        # Spring forward, London 2024-03-31 01:00 GMT -> 02:00 BST.
        (
            LONDON,
            "30 1 * * *",
            datetime(2024, 3, 30, 12),
            ["2024-03-31T02:00:00+01:00", "2024-04-01T01:30:00+01:00"],
        ),
        (
            LONDON,
            "*/20 * * * *",
            datetime(2024, 3, 31, 0, 30),
            ["2024-03-31T00:40:00+00:00", "2024-03-31T02:00:00+01:00", "2024-03-31T02:20:00+01:00"],
        ),
        # Fall back, London 2024-10-27 02:00 BST -> 01:00 GMT.
        (
            LONDON,
            "30 1 * * *",
            datetime(2024, 10, 26, 12),
            ["2024-10-27T01:30:00+01:00", "2024-10-28T01:30:00+00:00"],
        ),
        (
            LONDON,
            "15 * * * *",
            datetime(2024, 10, 27, 0, 30),
            ["2024-10-27T01:15:00+01:00", "2024-10-27T01:15:00+00:00", "2024-10-27T02:15:00+00:00"],
        ),
        # Six-field expressions are not Debian cron: wall clock as it is.
        (
            NY,
            "0 30 1 * * *",
            datetime(2024, 11, 3, 0),
            ["2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00", "2024-11-04T01:30:00-05:00"],
        ),
    ],
)
def test_cron_across_dst(tz: ZoneInfo, expr: str, start: datetime, expected: list[str]) -> None:
    times = CronSchedule(expr, tz).next_fire_times(start, len(expected))
    assert iso(times) == expected
    assert all(t.tzinfo is tz for t in times)


def test_cron_after_a_moment_in_the_second_pass_of_a_repeated_hour() -> None:
    # 01:40 EST is after 01:45 EDT in real time, although its wall time is earlier:
    # the 01:45 run of that day has already happened.
    second_pass = datetime(2024, 11, 3, 1, 40, tzinfo=NY, fold=1)
    fire = CronSchedule("45 1 * * *", NY).next_fire_time(second_pass)
    assert fire is not None
    assert fire.isoformat() == "2024-11-04T01:45:00-05:00"


@pytest.mark.parametrize("tz", [NY, LONDON, ZoneInfo("Australia/Lord_Howe")])
@pytest.mark.parametrize("expr", ["*/7 * * * *", "30 1 * * *", "0 2 * * *", "0 0,12 * * 1-5"])
def test_cron_fire_times_strictly_increase_through_a_year_of_shifts(
    tz: ZoneInfo, expr: str
) -> None:
    schedule = CronSchedule(expr, tz)
    for shift in _shift_days(tz, 2024):
        start = datetime.combine(shift - timedelta(days=2), time(), tz)
        end = start + timedelta(days=4)
        times = list(_take_until(schedule.iter_fire_times(start), end))
        instants = [t.astimezone(UTC) for t in times]
        assert instants == sorted(set(instants))
        assert instants[0] > start
        # Resuming from any fire time continues the same sequence.
        for index in range(0, len(times) - 1, max(1, len(times) // 40)):
            assert schedule.next_fire_time(times[index]) == times[index + 1]


def _shift_days(tz: ZoneInfo, year: int) -> list[date]:
    days = [date(year, 1, 1) + timedelta(days=n) for n in range(366)]
    shifts = [
        day
        for day in days[1:]
        if datetime.combine(day, time(12), tz).utcoffset()
        != datetime.combine(day - timedelta(days=1), time(12), tz).utcoffset()
    ]
    assert len(shifts) == 2
    return shifts


def _take_until(iterator: Iterator[datetime], end: datetime) -> Iterator[datetime]:
    for moment in iterator:
        if moment >= end:
            return
        yield moment


def test_start_may_be_naive_aware_or_in_another_zone() -> None:
    schedule = CronSchedule("0 9 * * *", NY)
    naive = schedule.next_fire_times(datetime(2024, 6, 1, 8, 0), 2)
    aware = schedule.next_fire_times(datetime(2024, 6, 1, 8, 0, tzinfo=NY), 2)
    utc = schedule.next_fire_times(datetime(2024, 6, 1, 12, 0, tzinfo=UTC), 2)
    assert naive == aware == utc
    assert iso(naive) == ["2024-06-01T09:00:00-04:00", "2024-06-02T09:00:00-04:00"]
    with pytest.raises(TypeError, match="datetime"):
        schedule.next_fire_times("2024-06-01", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be >= 0"):
        schedule.next_fire_times(datetime(2024, 6, 1), -1)
    assert schedule.next_fire_times(datetime(2024, 6, 1), 0) == []


def test_default_zone_is_local() -> None:
    assert str(CronSchedule("* * * * *").tz) == str(local_timezone())


# --------------------------------------------------------------------------- intervals


def test_interval_in_elapsed_units() -> None:
    anchor = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
    ten_minutes = IntervalSchedule(every(10).minutes, "UTC", anchor=anchor)
    assert utc_iso(ten_minutes.next_fire_times(anchor, 3)) == [
        "2024-05-01T10:10:00+00:00",
        "2024-05-01T10:20:00+00:00",
        "2024-05-01T10:30:00+00:00",
    ]
    # Counting from later keeps the anchor's grid.
    later = ten_minutes.next_fire_times(datetime(2024, 5, 1, 13, 25, tzinfo=UTC), 2)
    assert utc_iso(later) == ["2024-05-01T13:30:00+00:00", "2024-05-01T13:40:00+00:00"]
    seconds = IntervalSchedule(every(45).seconds, "UTC", anchor=anchor)
    assert utc_iso(seconds.next_fire_times(anchor, 2)) == [
        "2024-05-01T10:00:45+00:00",
        "2024-05-01T10:01:30+00:00",
    ]


def test_interval_without_anchor_counts_from_start() -> None:
    start = datetime(2024, 5, 1, 10, 3, 7, tzinfo=UTC)
    hourly = IntervalSchedule(every().hour, "UTC")
    assert utc_iso(hourly.next_fire_times(start, 2)) == [
        "2024-05-01T11:03:07+00:00",
        "2024-05-01T12:03:07+00:00",
    ]


@pytest.mark.parametrize(
    ("build", "tz", "start", "expected"),
    [
        (
            lambda: every().monday.at("09:30"),
            LONDON,
            datetime(2024, 3, 25, 9, 30),  # a Monday, exactly at the time: next week
            ["2024-04-01T09:30:00+01:00", "2024-04-08T09:30:00+01:00"],
        ),
        (
            lambda: every().day.at("10:00"),
            LONDON,
            datetime(2024, 3, 30, 9, 0),  # across the spring shift: wall time kept
            ["2024-03-30T10:00:00+00:00", "2024-03-31T10:00:00+01:00", "2024-04-01T10:00:00+01:00"],
        ),
        (  # schedule's rule: an interval other than 1 starts one interval later
            lambda: every(2).days.at("10:00"),
            LONDON,
            datetime(2024, 3, 25, 9, 0),
            ["2024-03-27T10:00:00+00:00", "2024-03-29T10:00:00+00:00", "2024-03-31T10:00:00+01:00"],
        ),
        (
            lambda: every().hour.at(":15"),
            "UTC",
            datetime(2024, 5, 1, 10, 20),
            ["2024-05-01T11:15:00+00:00", "2024-05-01T12:15:00+00:00"],
        ),
        (
            lambda: every().minute.at(":30"),
            "UTC",
            datetime(2024, 5, 1, 10, 20, 10),
            ["2024-05-01T10:20:30+00:00", "2024-05-01T10:21:30+00:00"],
        ),
        (
            lambda: every().day.at("02:30"),
            NY,
            datetime(2024, 3, 9, 12),  # 02:30 does not exist on the 10th: right after the gap
            ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
        ),
        (
            lambda: every().day.at("01:30"),
            NY,
            datetime(2024, 11, 2, 12),  # 01:30 happens twice on 3 Nov: the first one
            ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"],
        ),
        (
            lambda: every(2).weeks,
            "UTC",
            datetime(2024, 5, 1, 8, 0),
            ["2024-05-15T08:00:00+00:00", "2024-05-29T08:00:00+00:00"],
        ),
    ],
)
def test_interval_at_times_weekdays_and_dst(
    build: Callable[[], schedule_pkg.Job], tz: ZoneInfo | str, start: datetime, expected: list[str]
) -> None:
    times = IntervalSchedule(build(), tz).next_fire_times(start, len(expected))
    assert iso(times) == expected


def test_sub_day_intervals_are_elapsed_time_across_the_autumn_shift() -> None:
    anchor = datetime(2024, 11, 3, 0, 40, tzinfo=NY)
    schedule = IntervalSchedule(every(30).minutes, NY, anchor=anchor)
    times = schedule.next_fire_times(anchor, 6)
    assert len(times) == 6
    real_gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(times)}
    assert real_gaps == {timedelta(minutes=30)}
    assert iso(times[1:3]) == ["2024-11-03T01:40:00-04:00", "2024-11-03T01:10:00-05:00"]


def test_interval_zone_from_at_and_conflicts() -> None:
    schedule = IntervalSchedule(every().day.at("10:00", "Europe/Paris"))
    assert str(schedule.tz) == "Europe/Paris"
    assert iso(schedule.next_fire_times(datetime(2024, 6, 1, 12, tzinfo=UTC), 1)) == [
        "2024-06-02T10:00:00+02:00"
    ]
    with pytest.raises(ValueError, match="conflicts"):
        IntervalSchedule(every().day.at("10:00", "Europe/Paris"), tz="Asia/Tokyo")


def test_interval_until_ends_the_schedule() -> None:
    until = datetime.now() + timedelta(days=365 * 5)
    job = every().day.at("10:00").until(until)
    schedule = IntervalSchedule(job, local_timezone())
    times = schedule.next_fire_times(until - timedelta(days=3), 10)
    assert 2 <= len(times) <= 3
    assert all(t.replace(tzinfo=None) <= until for t in times)


def test_every_and_interval_refuse_what_they_cannot_honour() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        every(0)
    with pytest.raises(TypeError, match="int"):
        every(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="do\\(\\)"):
        every(5).minutes.do(print)
    with pytest.raises(ValueError, match="no unit"):
        IntervalSchedule(every(5))
    with pytest.raises(ValueError, match="random interval"):
        IntervalSchedule(every(5).to(10).minutes)
    with pytest.raises(TypeError, match="every\\(\\)"):
        IntervalSchedule("*/5 * * * *")  # type: ignore[arg-type]
    with pytest.raises(schedule_pkg.ScheduleValueError):
        every().day.at("25:00")


def test_jobs_from_the_schedule_package_itself_are_accepted() -> None:
    job = schedule_pkg.every(5).minutes
    anchor = datetime(2024, 1, 1, tzinfo=UTC)
    schedule = IntervalSchedule(job, "UTC", anchor=anchor)
    assert schedule.next_fire_time(anchor) == anchor + timedelta(minutes=5)
    assert schedule_pkg.get_jobs() == []  # the package's global scheduler is untouched


@pytest.mark.parametrize(
    "build",
    [
        lambda e: e().day.at("10:30"),
        lambda e: e(3).days.at("07:15:20"),
        lambda e: e().wednesday.at("23:59"),
        lambda e: e().sunday,
        lambda e: e().hour.at(":15"),
        lambda e: e(2).hours.at("05:07"),
        lambda e: e(5).minutes.at(":20"),
    ],
)
def test_first_run_matches_the_schedule_package(build: Callable[..., schedule_pkg.Job]) -> None:
    reference = build(schedule_pkg.every)
    before = datetime.now()
    reference._schedule_next_run()  # the package's own computation, on the real clock
    after = datetime.now()
    assert reference.next_run is not None
    expected = reference.next_run.replace(microsecond=0)
    tz = local_timezone()
    if before.astimezone().utcoffset() != reference.next_run.astimezone().utcoffset():
        pytest.skip("a DST shift lies ahead; the package computes in naive local time")
    ours = IntervalSchedule(build(every), tz)
    candidates = set()
    for anchor in (before, after):
        fire = ours.next_fire_time(anchor)
        assert fire is not None
        candidates.add(fire.astimezone(tz).replace(tzinfo=None, microsecond=0))
    assert expected in candidates


# --------------------------------------------------------------------------- one-offs, parsing


def test_one_off_fires_once() -> None:
    at = datetime(2024, 7, 1, 9, 0, tzinfo=LONDON)
    schedule = OneOffSchedule(at)
    assert schedule.tz is LONDON
    assert schedule.next_fire_times(datetime(2024, 1, 1, tzinfo=UTC), 3) == [at]
    assert schedule.next_fire_time(at) is None
    naive = OneOffSchedule(datetime(2024, 7, 1, 9, 0), tz=NY)
    assert naive.at.isoformat() == "2024-07-01T09:00:00-04:00"
    with pytest.raises(TypeError, match="datetime"):
        OneOffSchedule("2024-07-01")  # type: ignore[arg-type]


def test_parse_schedule_accepts_each_form() -> None:
    cron = parse_schedule("*/5 * * * *", tz="UTC", misfire_grace_time=30)
    assert isinstance(cron, CronSchedule)
    assert cron.misfire_grace_time == 30.0
    interval = parse_schedule(every(10).minutes, tz="UTC")
    assert isinstance(interval, IntervalSchedule)
    one_off = parse_schedule(datetime(2030, 1, 1, tzinfo=UTC))
    assert isinstance(one_off, OneOffSchedule)
    assert parse_schedule(cron) is cron


def test_parse_schedule_refuses_the_rest() -> None:
    for bad in (5, None, 1.5, ["* * * * *"], timedelta(minutes=5)):
        with pytest.raises(TypeError, match="cron string"):
            parse_schedule(bad)
    with pytest.raises(ValueError, match="bad hour field"):
        parse_schedule("0 99 * * *")
    cron = CronSchedule("* * * * *", "UTC")
    with pytest.raises(TypeError, match="existing Schedule"):
        parse_schedule(cron, tz="UTC")


# --------------------------------------------------------------------------- policies


@pytest.mark.parametrize(
    ("policy", "value", "error", "match"),
    [
        ("misfire_grace_time", -1, ValueError, "misfire_grace_time"),
        ("misfire_grace_time", 0, ValueError, "misfire_grace_time"),
        ("misfire_grace_time", "10", TypeError, "misfire_grace_time"),
        ("coalesce", "newest", ValueError, "coalesce must be one of"),
        ("max_instances", 0, ValueError, "max_instances"),
        ("max_instances", 1.5, TypeError, "max_instances"),
        ("max_instances", True, TypeError, "max_instances"),
        ("on_max_instances", "wait", ValueError, "on_max_instances"),
        ("jitter", -0.5, ValueError, "jitter"),
        ("jitter", float("nan"), ValueError, "jitter"),
        ("blackout_policy", "postpone", ValueError, "blackout_policy"),
        ("windows", 42, TypeError, "windows"),
        ("windows", ["25:00-26:00"], ValueError, "bad time"),
        ("blackouts", ["SOMEDAY 01:00-02:00"], ValueError, "bad days"),
        ("retries", 3, TypeError, "unknown schedule policy 'retries'"),
    ],
)
def test_policies_are_validated(policy: str, value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        CronSchedule("* * * * *", "UTC", **{policy: value})  # type: ignore[arg-type]


def test_replace_changes_policies_only() -> None:
    base = CronSchedule("*/5 * * * *", NY, misfire_grace_time=10)
    changed = base.replace(coalesce="all", max_instances=3)
    assert (changed.expr, changed.tz, changed.misfire_grace_time) == ("*/5 * * * *", NY, 10.0)
    assert (changed.coalesce, changed.max_instances) == ("all", 3)
    assert (base.coalesce, base.max_instances) == ("latest", 1)
    with pytest.raises(ValueError, match="coalesce"):
        base.replace(coalesce="sometimes")  # type: ignore[arg-type]


def test_is_misfire_uses_the_grace_time() -> None:
    fire = datetime(2024, 1, 1, 12, tzinfo=UTC)
    strict = CronSchedule("* * * * *", "UTC", misfire_grace_time=10)
    assert not strict.is_misfire(fire, fire + timedelta(seconds=10))
    assert strict.is_misfire(fire, fire + timedelta(seconds=10.5))
    assert not CronSchedule("* * * * *", "UTC").is_misfire(fire, fire + timedelta(days=9))


# --------------------------------------------------------------------------- windows, blackouts


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("09:00-17:00", TimeWindow(time(9), time(17))),
        ("MON-FRI 09:00-17:30", TimeWindow(time(9), time(17, 30), frozenset(range(5)))),
        ("sat,sun", TimeWindow(time(0), time(0), frozenset({5, 6}))),
        ("FRI-MON 22:00-06:00", TimeWindow(time(22), time(6), frozenset({4, 5, 6, 0}))),
        ("18:00-24:00", TimeWindow(time(18), time(0))),
        ("SUN 02:00:30-04:00:15", TimeWindow(time(2, 0, 30), time(4, 0, 15), frozenset({6}))),
    ],
)
def test_time_window_parsing(text: str, window: TimeWindow) -> None:
    assert TimeWindow.parse(text) == window


@pytest.mark.parametrize(
    ("text", "match"), [("", "expected"), ("lunchtime", "bad days"), ("09:00-25:00", "bad time")]
)
def test_time_window_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TimeWindow.parse(text)


def test_windows_limit_fire_times() -> None:
    office = CronSchedule("*/30 * * * *", LONDON, windows="MON-FRI 09:00-17:00")
    friday_afternoon = datetime(2024, 3, 22, 16, 0)  # a Friday
    assert iso(office.next_fire_times(friday_afternoon, 3)) == [
        "2024-03-22T16:30:00+00:00",
        "2024-03-25T09:00:00+00:00",  # window end is exclusive; next opening Monday
        "2024-03-25T09:30:00+00:00",
    ]
    assert office.allows(datetime(2024, 3, 22, 16, 59))
    assert not office.allows(datetime(2024, 3, 22, 17, 0))
    assert not office.allows(datetime(2024, 3, 23, 12, 0))


def test_overnight_window_and_several_windows() -> None:
    schedule = CronSchedule(
        "0 * * * *", "UTC", windows=["22:00-02:00", TimeWindow(time(12), time(13))]
    )
    hours = [t.hour for t in schedule.next_fire_times(datetime(2024, 5, 1, 3), 6)]
    assert hours == [12, 22, 23, 0, 1, 12]


def test_blackout_skip_and_defer() -> None:
    start = datetime(2024, 3, 24, 0, 30)  # a Sunday
    skip = CronSchedule("0 * * * *", LONDON, blackouts="SUN 02:00-04:00")
    assert [t.hour for t in skip.next_fire_times(start, 3)] == [1, 4, 5]
    defer = CronSchedule("0 * * * *", LONDON, blackouts="SUN 02:30-04:30", blackout_policy="defer")
    # 03:00 and 04:00 fall inside: one run at 04:30.
    assert [t.strftime("%H:%M") for t in defer.next_fire_times(start, 4)] == [
        "01:00",
        "02:00",
        "04:30",
        "05:00",
    ]
    # A deferred run landing on a fire time is one run.
    merged = CronSchedule("0 * * * *", LONDON, blackouts="SUN 02:00-04:00", blackout_policy="defer")
    assert [t.hour for t in merged.next_fire_times(start, 3)] == [1, 4, 5]


def test_absolute_blackout_period_and_overlaps() -> None:
    maintenance = Period(datetime(2024, 5, 1, 10, 0), datetime(2024, 5, 1, 11, 30))
    schedule = CronSchedule(
        "*/30 * * * *",
        "UTC",
        blackouts=[maintenance, "11:00-12:10"],
        blackout_policy="defer",
    )
    times = schedule.next_fire_times(datetime(2024, 5, 1, 9, 45), 3)
    # Two overlapping blackouts form one stretch 10:00-12:10.
    assert [t.strftime("%H:%M") for t in times] == ["10:00", "12:10", "12:30"] or [
        t.strftime("%H:%M") for t in times
    ] == ["12:10", "12:30", "13:00"]
    assert times[0] > datetime(2024, 5, 1, 9, 45, tzinfo=UTC)
    assert not schedule.allows(datetime(2024, 5, 1, 10, 0))
    assert [t.strftime("%H:%M") for t in times] == ["12:10", "12:30", "13:00"]
    with pytest.raises(ValueError, match="not after"):
        Period(datetime(2024, 5, 1, 11), datetime(2024, 5, 1, 10))


def test_deferred_run_outside_the_windows_is_skipped() -> None:
    schedule = CronSchedule(
        "0 10,16 * * *",
        "UTC",
        windows="09:00-17:00",
        blackouts="15:30-18:00",
        blackout_policy="defer",
    )
    # 16:00 would be deferred to 18:00, outside the window: skipped.
    assert iso(schedule.next_fire_times(datetime(2024, 5, 1), 2)) == [utc(10), utc(10, day=2)]
    with pytest.raises(ValueError, match="can never fire"):
        schedule.replace(windows="09:00-12:00", blackouts="09:00-12:00")


# --------------------------------------------------------------------------- the scheduler


@dataclass
class Harness:
    """A scheduler on a manual clock, recording what it submits and misses."""

    clock: ManualClock
    scheduler: Scheduler = field(init=False)
    submitted: list[tuple[str, datetime]] = field(default_factory=list)
    missed: list[tuple[str, datetime, MissReason]] = field(default_factory=list)
    submit_threads: set[str] = field(default_factory=set)
    fail_submit: set[str] = field(default_factory=set)
    rng: random.Random | None = None
    finish_at_once: bool = True
    """Report each run finished as soon as it is submitted (a pool of instant jobs)."""

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(self._submit, self.clock, on_missed=self._missed, rng=self.rng)

    def _submit(self, job_id: str, fire_time: datetime) -> None:
        self.submit_threads.add(threading.current_thread().name)
        if job_id in self.fail_submit:
            raise RuntimeError("pool is closed")
        self.submitted.append((job_id, fire_time))
        if self.finish_at_once:
            self.scheduler.run_finished(job_id)

    def _missed(self, job_id: str, fire_time: datetime, reason: MissReason) -> None:
        self.missed.append((job_id, fire_time, reason))

    def settle(self) -> None:
        """Wait until the scheduler thread has reacted and is asleep again."""
        assert self.clock.wait_for_sleepers(timeout=WAIT), "scheduler thread did not settle"

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()

    def set(self, moment: datetime) -> None:
        self.clock.set(moment)
        self.settle()

    def runs(self, job_id: str) -> list[str]:
        return [fire.isoformat() for job, fire in self.submitted if job == job_id]

    def misses(self, job_id: str) -> list[tuple[str, MissReason]]:
        return [(fire.isoformat(), why) for job, fire, why in self.missed if job == job_id]


START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # a Wednesday


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness(ManualClock(START))
    h.scheduler.start()
    h.settle()
    yield h
    assert h.scheduler.stop(timeout=WAIT)


def utc(hour: int, minute: int = 0, second: int = 0, day: int = 1) -> str:
    return datetime(2024, 5, day, hour, minute, second, tzinfo=UTC).isoformat()


def test_fires_at_the_due_time_and_not_before(harness: Harness) -> None:
    harness.scheduler.add("report", CronSchedule("*/5 * * * *", "UTC"))
    harness.settle()
    harness.advance(299)
    assert harness.submitted == []
    harness.advance(1)
    assert harness.runs("report") == [utc(12, 5)]
    assert harness.submit_threads == {"threadloom-scheduler"}
    harness.advance(300)
    assert harness.runs("report") == [utc(12, 5), utc(12, 10)]
    assert harness.missed == []


def test_submit_gets_the_fire_time_in_the_schedule_zone(harness: Harness) -> None:
    harness.scheduler.add("ny", CronSchedule("0 9 * * *", NY))
    harness.set(datetime(2024, 5, 1, 13, 0, tzinfo=UTC))
    ((job_id, fire),) = harness.submitted
    assert job_id == "ny"
    assert fire.tzinfo is NY
    assert fire.isoformat() == "2024-05-01T09:00:00-04:00"


def test_adding_an_earlier_schedule_wakes_the_sleeping_thread(harness: Harness) -> None:
    harness.scheduler.add("yearly", CronSchedule("@yearly", "UTC"))
    harness.settle()  # asleep until next new year
    harness.scheduler.add("soon", CronSchedule("1 12 * * *", "UTC"))
    harness.settle()
    # The manual clock only wakes a sleeper whose deadline passes: "soon" fires
    # only if adding it woke the thread to shorten its sleep.
    harness.advance(60)
    assert harness.runs("soon") == [utc(12, 1)]


def test_list_is_a_deprecated_alias_of_list_schedules(harness: Harness) -> None:
    harness.scheduler.add("a", CronSchedule("30 12 * * *", "UTC"))
    with pytest.warns(DeprecationWarning, match="list_schedules"):
        infos = harness.scheduler.list()
    assert infos == harness.scheduler.list_schedules()
    assert [i.job_id for i in infos] == ["a"]


def test_list_get_pause_resume_remove(harness: Harness) -> None:
    scheduler = harness.scheduler
    scheduler.add("b", CronSchedule("0 13 * * *", "UTC"))
    scheduler.add("a", CronSchedule("30 12 * * *", "UTC"))
    scheduler.add("c", IntervalSchedule(every(10).minutes, "UTC"))
    infos = scheduler.list_schedules()
    assert [
        (i.job_id, i.next_fire_time.isoformat() if i.next_fire_time else None) for i in infos
    ] == [
        ("c", utc(12, 10)),
        ("a", utc(12, 30)),
        ("b", utc(13)),
    ]
    # The interval was anchored when added.
    assert isinstance(infos[0].schedule, IntervalSchedule)
    assert infos[0].schedule.anchor == START
    scheduler.pause("a")
    assert scheduler.get("a").paused and scheduler.get("a").next_fire_time is None
    harness.set(datetime(2024, 5, 1, 12, 45, tzinfo=UTC))
    assert harness.runs("a") == []
    assert harness.misses("a") == []  # paused runs are neither run nor reported
    scheduler.resume("a")
    assert scheduler.get("a").next_fire_time == datetime(2024, 5, 2, 12, 30, tzinfo=UTC)
    scheduler.remove("b")
    harness.set(datetime(2024, 5, 1, 13, 0, tzinfo=UTC))
    assert harness.runs("b") == []
    assert [i.job_id for i in scheduler.list_schedules()] == ["c", "a"]
    assert len(scheduler) == 2
    with pytest.raises(KeyError, match="'b'"):
        scheduler.remove("b")
    with pytest.raises(KeyError, match="'zzz'"):
        scheduler.pause("zzz")


def test_add_refuses_duplicates_unless_replacing(harness: Harness) -> None:
    scheduler = harness.scheduler
    scheduler.add("job", "*/5 * * * *")
    with pytest.raises(ValueError, match="already has a schedule"):
        scheduler.add("job", "*/10 * * * *")
    scheduler.add("job", CronSchedule("*/10 * * * *", "UTC"), replace=True)
    harness.set(START + timedelta(minutes=5))
    assert harness.runs("job") == []
    harness.advance(300)
    assert harness.runs("job") == [utc(12, 10)]
    with pytest.raises(ValueError, match="job_id"):
        scheduler.add("", "* * * * *")
    with pytest.raises(TypeError, match="job_id"):
        scheduler.add(7, "* * * * *")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cron string"):
        scheduler.add("x", 42)


def test_add_refuses_a_schedule_that_never_fires_from_now(harness: Harness) -> None:
    # Every 7 days from a Wednesday anchor, allowed only on Mondays: never.
    weekly = IntervalSchedule(every(7).days, "UTC", windows="MON")
    with pytest.raises(ValueError, match="never fires"):
        harness.scheduler.add("never", weekly)


def test_one_off_fires_once_and_just_missed_ones_fire_at_once(harness: Harness) -> None:
    scheduler = harness.scheduler
    scheduler.add("later", OneOffSchedule(START + timedelta(hours=1)))
    scheduler.add("just-now", OneOffSchedule(START - timedelta(seconds=5), misfire_grace_time=30))
    harness.settle()
    assert harness.runs("just-now") == [utc(11, 59, 55)]
    # Without a grace time a run is never too late: a past one-off runs at once.
    scheduler.add("no-grace", OneOffSchedule(datetime(2024, 1, 1, tzinfo=UTC)))
    harness.settle()
    assert harness.runs("no-grace") == [datetime(2024, 1, 1, tzinfo=UTC).isoformat()]
    with pytest.raises(ValueError, match="beyond its misfire_grace_time"):
        scheduler.add(
            "too-late", OneOffSchedule(START - timedelta(minutes=5), misfire_grace_time=30)
        )
    harness.advance(3600)
    harness.advance(86400)
    assert harness.runs("later") == [utc(13)]
    assert scheduler.get("later").next_fire_time is None


def test_misfire_grace_time(harness: Harness) -> None:
    scheduler = harness.scheduler
    scheduler.add("strict", CronSchedule("5 12 * * *", "UTC", misfire_grace_time=10))
    scheduler.add("lenient", CronSchedule("5 12 * * *", "UTC", misfire_grace_time=60))
    harness.settle()
    harness.advance(300 + 30)  # 30 s late
    assert harness.runs("strict") == []
    assert harness.misses("strict") == [(utc(12, 5), MissReason.MISFIRE)]
    assert harness.runs("lenient") == [utc(12, 5)]


@pytest.mark.parametrize(
    ("coalesce", "runs", "coalesced"),
    [
        ("latest", [utc(12, 5)], [utc(12, 1), utc(12, 2), utc(12, 3), utc(12, 4)]),
        ("earliest", [utc(12, 1)], [utc(12, 2), utc(12, 3), utc(12, 4), utc(12, 5)]),
        ("all", [utc(12, m) for m in range(1, 6)], []),
    ],
)
def test_coalescing_a_backlog(
    harness: Harness, coalesce: str, runs: list[str], coalesced: list[str]
) -> None:
    harness.scheduler.add(
        "job",
        CronSchedule("* * * * *", "UTC", coalesce=coalesce, max_instances=10),  # type: ignore[arg-type]
    )
    harness.settle()
    harness.advance(5 * 60 + 10)  # the process was asleep: five fire times are due
    assert harness.runs("job") == runs
    assert harness.misses("job") == [(fire, MissReason.COALESCED) for fire in coalesced]


def test_grace_time_is_applied_before_coalescing(harness: Harness) -> None:
    harness.scheduler.add(
        "job", CronSchedule("* * * * *", "UTC", coalesce="earliest", misfire_grace_time=150)
    )
    harness.settle()
    harness.advance(5 * 60 + 10)  # now 12:05:10; 12:01 and 12:02 are past the grace time
    assert harness.runs("job") == [utc(12, 3)]
    assert harness.misses("job") == [
        (utc(12, 1), MissReason.MISFIRE),
        (utc(12, 2), MissReason.MISFIRE),
        (utc(12, 4), MissReason.COALESCED),
        (utc(12, 5), MissReason.COALESCED),
    ]


def test_max_instances_skip(harness: Harness) -> None:
    harness.finish_at_once = False
    scheduler = harness.scheduler
    scheduler.add("job", CronSchedule("* * * * *", "UTC"))
    harness.settle()
    harness.advance(60)
    harness.advance(60)  # the 12:01 run is still going
    assert harness.runs("job") == [utc(12, 1)]
    assert harness.misses("job") == [(utc(12, 2), MissReason.MAX_INSTANCES)]
    assert scheduler.get("job").running == 1
    scheduler.run_finished("job")
    harness.advance(60)
    assert harness.runs("job") == [utc(12, 1), utc(12, 3)]
    scheduler.run_finished("job")
    with pytest.raises(ValueError, match="without a run"):
        scheduler.run_finished("job")


def test_max_instances_queue_runs_when_an_instance_frees(harness: Harness) -> None:
    harness.finish_at_once = False
    scheduler = harness.scheduler
    scheduler.add(
        "job", CronSchedule("* * * * *", "UTC", max_instances=2, on_max_instances="queue")
    )
    harness.settle()
    for _ in range(3):
        harness.advance(60)
    assert harness.runs("job") == [utc(12, 1), utc(12, 2)]
    assert scheduler.get("job").queued == 1
    # Reported from a worker thread; the scheduler thread submits the queued run
    # at once, with its nominal fire time, without waiting for the clock.
    finisher = threading.Thread(target=scheduler.run_finished, args=("job",))
    finisher.start()
    finisher.join(WAIT)
    harness.settle()
    assert harness.runs("job") == [utc(12, 1), utc(12, 2), utc(12, 3)]
    assert harness.submit_threads == {"threadloom-scheduler"}
    assert scheduler.get("job").queued == 0
    assert harness.missed == []


def test_queue_is_coalesced_to_the_latest(harness: Harness) -> None:
    harness.finish_at_once = False
    scheduler = harness.scheduler
    scheduler.add("job", CronSchedule("* * * * *", "UTC", on_max_instances="queue"))
    harness.settle()
    for _ in range(4):
        harness.advance(60)
    assert harness.runs("job") == [utc(12, 1)]
    assert harness.misses("job") == [
        (utc(12, 2), MissReason.COALESCED),
        (utc(12, 3), MissReason.COALESCED),
    ]
    assert scheduler.get("job").queued == 1
    scheduler.run_finished("job")
    harness.settle()
    assert harness.runs("job") == [utc(12, 1), utc(12, 4)]


def test_queued_run_past_its_grace_time_is_missed(harness: Harness) -> None:
    harness.finish_at_once = False
    scheduler = harness.scheduler
    scheduler.add(
        "job",
        CronSchedule("* * * * *", "UTC", on_max_instances="queue", misfire_grace_time=30),
    )
    harness.settle()
    harness.advance(60)
    harness.advance(60)
    harness.advance(40)  # 12:02:40; the queued 12:02 run is 40 s late when it could start
    scheduler.run_finished("job")
    harness.settle()
    assert harness.runs("job") == [utc(12, 1)]
    assert harness.misses("job") == [(utc(12, 2), MissReason.MISFIRE)]


def test_removing_a_job_reports_its_queued_runs_and_keeps_counting_its_running_ones(
    harness: Harness,
) -> None:
    harness.finish_at_once = False
    scheduler = harness.scheduler
    schedule = CronSchedule("* * * * *", "UTC", on_max_instances="queue")
    scheduler.add("job", schedule)
    harness.settle()
    harness.advance(60)
    harness.advance(60)
    scheduler.remove("job")
    harness.settle()
    assert harness.misses("job") == [(utc(12, 2), MissReason.REMOVED)]
    # The 12:01 run is still going: re-added, the job is still at max_instances.
    scheduler.add("job", schedule.replace(on_max_instances="skip"))
    harness.advance(60)
    assert harness.misses("job")[-1] == (utc(12, 3), MissReason.MAX_INSTANCES)
    scheduler.run_finished("job")
    harness.advance(60)
    assert harness.runs("job") == [utc(12, 1), utc(12, 4)]


def test_a_failing_submit_is_reported_and_the_scheduler_goes_on(harness: Harness) -> None:
    harness.fail_submit.add("bad")
    scheduler = harness.scheduler
    scheduler.add("bad", CronSchedule("* * * * *", "UTC"))
    scheduler.add("good", CronSchedule("* * * * *", "UTC"))
    harness.settle()
    harness.advance(60)
    assert harness.misses("bad") == [(utc(12, 1), MissReason.SUBMIT_FAILED)]
    assert scheduler.get("bad").running == 0  # the failed run does not hold an instance
    harness.fail_submit.clear()
    harness.advance(60)
    assert harness.runs("bad") == [utc(12, 2)]
    assert harness.runs("good") == [utc(12, 1), utc(12, 2)]


def test_a_failing_on_missed_callback_does_not_stop_the_scheduler() -> None:
    clock = ManualClock(START)
    submitted: list[str] = []

    def on_missed(job_id: str, fire: datetime, reason: MissReason) -> None:
        raise RuntimeError("history is down")

    scheduler = Scheduler(
        lambda job, fire: submitted.append(fire.isoformat()), clock, on_missed=on_missed
    )
    scheduler.start()
    try:
        scheduler.add("job", CronSchedule("* * * * *", "UTC", misfire_grace_time=1))
        assert clock.wait_for_sleepers(timeout=WAIT)
        clock.advance(90)  # 12:01 missed by 30 s -> on_missed raises
        assert clock.wait_for_sleepers(timeout=WAIT)
        clock.advance(30)
        assert clock.wait_for_sleepers(timeout=WAIT)
        assert submitted == [utc(12, 2)]
    finally:
        assert scheduler.stop(timeout=WAIT)


class FixedJitter(random.Random):
    """Injects a known jitter."""

    def __init__(self, seconds: float) -> None:
        super().__init__(0)
        self.seconds = seconds

    def uniform(self, a: float, b: float) -> float:
        assert (a, b) == (0.0, 45.0)
        return self.seconds


def test_jitter_delays_the_run_but_keeps_its_fire_time() -> None:
    h = Harness(ManualClock(START), rng=FixedJitter(30.0))
    h.scheduler.start()
    try:
        h.scheduler.add("job", CronSchedule("5 12 * * *", "UTC", jitter=45, misfire_grace_time=5))
        h.settle()
        h.advance(300 + 29)
        assert h.submitted == []
        h.advance(1)
        # 30 s after the fire time but within the 5 s grace: jitter is not lateness.
        assert h.runs("job") == [utc(12, 5)]
    finally:
        assert h.scheduler.stop(timeout=WAIT)


def test_jitter_never_pushes_a_run_into_a_blackout() -> None:
    h = Harness(ManualClock(START), rng=FixedJitter(30.0))
    h.scheduler.start()
    try:
        h.scheduler.add(
            "job", CronSchedule("5 12 * * *", "UTC", jitter=45, blackouts="12:05:10-13:00")
        )
        h.settle()
        h.advance(300)
        assert h.runs("job") == [utc(12, 5)]
    finally:
        assert h.scheduler.stop(timeout=WAIT)


def test_windows_and_deferred_blackouts_in_the_scheduler(harness: Harness) -> None:
    harness.scheduler.add(
        "job",
        CronSchedule("*/15 * * * *", "UTC", blackouts="12:20-13:05", blackout_policy="defer"),
    )
    harness.scheduler.add("office", CronSchedule("0 * * * *", "UTC", windows="13:00-15:00"))
    harness.settle()
    run_until(harness, datetime(2024, 5, 1, 16, 0, tzinfo=UTC))
    assert harness.runs("job") == [
        utc(12, 15),
        utc(13, 5),  # 12:30, 12:45 and 13:00 deferred to the blackout's end: one run
        utc(13, 15),
        utc(13, 30),
        utc(13, 45),
        utc(14),
        utc(14, 15),
        utc(14, 30),
        utc(14, 45),
        utc(15),
        utc(15, 15),
        utc(15, 30),
        utc(15, 45),
        utc(16),
    ]
    assert harness.runs("office") == [utc(13), utc(14)]


def test_a_batch_of_due_runs_still_respects_max_instances(harness: Harness) -> None:
    harness.scheduler.add("job", CronSchedule("* * * * *", "UTC", coalesce="all"))
    harness.settle()
    harness.advance(3 * 60)  # three runs due at once, one instance allowed
    assert harness.runs("job") == [utc(12, 1)]
    assert harness.misses("job") == [
        (utc(12, 2), MissReason.MAX_INSTANCES),
        (utc(12, 3), MissReason.MAX_INSTANCES),
    ]


def run_until(h: Harness, end: datetime) -> None:
    """Step the clock to each next due time (no backlog) up to *end*."""
    while True:
        infos = h.scheduler.list_schedules()
        upcoming = [i.next_fire_time for i in infos if i.next_fire_time is not None]
        nearest = min(upcoming, default=None)
        if nearest is None or nearest > end:
            h.set(end)
            return
        h.set(nearest)


def test_scheduler_across_autumn_dst_runs_fixed_times_once_and_wildcards_twice() -> None:
    h = Harness(ManualClock(datetime(2024, 11, 2, 12, 0, tzinfo=UTC)))
    h.scheduler.start()
    try:
        h.scheduler.add("daily", CronSchedule("30 1 * * *", NY))
        h.scheduler.add("half-hourly", CronSchedule("*/30 1 * * *", NY))
        h.settle()
        run_until(h, datetime(2024, 11, 4, 12, 0, tzinfo=UTC))
        assert h.runs("daily") == ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]
        assert h.runs("half-hourly") == [
            "2024-11-03T01:00:00-04:00",
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T01:30:00-05:00",
            "2024-11-04T01:00:00-05:00",
            "2024-11-04T01:30:00-05:00",
        ]
        assert h.missed == []
    finally:
        assert h.scheduler.stop(timeout=WAIT)


def test_scheduler_across_spring_dst_runs_gap_jobs_once_after_the_gap() -> None:
    h = Harness(ManualClock(datetime(2024, 3, 30, 12, 0, tzinfo=UTC)))
    h.scheduler.start()
    try:
        h.scheduler.add("gap", CronSchedule("0,30 1 * * *", LONDON))
        h.scheduler.add("every-day", IntervalSchedule(every().day.at("01:15"), LONDON))
        h.settle()
        run_until(h, datetime(2024, 4, 1, 12, 0, tzinfo=UTC))
        assert h.runs("gap") == [
            "2024-03-31T02:00:00+01:00",
            "2024-04-01T01:00:00+01:00",
            "2024-04-01T01:30:00+01:00",
        ]
        assert h.runs("every-day") == ["2024-03-31T02:00:00+01:00", "2024-04-01T01:15:00+01:00"]
    finally:
        assert h.scheduler.stop(timeout=WAIT)


def _long_run_schedules() -> dict[str, Schedule]:
    policies = {"coalesce": "all", "max_instances": 10**6}
    schedules: dict[str, Schedule] = {}
    crons = ["*/7 * * * *", "0 */3 * * *", "15,45 * * * *", "30 1 * * *", "0 2 * * 0", "@hourly"]
    for index in range(36):
        tz = (NY, LONDON, ZoneInfo("UTC"))[index % 3]
        kind = index % 4
        if kind == 0:
            schedules[f"cron-{index}"] = CronSchedule(crons[index % 6], tz, **policies)  # type: ignore[arg-type]
        elif kind == 1:
            schedules[f"every-{index}"] = IntervalSchedule(every(5 + index).minutes, tz, **policies)  # type: ignore[arg-type]
        elif kind == 2:
            schedules[f"daily-{index}"] = IntervalSchedule(every().day.at("01:30"), tz, **policies)  # type: ignore[arg-type]
        else:
            schedules[f"windowed-{index}"] = CronSchedule(
                "*/10 * * * *",
                tz,
                windows="MON-FRI 09:00-17:00",
                blackouts="12:00-13:00",
                **policies,  # type: ignore[arg-type]
            )
    return schedules


@pytest.mark.parametrize("seed", [1, 2])
def test_long_run_loses_and_duplicates_no_run(seed: int) -> None:
    """Many schedules, a week of random clock jumps across a DST shift: every fire
    time up to the end is submitted exactly once, in order."""
    start = datetime(2024, 10, 24, 0, 0, tzinfo=UTC)
    end = datetime(2024, 11, 5, 0, 0, tzinfo=UTC)
    h = Harness(ManualClock(start))
    h.scheduler.start()
    try:
        schedules = _long_run_schedules()
        for job_id, schedule in schedules.items():
            h.scheduler.add(job_id, schedule)
        h.settle()
        jumps = random.Random(seed)
        while h.clock.now() < end:
            h.advance(jumps.choice([1, 59, 60, 61, 300, 3599, 7200, 40000]))
        now = h.clock.now()
        for job_id in schedules:
            bound = h.scheduler.get(job_id).schedule
            expected = list(
                _take_until(bound.iter_fire_times(start), now + timedelta(microseconds=1))
            )
            assert h.runs(job_id) == iso(expected), job_id
            assert expected, job_id
        assert h.missed == []
    finally:
        assert h.scheduler.stop(timeout=WAIT)


def test_stop_keeps_schedules_and_start_resumes() -> None:
    h = Harness(ManualClock(START))
    scheduler = h.scheduler
    scheduler.start()
    with pytest.raises(RuntimeError, match="already running"):
        scheduler.start()
    scheduler.add("job", CronSchedule("* * * * *", "UTC"))
    h.settle()
    assert scheduler.stop(timeout=WAIT)
    assert scheduler.stop(timeout=WAIT)  # idempotent
    h.clock.advance(60)
    assert h.submitted == []
    scheduler.start()
    h.settle()
    assert h.runs("job") == [utc(12, 1)]
    assert scheduler.stop(timeout=WAIT)


def test_scheduler_on_the_real_clock() -> None:
    fired = threading.Event()
    fire_times: list[datetime] = []

    def submit(job_id: str, fire_time: datetime) -> None:
        fire_times.append(fire_time)
        fired.set()

    with Scheduler(submit) as scheduler:
        now = datetime.now(UTC)
        scheduler.add("soon", OneOffSchedule(now + timedelta(milliseconds=50)))
        assert fired.wait(WAIT)
    assert fire_times == [(now + timedelta(milliseconds=50)).astimezone(UTC)]


def test_scheduler_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="submit"):
        Scheduler(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_missed"):
        Scheduler(print, on_missed=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock"):
        Scheduler(print, clock=object())  # type: ignore[arg-type]
