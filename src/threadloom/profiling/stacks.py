"""Sampled stacks read back: the call tree of a name, its most expensive
functions, and the speedscope export."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .._version import __version__
from .report import CallNode, FunctionCost

__all__ = ["SPEEDSCOPE_SCHEMA", "call_tree", "speedscope", "top_functions"]

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def call_tree(
    name: str,
    stacks: dict[tuple[int, ...], float],
    frames: list[tuple[str, str, int]],
    sample_rate: float,
) -> CallNode:
    """The call tree of the sampled *stacks* of task name *name* (root: the name
    itself); node counts are samples, at *sample_rate* samples a second."""
    root = CallNode(name, "", 0)
    interval = 1.0 / sample_rate if sample_rate else 1.0
    for stack, seconds in stacks.items():
        count = max(1, round(seconds / interval))
        root.total += count
        node = root
        for position in stack:
            key = frames[position]
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = CallNode(*key)
            child.total += count
            node = child
        node.self += count
    return root


def top_functions(
    stacks: dict[tuple[int, ...], float], frames: list[tuple[str, str, int]], limit: int
) -> tuple[FunctionCost, ...]:
    total = sum(stacks.values())
    if total <= 0:
        return ()
    own: dict[int, float] = {}
    anywhere: dict[int, float] = {}
    hits: Counter[int] = Counter()
    for stack, seconds in stacks.items():
        own[stack[-1]] = own.get(stack[-1], 0.0) + seconds
        for position in set(stack):
            anywhere[position] = anywhere.get(position, 0.0) + seconds
            hits[position] += 1
    ranked = sorted(anywhere, key=lambda p: (-own.get(p, 0.0), -anywhere[p]))
    result = []
    for position in ranked[:limit]:
        function, file, line = frames[position]
        result.append(
            FunctionCost(
                function=function,
                file=file,
                line=line,
                self_share=own.get(position, 0.0) / total,
                total_share=anywhere[position] / total,
                samples=hits[position],
            )
        )
    return tuple(result)


def speedscope(
    wanted: list[str],
    stacks: dict[str, dict[tuple[int, ...], float]],
    frames: list[tuple[str, str, int]],
) -> dict[str, Any]:
    """The sampled *stacks* of the names *wanted* as a speedscope file (one
    "sampled" profile per name; weights are seconds)."""
    used: dict[int, int] = {}
    shared: list[dict[str, Any]] = []
    profiles = []
    for name in wanted:
        samples: list[list[int]] = []
        weights: list[float] = []
        for stack, seconds in sorted(stacks[name].items(), key=lambda item: -item[1]):
            mapped = []
            for position in stack:
                index = used.get(position)
                if index is None:
                    index = used[position] = len(shared)
                    function, file, line = frames[position]
                    shared.append({"name": function, "file": file, "line": line})
                mapped.append(index)
            samples.append(mapped)
            weights.append(round(seconds, 6))
        profiles.append(
            {
                "type": "sampled",
                "name": name,
                "unit": "seconds",
                "startValue": 0,
                "endValue": round(sum(weights), 6),
                "samples": samples,
                "weights": weights,
            }
        )
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": shared},
        "profiles": profiles,
        "name": "threadloom task profile",
        "activeProfileIndex": 0,
        "exporter": f"threadloom {__version__}",
    }
