"""Records as JSON: the pool's figures, errors, schedules, history runs and executions."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from .._types import TaskPriority


def finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def priority_name(priority: int) -> str:
    try:
        return TaskPriority(priority).name
    except ValueError:
        return str(priority)


def error_text(error: BaseException | None) -> tuple[str, str]:
    if error is None:
        return "", ""
    return type(error).__qualname__, str(error)


def explain(schedule: Any) -> str:
    expr = getattr(schedule, "expr", None)
    if not isinstance(expr, str):
        return ""
    try:
        from cronsim import CronSim

        return str(CronSim(expr, datetime.now(timezone.utc)).explain())
    except Exception:
        return ""


def run_json(r: Any) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "execution_id": r.execution_id,
        "task_id": r.task_id,
        "task_name": r.task_name,
        "status": r.status.value,
        "attempts": r.attempts,
        "queued_at": r.queued_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "duration": r.duration,
        "error_type": r.error_type or "",
        "error_message": r.error_message or "",
    }


def execution_json(r: Any) -> dict[str, Any]:
    return {
        "execution_id": r.execution_id,
        "targets": list(r.targets),
        "status": r.status.value,
        "trigger": r.trigger,
        "task_count": r.task_count,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "duration": r.duration,
        "error_type": r.error_type or "",
        "error_message": r.error_message or "",
    }
