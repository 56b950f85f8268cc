"""Recommendations with numbers, from a report: workers by Little's law, processes
or a free-threaded build for GIL-bound work, retry hot spots, starvation."""

from __future__ import annotations

import math
import sys

from .report import ProfileReport, Recommendation, format_bytes, format_seconds

# A name is CPU-bound when its CPU share (corrected for GIL sharing) is at
# least this, IO-bound when its off-CPU share is at least IO_SHARE.
CPU_SHARE = 0.5
IO_SHARE = 0.7
# Names at least this much on the CPU compete for the GIL; the GIL is busy
# when task CPU per second of profile reaches GIL_BUSY.
CPU_USER_SHARE = 0.15
GIL_BUSY = 0.4
# A priority starves when its tasks wait this many times longer than the
# higher priorities arriving meanwhile.
_STARVING_RATIO = 5.0


def cpu_demand(cpu_share: float, runnable: float) -> float:
    """The share of the time a task was on a CPU out of the time it could
    have been (wall time minus the time the machine kept it waiting for one)."""
    return min(1.0, cpu_share / max(1.0 - runnable, 0.1))


def runnable_fraction(totals: tuple[float, ...] | None) -> float:
    if not totals or totals[0] <= 0:
        return 0.0
    return max(0.0, min(1.0, totals[2] / totals[0]))


def _free_threaded() -> bool:
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return is_enabled is not None and not is_enabled()


def advise(report: ProfileReport, waits: list[tuple[int, float, float]]) -> list[Recommendation]:
    advice: list[Recommendation] = []
    names = report.names
    workers = report.max_workers
    # Little's law: tasks in service = arrival rate x time in service.
    demand = sum(p.arrival_rate * p.wall.mean for p in names if p.kind != "cpu")
    for p in names:
        if (
            p.kind == "io"
            and p.tasks > 1
            and p.wait.mean > p.wall.mean
            and workers is not None
            and demand > workers
        ):
            # Never more workers than the load has tasks in flight.
            target = max(workers + 1, math.ceil(min(demand, sum(q.tasks for q in names))))
            others = demand - p.arrival_rate * p.wall.mean
            reason = (
                f"{p.name!r} spends {p.off_cpu_share:.0%} of its run time off the CPU and "
                f"waits {format_seconds(p.wait.mean)} in the queue on average, more than it runs "
                f"({format_seconds(p.wall.mean)}): the pool is too small for an IO-bound load"
            )
            law = f"{p.arrival_rate:.1f} tasks/s x {p.wall.mean:.2f} s"
            if others > 0.05:
                law += f" + {others:.1f} for the other names"
            advice.append(
                Recommendation(
                    kind="workers",
                    subject=p.name,
                    advice=(
                        f"raise max_workers from {workers} to about {target} (Little's law: {law})"
                    ),
                    reason=reason,
                    numbers={
                        "max_workers": workers,
                        "recommended_workers": target,
                        "arrival_rate": p.arrival_rate,
                        "mean_wall": p.wall.mean,
                        "mean_wait": p.wait.mean,
                        "off_cpu_share": p.off_cpu_share,
                    },
                )
            )
    for p in names:
        if p.kind != "cpu" or _free_threaded():
            continue
        if p.cpu.mean * p.cpu.count < 0.1 * report.duration:
            # Not enough of the load to matter (tiny tasks classify noisily).
            continue
        parallel = min(report.cores, workers or report.cores, max(p.tasks, 1))
        if parallel < 2:
            continue
        advice.append(
            Recommendation(
                kind="gil",
                subject=p.name,
                advice=(
                    f"these tasks cannot use more than one core here; run them on processes "
                    f"with the Dask backend (--cluster local:{parallel}) or a free-threaded "
                    f"build; expected speed-up about {parallel}x"
                ),
                reason=(
                    f"{p.name!r} runs Python on the CPU {p.cpu_share:.0%} of its wall time while "
                    f"task CPU uses {report.gil_load:.2f} cores of {report.cores}: it holds the "
                    f"GIL, so more threads only take turns"
                ),
                numbers={
                    "cpu_share": p.cpu_share,
                    "gil_load": report.gil_load,
                    "cores": report.cores,
                    "expected_speedup": parallel,
                },
            )
        )
    for p in names:
        if p.attempts and p.failed_attempts >= 3 and (p.attempts - p.tasks) / p.attempts >= 0.2:
            error, count = p.errors[0] if p.errors else ("an error", p.failed_attempts)
            wasted = p.wall.mean * p.failed_attempts
            advice.append(
                Recommendation(
                    kind="retries",
                    subject=p.name,
                    advice=(
                        f"fix what makes {p.name!r} fail ({error}, {count} times) or lengthen "
                        f"its retry backoff: {p.attempts - p.tasks} of its {p.attempts} attempts "
                        f"were retries"
                    ),
                    reason=(
                        f"{p.retried_tasks} of {p.tasks} tasks needed a retry; failed attempts "
                        f"used about {format_seconds(wasted)} of worker time"
                    ),
                    numbers={
                        "attempts": p.attempts,
                        "tasks": p.tasks,
                        "failed_attempts": p.failed_attempts,
                        "retry_share": (p.attempts - p.tasks) / p.attempts,
                        "wasted_seconds": wasted,
                    },
                )
            )
    advice.extend(_starvation(waits))
    for p in names:
        if p.deadline_missed:
            advice.append(
                Recommendation(
                    kind="deadlines",
                    subject=p.name,
                    advice=(
                        f"{p.deadline_missed} of {p.tasks} {p.name!r} tasks missed their deadline"
                        + (f" of {format_seconds(p.timeout)}" if p.timeout is not None else "")
                        + f": raise the timeout to about {format_seconds(p.wait.p99 + p.wall.p99)} "
                        f"(p99 wait + p99 run) or cut the queue wait"
                    ),
                    reason=(
                        f"queue wait p90 {format_seconds(p.wait.p90)}, run time p90 "
                        f"{format_seconds(p.wall.p90)}"
                    ),
                    numbers={
                        "missed": p.deadline_missed,
                        "tasks": p.tasks,
                        "wait_p90": p.wait.p90,
                        "wall_p90": p.wall.p90,
                        **({} if p.timeout is None else {"timeout": p.timeout}),
                    },
                )
            )
    for p in names:
        growth = p.memory_growth
        if (
            growth is not None
            and growth.count >= 3
            and p.memory_grew_share >= 0.8
            and growth.mean >= 4096
        ):
            advice.append(
                Recommendation(
                    kind="memory",
                    subject=p.name,
                    advice=(
                        f"{p.name!r} keeps about {format_bytes(growth.mean)} per task after it "
                        f"returns: look for a cache or a list that outlives the task"
                    ),
                    reason=(
                        f"traced memory grew after {p.memory_grew_share:.0%} of "
                        f"{growth.count} attempts, "
                        f"{format_bytes(growth.mean * growth.count)} in all"
                    ),
                    numbers={
                        "mean_growth_bytes": growth.mean,
                        "grew_share": p.memory_grew_share,
                        "attempts": growth.count,
                    },
                )
            )
    return advice


