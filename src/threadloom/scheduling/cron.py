"""Cron schedules, computed by cronsim (Debian cron semantics)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

# Cron is computed by cronsim rather than croniter.  cronsim follows Debian cron
# where it matters to us: daylight-saving gaps and repeats (see the package
# docstring; croniter has a long record of DST bugs and instead offers
# non-standard extras we do not want, such as Jenkins "H" and a year field); the
# day-of-month/day-of-week OR rule with Debian's star exception; strict parsing
# whose errors name the bad field; and zoneinfo without pytz.  It is one small
# pure-Python module.  croniter was also declared abandoned by its maintainer in
# 2025 before being adopted by pallets-eco, a risk for a core dependency.
from cronsim import CronSim, CronSimError

from .base import Schedule, SchedulePolicies
from .windows import Period
from .zones import UTC, resolve_tz

if TYPE_CHECKING:
    from typing_extensions import Unpack

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
    either fires (Debian cron).  DST: see the docstring of threadloom.scheduling.

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
        super().__init__(resolve_tz(tz), dict(policies))

    def _check_can_fire(self) -> None:
        # Cron and weekly windows repeat, so a probe from any moment tells;
        # absolute periods do not, and are checked when the scheduler adds it.
        if any(isinstance(span, Period) for span in self.windows + self.blackouts):
            return
        if next(self.iter_utc(datetime(2000, 1, 1, tzinfo=UTC)), None) is None:
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
