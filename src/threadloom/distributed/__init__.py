"""Beyond one machine: threadloom's tasks and task graphs on a Dask cluster.

Nothing here is a cluster of our own: the scheduling, the data movement and
the worker processes are Dask ``distributed``'s (``pip install
'threadloom[dask]'``).  What threadloom adds is on the client:

* :class:`DaskExecutor`, a :class:`concurrent.futures.Executor` over
  ``Client.submit`` with threadloom's ``options(priority=, retry=, timeout=,
  name=)`` view (plus ``resources=``).  Its futures are plain
  :class:`concurrent.futures.Future` objects.
* :class:`DaskBackend`, which runs :class:`~threadloom.task_manager.TaskManager`
  graphs on the cluster (``TaskManager(cluster="local:4")``).  Every node is
  submitted with its upstream Dask futures as inputs, so results move worker to
  worker and reach the client only when asked for
  (``get_execution_status(...).results``).  Policy stays on the client: trigger
  rules, priority inheritance, retry delays (on threadloom's timer, never a
  sleeping worker), deadlines, cancellation, history, schedules.

On a worker, each task runs on a small threadloom pool in that process, so
``threadloom.current_task()`` works there: a cancelled or timed-out task is
asked to stop through ``current_task().cancelled`` as on the local pool (Python
cannot stop a thread from outside; Dask cannot either).  What differs from the
local pool, and why:

* A node's task ends CANCELLED (or TIMED_OUT) as soon as the client cancels
  it: Dask releases the key at once and drops a late result.  Locally a running
  task that ignores the request still ends COMPLETED.
* ``current_task().upstream_results`` holds the upstream results of a node as
  locally; ``current_task().attempt`` counts attempts on that worker only
  (threadloom's record of attempts, in the history, is the client's).
* A worker that dies mid-task: Dask runs the task again elsewhere; the client
  counts each start it is told of, so the history shows the extra attempt.
  After ``distributed.scheduler.allowed-failures`` deaths Dask gives up with
  ``KilledWorker``, which is an ordinary failure (retried by the task's policy).

Workers need threadloom installed (the task wrapper is imported there by name).
"""

from __future__ import annotations

try:
    # Checked here, before any module of the package imports them.
    import dask  # noqa: F401
    import distributed  # noqa: F401
    from distributed import Client  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "threadloom.distributed needs Dask distributed: pip install 'threadloom[dask]'"
    ) from exc

from .._errors import ClusterUnreachableError
from .backend import DaskBackend
from .cluster import ClusterConnection, connect, dask_priority, parse_cluster
from .executor import DaskExecutor
from .graph import DaskGraphRunner

__all__ = [
    "ClusterConnection",
    "ClusterUnreachableError",
    "DaskBackend",
    "DaskExecutor",
    "DaskGraphRunner",
    "connect",
    "dask_priority",
    "parse_cluster",
]
