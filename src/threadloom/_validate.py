"""The one set of argument checks, shared by the executor, the pool and the task manager.

Each returns the value normalised (an ``int`` priority, ``float`` seconds) or
raises: :class:`TypeError` for a value of the wrong type, :class:`ValueError`
for a value of the right type that is out of range or unknown, with a message
that names the argument.  The same bad argument thus fails the same way
wherever it is given.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._types import TaskPriority
from .core import core

if TYPE_CHECKING:
    from .retry import RetryPolicy

__all__ = [
    "PRIORITY_NAMES",
    "check_count",
    "check_name",
    "check_percent",
    "check_priority",
    "check_retry",
    "check_seconds",
    "check_timeout",
]

#: The names a priority may be given by, in any case: ``"high"``, ``"LOW"``.
PRIORITY_NAMES: dict[str, TaskPriority] = {p.name.lower(): p for p in TaskPriority}
_NAMES_TEXT = ", ".join(PRIORITY_NAMES)
_INT32 = 2**31


def check_priority(priority: object) -> int:
    """Return *priority* as an int.

    Accepts any ``int`` that fits in 32 bits (a :class:`TaskPriority` is one)
    and the names of :class:`TaskPriority` in any case (``"high"``,
    ``"CRITICAL"``), as the workflow file does.

    Raises:
        TypeError: neither an int nor a str (a bool is not a priority).
        ValueError: an unknown name, or an int out of the 32-bit range.
    """
    if isinstance(priority, int) and not isinstance(priority, bool):
        if not -_INT32 <= priority < _INT32:
            raise ValueError(f"priority {priority} is out of range (must fit in 32 bits)")
        return int(priority)
    if isinstance(priority, str):
        found = PRIORITY_NAMES.get(priority.lower())
        if found is None:
            raise ValueError(f"unknown priority {priority!r}; use {_NAMES_TEXT} or an integer")
        return int(found)
    raise TypeError(
        f"priority must be one of {_NAMES_TEXT} or an integer, "
        f"not {type(priority).__name__} ({priority!r})"
    )


def check_seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    """Return *value* as float seconds, or raise naming *name*.

    The core's check (the same text in both cores): nothing above
    ``threading.TIMEOUT_MAX`` reaches a timer or a wait.

    Raises:
        TypeError: not a number (a bool is not one).
        ValueError: negative (or zero without *allow_zero*), not finite, or
            longer than a year.
    """
    seconds: float = core.check_seconds(name, value, allow_zero)
    return seconds


def check_timeout(timeout: object) -> float | None:
    """A task deadline in seconds (None: none), validated the one way."""
    if timeout is None:
        return None
    return float(core.check_seconds("timeout", timeout, False))


def check_percent(name: str, value: object, *, margin: bool = False) -> float:
    """Return *value* as a float percentage, or raise naming *name*.

    A threshold is in (0, 100]; with *margin*, a margin (percentage points
    below a threshold) is in [0, 100).

    Raises:
        TypeError: not a number (a bool is not one).
        ValueError: out of that range, or not finite.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if margin:
        if not (math.isfinite(value) and 0 <= value < 100):
            raise ValueError(f"{name} must be in [0, 100), not {value!r}")
    elif not (math.isfinite(value) and 0 < value <= 100):
        raise ValueError(f"{name} must be a percentage in (0, 100], not {value!r}")
    return float(value)


def check_count(name: str, value: object, minimum: int = 0) -> int:
    """Return *value*, an int >= *minimum* (a count: ``max_retries``), or raise naming *name*.

    Raises:
        TypeError: not an int (a bool is not one).
        ValueError: below *minimum*.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return value


def check_retry(retry: object) -> RetryPolicy | None:
    """A retry policy or None.

    Raises:
        TypeError: anything else.
    """
    from .retry import RetryPolicy

    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy or None, not {type(retry).__name__}")
    return retry


def check_name(name: object) -> str | None:
    """A task name or None.

    Raises:
        TypeError: anything else.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {type(name).__name__}")
    return name
