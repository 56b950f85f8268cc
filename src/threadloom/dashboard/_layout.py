"""A layered (Sugiyama-style) layout of an execution's DAG, computed server-side.

Layer = longest path from a root, so every edge points to a later layer;
within a layer, nodes are ordered by the mean position of their parents (one
downward pass of the barycentre heuristic), which removes most crossings of
the graphs tasks form, at a cost linear in the edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def layered_layout(
    nodes: Sequence[str], parents: Mapping[str, Sequence[str]]
) -> dict[str, tuple[int, int]]:
    """Return node -> (layer, row) for a DAG given as node -> its parents.

    Parents not in *nodes* are ignored; *nodes* must be acyclic (the task
    manager rejects cycles at registration).
    """
    known = set(nodes)
    layer: dict[str, int] = {}

    def depth(node: str) -> int:
        # Iterative: a deep chain must not hit the recursion limit.
        stack = [node]
        while stack:
            top = stack[-1]
            if top in layer:
                stack.pop()
                continue
            pending = [p for p in parents.get(top, ()) if p in known and p not in layer]
            if pending:
                stack.extend(pending)
                continue
            ups = [layer[p] for p in parents.get(top, ()) if p in known]
            layer[top] = 1 + max(ups) if ups else 0
            stack.pop()
        return layer[node]

    for node in nodes:
        depth(node)
    by_layer: dict[int, list[str]] = {}
    for node in nodes:
        by_layer.setdefault(layer[node], []).append(node)
    position: dict[str, tuple[int, int]] = {}
    for index in sorted(by_layer):
        members = by_layer[index]

        def barycentre(node: str) -> float:
            rows = [position[p][1] for p in parents.get(node, ()) if p in position]
            return sum(rows) / len(rows) if rows else 0.0

        members.sort(key=lambda n: (barycentre(n), n))
        for row, node in enumerate(members):
            position[node] = (index, row)
    return position
