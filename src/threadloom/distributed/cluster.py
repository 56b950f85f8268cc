"""Cluster specs and connecting: ``local:N`` or a scheduler address, to a client.

Also the one place threadloom's priority becomes Dask's (:func:`dask_priority`).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import dask
import distributed
from distributed import Client

from .._errors import ClusterUnreachableError

#: Passed to ``Client.submit``: every submission is its own Dask "generation",
#: so that equal priorities run in submission order (see :func:`dask_priority`).
FIFO_TIMEOUT = 0


def dask_priority(priority: int) -> int:
    """The one place threadloom's priority becomes Dask's.

    Both run a higher number first (``TaskPriority.CRITICAL`` = 3 before
    ``LOW`` = 0), so the integer passes through unchanged.  Dask applies it on
    the scheduler (which task a free worker gets next) and on each worker
    (which of its assigned tasks runs next).  Within a priority threadloom runs
    tasks in submission order; Dask does so only across submissions more than
    ``fifo_timeout`` apart (100 ms by default), so threadloom submits with
    ``fifo_timeout=0`` (:data:`FIFO_TIMEOUT`).
    """
    return int(priority)


# -- connecting ---------------------------------------------------------------


_LOCAL = re.compile(r"local(?::(\d+))?")
_SCHEMES = ("tcp://", "tls://", "inproc://", "ws://", "wss://", "ucx://")


def parse_cluster(spec: str) -> tuple[str, int | str]:
    """Read a cluster spec: ``local``, ``local:N`` or a scheduler address.

    Returns:
        ``("local", n_workers)`` or ``("address", address)``.

    Raises:
        TypeError: *spec* is not a string.
        ValueError: *spec* is none of these (the message says what is accepted).
    """
    if not isinstance(spec, str):
        raise TypeError(f"cluster must be a string such as 'local:2', not {spec!r}")
    text = spec.strip()
    match = _LOCAL.fullmatch(text)
    if match:
        count = int(match.group(1)) if match.group(1) else (os.cpu_count() or 1)
        if count < 1:
            raise ValueError(f"cluster {spec!r}: local:N needs N >= 1 worker")
        return ("local", count)
    if text.startswith(_SCHEMES) and len(text) > text.index("://") + 3:
        return ("address", text)
    raise ValueError(
        f"cluster {spec!r} is not understood: use 'local:N' (N worker processes on this "
        "machine) or a scheduler address such as 'tcp://HOST:8786'"
    )


@dataclass
class ClusterConnection:
    """A client, and the local cluster it owns (if it started one)."""

    client: Client
    cluster: Any = None
    address: str = ""

    def close(self) -> None:
        """Close the client, then the cluster it started (if any)."""
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def connect(cluster: str | Client, *, timeout: float | None = None) -> ClusterConnection:
    """Connect to a cluster: ``local:N`` starts one; an address joins one.

    A local cluster has N worker processes of one thread each on 127.0.0.1,
    without a dashboard (processes, so that CPU-bound Python escapes the GIL).
    *timeout* (seconds) bounds the wait for a scheduler address; None takes
    Dask's ``distributed.comm.timeouts.connect`` setting (e.g. the environment
    variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).

    Raises:
        ClusterUnreachableError: nothing answered at the address within *timeout*.
        ValueError: the spec is not understood.
    """
    if isinstance(cluster, Client):
        return ClusterConnection(cluster, None, str(getattr(cluster.scheduler, "address", "")))
    kind, value = parse_cluster(cluster)
    if kind == "local":
        local = distributed.LocalCluster(
            n_workers=int(value),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # A task's failure is threadloom's to report (history, events),
            # not each worker's log; the scheduler, here, still logs deaths.
            silence_logs=logging.CRITICAL,
        )
        try:
            client = Client(local)
        except BaseException:
            local.close()
            raise
        return ClusterConnection(client, local, str(local.scheduler_address))
    address = str(value)
    if timeout is None:
        timeout = float(
            dask.utils.parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
        )
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnreachableError(
            f"cannot reach the Dask scheduler at {address} (waited {timeout:g} s): {exc}"
        ) from exc
    return ClusterConnection(client, None, address)
