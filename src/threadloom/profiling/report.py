"""What a profile says: the frozen report records, and their text form."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Distribution:
    """Count, mean and percentiles of one measure (seconds, or bytes for memory)."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    def to_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "max": self.max,
        }


@dataclass(frozen=True, slots=True)
class FunctionCost:
    """One function's share of a name's samples: ``self_share`` with it on top of
    the stack, ``total_share`` with it anywhere on the stack."""

    function: str
    file: str
    line: int
    self_share: float
    total_share: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "self_share": self.self_share,
            "total_share": self.total_share,
            "samples": self.samples,
        }


@dataclass(slots=True)
class CallNode:
    """A node of a sampled call tree: ``total`` samples through it, ``self`` in it."""

    function: str
    file: str
    line: int
    total: int = 0
    self: int = 0
    children: dict[tuple[str, str, int], CallNode] = field(default_factory=dict)

    def heaviest_path(self) -> list[CallNode]:
        """From this node down, always into the child with the most samples."""
        path = [self]
        node = self
        while node.children:
            node = max(node.children.values(), key=lambda child: child.total)
            path.append(node)
        return path

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "total": self.total,
            "self": self.self,
            "children": [
                child.to_dict() for child in sorted(self.children.values(), key=lambda c: -c.total)
            ],
        }


