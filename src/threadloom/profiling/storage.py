"""Profiles kept in the history file, and read back."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

from .profiler import Profiler
from .report import Distribution, FunctionCost, NameProfile, ProfileReport, Recommendation

_PROFILES_TABLE = """
CREATE TABLE IF NOT EXISTS threadloom_profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at REAL NOT NULL,
    source TEXT NOT NULL,
    report TEXT NOT NULL,
    speedscope TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class RecordedProfile:
    """A profile saved with a history file (see :func:`save_profile`)."""

    profile_id: int
    recorded_at: float
    source: str
    report: dict[str, Any]
    speedscope: dict[str, Any]


def save_profile(
    path: str | os.PathLike[str], profiler: Profiler, report: ProfileReport, source: str
) -> int | None:
    """Store *report* and the profiler's speedscope export in the history file
    *path* (its own table, beside the task runs); return the row id.

    A ``":memory:"`` history keeps nothing: returns None.
    """
    import json
    import sqlite3

    if str(path) == ":memory:":
        return None
    with sqlite3.connect(path, timeout=30.0) as conn:
        conn.execute(_PROFILES_TABLE)
        cursor = conn.execute(
            "INSERT INTO threadloom_profiles (recorded_at, source, report, speedscope) "
            "VALUES (?, ?, ?, ?)",
            (
                time.time(),
                source,
                json.dumps(report.to_dict(), allow_nan=False, default=_json_default),
                json.dumps(profiler.speedscope()),
            ),
        )
        row_id = cursor.lastrowid
    return row_id


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON: {type(value).__name__}")


def load_profiles(path: str | os.PathLike[str], limit: int = 10) -> list[RecordedProfile]:
    """The profiles stored in history file *path*, newest first (none: an empty list)."""
    import json
    import sqlite3

    if str(path) == ":memory:" or not os.path.exists(path):
        return []
    uri = "file:" + os.path.abspath(path) + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30.0)) as conn:
        try:
            rows = conn.execute(
                "SELECT id, recorded_at, source, report, speedscope FROM threadloom_profiles "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        except sqlite3.OperationalError:
            return []  # no profile was ever recorded in this file
    return [
        RecordedProfile(int(r[0]), float(r[1]), str(r[2]), json.loads(r[3]), json.loads(r[4]))
        for r in rows
    ]


def report_from_dict(data: dict[str, Any]) -> ProfileReport:
    """A :class:`ProfileReport` from its :meth:`~ProfileReport.to_dict` form (e.g. stored)."""

    def dist(value: dict[str, Any] | None) -> Distribution | None:
        if value is None:
            return None
        return Distribution(
            int(value["count"]),
            float(value["mean"]),
            float(value["p50"]),
            float(value["p90"]),
            float(value["p99"]),
            float(value["max"]),
        )

    def required(value: dict[str, Any]) -> Distribution:
        result = dist(value)
        assert result is not None
        return result

    names = tuple(
        NameProfile(
            name=n["name"],
            kind=n["kind"],
            tasks=n["tasks"],
            attempts=n["attempts"],
            failed_attempts=n["failed_attempts"],
            retried_tasks=n["retried_tasks"],
            deadline_missed=n["deadline_missed"],
            timeout=n["timeout"],
            wall=required(n["wall"]),
            cpu=required(n["cpu"]),
            wait=required(n["wait"]),
            cpu_share=n["cpu_share"],
            runnable_share=n.get("runnable_share", 0.0),
            off_cpu_share=n["off_cpu_share"],
            arrival_rate=n["arrival_rate"],
            memory_growth=dist(n["memory_growth"]),
            memory_grew_share=n["memory_grew_share"],
            samples=n["samples"],
            top_functions=tuple(FunctionCost(**f) for f in n["top_functions"]),
            errors=tuple(n["errors"].items()),
            priorities=tuple(n["priorities"]),
        )
        for n in data["names"]
    )
    return ProfileReport(
        duration=data["duration"],
        sample_rate=data["sample_rate"],
        samples=data["samples"],
        max_workers=data["max_workers"],
        cores=data["cores"],
        gil_load=data["gil_load"],
        concurrency=data["concurrency"],
        names=names,
        recommendations=tuple(Recommendation(**r) for r in data["recommendations"]),
        coverage=data.get("coverage", 1.0),
    )
