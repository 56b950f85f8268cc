"""Time zones: the local zone, and wall time to UTC across daylight-saving shifts."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    pass


UTC = timezone.utc
ONE_MICROSECOND = timedelta(microseconds=1)
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


def resolve_tz(tz: tzinfo | str | None) -> tzinfo:
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


def wall_to_utc(wall: datetime, tz: tzinfo) -> datetime:
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


def to_utc(moment: datetime, tz: tzinfo, what: str) -> datetime:
    """Aware -> UTC; naive -> read as a wall time in *tz*."""
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(moment).__name__} ({moment!r})")
    if moment.tzinfo is None or moment.utcoffset() is None:
        return wall_to_utc(moment, tz)
    return moment.astimezone(UTC)