@dataclass(frozen=True, slots=True)
class NameProfile:
    """Everything measured about the tasks of one name.

    ``kind`` is ``"cpu"`` (Python holding the GIL most of its wall time),
    ``"io"`` (mostly off the CPU: waiting on IO or locks) or ``"mixed"``.
    ``cpu_share`` is the share of wall time on a CPU (``time.thread_time``),
    ``runnable_share`` the share spent ready to run but waiting for a core
    (the machine's other work; sampled from Linux's per-thread scheduler
    statistics, 0 elsewhere), ``off_cpu_share`` the rest: waiting on IO,
    locks or the GIL.
    """

    name: str
    kind: str
    tasks: int
    attempts: int
    failed_attempts: int
    retried_tasks: int
    deadline_missed: int
    timeout: float | None
    wall: Distribution
    cpu: Distribution
    wait: Distribution
    cpu_share: float
    runnable_share: float
    off_cpu_share: float
    arrival_rate: float
    memory_growth: Distribution | None
    memory_grew_share: float
    samples: int
    top_functions: tuple[FunctionCost, ...]
    errors: tuple[tuple[str, int], ...]
    priorities: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "tasks": self.tasks,
            "attempts": self.attempts,
            "failed_attempts": self.failed_attempts,
            "retried_tasks": self.retried_tasks,
            "deadline_missed": self.deadline_missed,
            "timeout": self.timeout,
            "wall": self.wall.to_dict(),
            "cpu": self.cpu.to_dict(),
            "wait": self.wait.to_dict(),
            "cpu_share": self.cpu_share,
            "runnable_share": self.runnable_share,
            "off_cpu_share": self.off_cpu_share,
            "arrival_rate": self.arrival_rate,
            "memory_growth": None if self.memory_growth is None else self.memory_growth.to_dict(),
            "memory_grew_share": self.memory_grew_share,
            "samples": self.samples,
            "top_functions": [f.to_dict() for f in self.top_functions],
            "errors": dict(self.errors),
            "priorities": list(self.priorities),
        }


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One piece of advice: what to change (``advice``), why (``reason``), and
    the figures both rest on (``numbers``).

    ``kind`` is one of ``"workers"``, ``"gil"``, ``"retries"``,
    ``"starvation"``, ``"deadlines"``, ``"memory"``; ``subject`` the task name
    (or ``"priority N"``).
    """

    kind: str
    subject: str
    advice: str
    reason: str
    numbers: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "advice": self.advice,
            "reason": self.reason,
            "numbers": dict(self.numbers),
        }


@dataclass(frozen=True, slots=True)
class ProfileReport:
    """A profile's summary: per-name figures and the recommendations.

    ``gil_load`` is the task CPU time per second of profile (about 1.0 when
    Python code keeps the GIL busy); ``concurrency`` the mean number of tasks
    running at once; ``coverage`` the share of the pools' tasks that were
    timed (below 1 when more than ``max_task_rate`` per second came: counts
    are then of the timed tasks, and rates are scaled up by it).
    """

    duration: float
    sample_rate: float
    samples: int
    max_workers: int | None
    cores: int
    gil_load: float
    concurrency: float
    names: tuple[NameProfile, ...]
    recommendations: tuple[Recommendation, ...]
    coverage: float = 1.0

    def name(self, name: str) -> NameProfile:
        """The profile of task name *name*.

        Raises:
            KeyError: no task of that name was profiled.
        """
        for profile in self.names:
            if profile.name == name:
                return profile
        raise KeyError(f"no profiled task named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "samples": self.samples,
            "max_workers": self.max_workers,
            "cores": self.cores,
            "gil_load": self.gil_load,
            "concurrency": self.concurrency,
            "coverage": self.coverage,
            "names": [n.to_dict() for n in self.names],
            "recommendations": [r.to_dict() for r in self.recommendations],
        }


def format_seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.1f} ms"


def format_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def format_report(report: ProfileReport, *, top: int = 3, max_names: int = 15) -> list[str]:
    """The report as plain text lines (the CLI prints these).

    The names that took the most worker time come first; beyond *max_names*
    (and beyond as many recommendations) a line says how many were left out.
    """
    coverage = "" if report.coverage >= 1 else f"; {report.coverage:.0%} of the tasks timed"
    lines = [
        f"profiled {format_seconds(report.duration)}: {len(report.names)} task names, "
        f"{report.samples} stack samples at {report.sample_rate:g} Hz; task CPU "
        f"{report.gil_load:.2f} cores of {report.cores}, "
        f"{report.concurrency:.1f} tasks running on average{coverage}",
        "",
        f"{'name':<28} {'kind':<6} {'tasks':>6} {'tries':>6} {'wall p50':>9} {'p90':>9} "
        f"{'cpu %':>6} {'wait p50':>9} {'p90':>9}",
    ]
    ranked = sorted(report.names, key=lambda p: -(p.wall.mean * p.wall.count))
    for p in ranked[:max_names]:
        name = p.name if len(p.name) <= 28 else p.name[:27] + "~"
        lines.append(
            f"{name:<28} {p.kind:<6} {p.tasks:>6} {p.attempts:>6} "
            f"{format_seconds(p.wall.p50):>9} {format_seconds(p.wall.p90):>9} {p.cpu_share:>6.0%} "
            f"{format_seconds(p.wait.p50):>9} {format_seconds(p.wait.p90):>9}"
        )
    if len(ranked) > max_names:
        lines.append(
            f"... and {len(ranked) - max_names} more names (--json for all; "
            f"--profile-by function groups them by the function they call)"
        )
    for p in ranked[:max_names]:
        if not p.top_functions:
            continue
        lines.append("")
        lines.append(f"top functions of {p.name!r} (self / total share of samples):")
        for f in p.top_functions[:top]:
            where = f"{os.path.basename(f.file)}:{f.line}"
            lines.append(f"  {f.self_share:6.1%} {f.total_share:6.1%}  {f.function}  ({where})")
    lines.append("")
    if report.recommendations:
        lines.append("recommendations:")
        for r in report.recommendations[:max_names]:
            lines.append(f"- {r.subject}: {r.advice}")
            lines.append(f"    because {r.reason}")
        if len(report.recommendations) > max_names:
            lines.append(f"... and {len(report.recommendations) - max_names} more (--json for all)")
    else:
        lines.append("recommendations: none (nothing measured calls for a change)")
    return lines


# -- recorded profiles ----------------------------------------------------------------
