"""The callables that examples/workflow.toml runs: a small sales digest.

Three regional order feeds are loaded (IO-bound: simulated latency; the APAC
feed fails on its first attempt and succeeds on the retry), checked, summed
into totals and turned into a report.  ``threadloom run`` puts this file's
directory on ``sys.path`` because the workflow file lives next to it.

Tasks wait with ``current_task().wait_cancelled(...)`` instead of
``time.sleep(...)``, so that Ctrl-C (or a timeout) stops them at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

from threadloom import current_task


def load_orders(
    region: str, count: int = 40, latency: float = 0.2, fail_first_attempt: bool = False
) -> list[dict[str, Any]]:
    """Load a region's orders from its (simulated) order service."""
    task = current_task()
    if task.wait_cancelled(latency):
        task.check_cancelled()  # raises TaskCancelled: the task ends CANCELLED
    if fail_first_attempt and task.attempt == 1:
        raise ConnectionError(f"order service for {region} timed out (simulated)")
    rng = random.Random(region)
    return [
        {"region": region, "order": n, "amount": round(rng.uniform(5, 500), 2)}
        for n in range(count)
    ]


def check_orders(upstream: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Check the orders that were loaded; return them by region."""
    checked = {}
    for orders in upstream.values():
        for order in orders:
            if order["amount"] <= 0:
                raise ValueError(f"order {order['order']} of {order['region']} has no amount")
        if orders:
            checked[orders[0]["region"]] = orders
    return checked


def region_totals(upstream: Mapping[str, dict[str, list[dict[str, Any]]]]) -> dict[str, float]:
    """Sum each region's orders."""
    orders_by_region = upstream["check"]
    return {
        region: round(sum(order["amount"] for order in orders), 2)
        for region, orders in orders_by_region.items()
    }


def report(upstream: Mapping[str, Any]) -> str:
    """Format the totals as one line."""
    totals: dict[str, float] = upstream["totals"]
    body = ", ".join(f"{region} {amount:,.2f}" for region, amount in sorted(totals.items()))
    return f"sales {time.strftime('%H:%M:%S')}: {body}; all regions {sum(totals.values()):,.2f}"


def heartbeat() -> str:
    """Say that the scheduler is alive."""
    return f"alive at {time.strftime('%H:%M:%S')}"
