"""Reading an ``/api`` request: its query parameters, and :class:`ApiError`, the refusal."""

from __future__ import annotations

import math

from starlette.requests import Request

from .._types import TaskStatus


class ApiError(Exception):
    """A refused ``/api`` request: :attr:`status` is its HTTP status.

    Internal to the app: raised by its endpoints and turned into a JSON error
    response by ``DashboardApp._json`` (``_app``), so it never reaches a caller.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, not {raw!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, not {value}")
    return value


def float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a number, not {raw!r}") from None
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be finite")
    return value


def statuses(raw: str | None) -> list[TaskStatus] | None:
    if not raw:
        return None
    out = []
    for part in raw.split(","):
        try:
            out.append(TaskStatus(part.strip()))
        except ValueError:
            known = ", ".join(s.value for s in TaskStatus)
            raise ApiError(400, f"unknown status {part!r} (use {known})") from None
    return out
