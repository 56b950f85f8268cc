"""One-off schedules: a single fire time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from .base import Schedule, SchedulePolicies
from .zones import ONE_MICROSECOND, resolve_tz, to_utc

if TYPE_CHECKING:
    from typing_extensions import Unpack


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
        resolved = at.tzinfo if aware and tz is None else resolve_tz(tz)
        assert resolved is not None
        self._at_utc = to_utc(at, resolved, "at")
        self.at = self._at_utc.astimezone(resolved)
        super().__init__(resolved, dict(policies))

    def _iter_raw(self, after: datetime) -> Iterator[datetime]:
        if self._at_utc > after:
            yield self._at_utc

    def fire_times_from(self, now: datetime) -> Iterator[datetime]:
        if self._at_utc > now:
            return self.iter_utc(now)
        if self.misfire_grace_time is not None and self.is_misfire(self._at_utc, now):
            raise ValueError(
                f"one-off time {self.at.isoformat()} is {now - self._at_utc} in the past, "
                f"beyond its misfire_grace_time of {self.misfire_grace_time}s"
            )
        # Just passed (within the grace time): due now.
        return self.iter_utc(self._at_utc - ONE_MICROSECOND)

    def __repr__(self) -> str:
        return f"OneOffSchedule({self.at.isoformat()!r}, {self._policy_repr()})"
