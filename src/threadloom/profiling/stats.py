"""Per-name figures: exact counts and sums with a bounded sample of the values
(:class:`Reservoir`), the aggregates of one task name (:class:`NameStats`),
and the :class:`NameProfile` made from them."""

from __future__ import annotations

import math
from collections import Counter

from .advice import CPU_SHARE, CPU_USER_SHARE, GIL_BUSY, IO_SHARE, cpu_demand
from .report import Distribution, FunctionCost, NameProfile

__all__ = ["NameStats", "Reservoir", "name_profile"]


class Reservoir:
    """Exact count and sum; a bounded uniform sample of the values for percentiles."""

    __slots__ = ("_rng", "count", "limit", "max", "total", "values")

    def __init__(self, limit: int) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.limit = limit
        self.values: list[float] = []
        self._rng = 0x9E3779B9

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value
        if len(self.values) < self.limit:
            self.values.append(value)
            return
        # Algorithm R with a cheap xorshift (the stdlib's random is shared state).
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        slot = x % self.count
        if slot < self.limit:
            self.values[slot] = value

    def distribution(self) -> Distribution:
        if not self.count:
            return Distribution(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        ordered = sorted(self.values)
        return Distribution(
            self.count,
            self.total / self.count,
            _quantile(ordered, 0.5),
            _quantile(ordered, 0.9),
            _quantile(ordered, 0.99),
            self.max,
        )


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class NameStats:
    __slots__ = (
        "attempts",
        "cpu",
        "deadline_missed",
        "errors",
        "failed_attempts",
        "first_submit",
        "last_submit",
        "memory",
        "memory_grew",
        "priorities",
        "retried_tasks",
        "tasks",
        "timeout",
        "wait",
        "wall",
    )

    def __init__(self, limit: int) -> None:
        self.tasks = 0
        self.attempts = 0
        self.failed_attempts = 0
        self.retried_tasks = 0
        self.deadline_missed = 0
        self.errors: Counter[str] = Counter()
        self.wall = Reservoir(limit)
        self.cpu = Reservoir(limit)
        self.wait = Reservoir(limit)
        self.memory = Reservoir(limit)
        self.memory_grew = 0
        self.first_submit = math.inf
        self.last_submit = -math.inf
        self.timeout: float | None = None
        self.priorities: Counter[int] = Counter()


def name_profile(
    name: str,
    stats: NameStats,
    top: tuple[FunctionCost, ...],
    samples: int,
    gil_load: float,
    cpu_users: float,
    coverage: float,
    runnable: float,
) -> NameProfile:
    wall = stats.wall.total
    cpu_share = stats.cpu.total / wall if wall > 0 else 0.0
    runnable = min(runnable, max(0.0, 1.0 - cpu_share))
    demand = cpu_demand(cpu_share, runnable)
    off_cpu = 1.0 - cpu_share - runnable if wall > 0 else 0.0
    # With the GIL busy (near one core of task CPU per second) and k tasks
    # running Python at once, a task that only wants the CPU gets about 1/k
    # of its wall time on it: the rest is waiting for the GIL, not for IO.
    gil_share = demand
    if gil_load >= GIL_BUSY and demand >= CPU_USER_SHARE:
        gil_share = demand * max(cpu_users, 1.0)
    if wall <= 0:
        kind = "unknown"
    elif demand >= CPU_SHARE or gil_share >= CPU_SHARE:
        kind = "cpu"
    elif 1.0 - demand >= IO_SHARE:
        kind = "io"
    else:
        kind = "mixed"
    span = stats.last_submit - stats.first_submit if stats.tasks > 1 else 0.0
    mean_wall = stats.wall.total / stats.wall.count if stats.wall.count else 0.0
    window = max(span, mean_wall, 1e-9)
    arrival = stats.tasks / window / coverage if stats.tasks else 0.0
    memory = stats.memory.distribution() if stats.memory.count else None
    return NameProfile(
        name=name,
        kind=kind,
        tasks=stats.tasks,
        attempts=stats.attempts,
        failed_attempts=stats.failed_attempts,
        retried_tasks=stats.retried_tasks,
        deadline_missed=stats.deadline_missed,
        timeout=stats.timeout,
        wall=stats.wall.distribution(),
        cpu=stats.cpu.distribution(),
        wait=stats.wait.distribution(),
        cpu_share=cpu_share,
        runnable_share=runnable,
        off_cpu_share=off_cpu,
        arrival_rate=arrival,
        memory_growth=memory,
        memory_grew_share=stats.memory_grew / stats.memory.count if stats.memory.count else 0.0,
        samples=samples,
        top_functions=top,
        errors=tuple(stats.errors.most_common()),
        priorities=tuple(sorted(stats.priorities)),
    )