def _starvation(waits: list[tuple[int, float, float]]) -> list[Recommendation]:
    """Priorities that wait far longer than the higher priorities arriving meanwhile."""
    by_priority: dict[int, list[tuple[float, float]]] = {}
    for priority, submitted, wait in waits:
        by_priority.setdefault(priority, []).append((submitted, wait))
    advice = []
    for priority in sorted(by_priority):
        own = sorted(by_priority[priority])
        if len(own) < 4:
            continue
        first, last = own[0][0], own[-1][0] + max(w for _, w in own)
        higher = [
            (s, w)
            for p, entries in by_priority.items()
            if p > priority
            for s, w in entries
            if first <= s <= last
        ]
        if len(higher) < len(own):
            continue
        mean_own = sum(w for _, w in own) / len(own)
        longest = max(w for _, w in own)
        mean_higher = sum(w for _, w in higher) / len(higher)
        # Waiting longer than higher priorities is what priorities are for;
        # starving is waiting many times longer while they keep coming.
        if mean_own > _STARVING_RATIO * mean_higher and mean_own > 0:
            advice.append(
                Recommendation(
                    kind="starvation",
                    subject=f"priority {priority}",
                    advice=(
                        f"priority {priority} tasks are starving: raise their priority as they "
                        f"wait, reserve workers for them, or add workers"
                    ),
                    reason=(
                        f"they waited {format_seconds(mean_own)} on average "
                        f"(up to {format_seconds(longest)}) "
                        f"while {len(higher)} higher-priority tasks arrived and waited "
                        f"{format_seconds(mean_higher)}"
                    ),
                    numbers={
                        "priority": priority,
                        "mean_wait": mean_own,
                        "max_wait": longest,
                        "higher_arrivals": len(higher),
                        "higher_mean_wait": mean_higher,
                    },
                )
            )
    return advice
