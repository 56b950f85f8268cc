"""DaskBackend: where a TaskManager runs its graphs, a Dask cluster."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from distributed import Client

from .cluster import ClusterConnection, connect, parse_cluster
from .graph import DaskGraphRunner
from .shared import Helper, Starts
from .worker import START_TOPIC

logger = logging.getLogger("threadloom.distributed")


class DaskBackend:
    """Where a :class:`~threadloom.task_manager.TaskManager` runs its graphs: a Dask cluster.

    ``TaskManager(cluster="local:2")`` makes one; pass a ``DaskBackend`` (or a
    ``distributed.Client``) to share a client.  Connecting happens at
    :meth:`start` (the manager's start), so a bad address fails there, with
    :class:`ClusterUnreachableError` naming it.

    Args:
        cluster: ``"local:N"``, a scheduler address, or a ``distributed.Client``
            (left open at :meth:`close`).
        connect_timeout: Seconds to wait for the scheduler (None: Dask's setting).
    """

    def __init__(
        self,
        cluster: str | Client,
        *,
        connect_timeout: float | None = None,
    ) -> None:
        if not isinstance(cluster, Client):
            parse_cluster(cluster)  # a bad spec fails at construction
        self._spec = cluster
        self._timeout = connect_timeout
        self._connection: ClusterConnection | None = None
        self._lock = threading.Lock()
        self.starts = Starts()
        self._helper: Helper | None = None
        # The runners whose results may still be on the cluster.
        self._runners: weakref.WeakSet[DaskGraphRunner] = weakref.WeakSet()

    @property
    def spec(self) -> str:
        """The cluster as given (an address, or ``local:N``)."""
        return (
            self._spec
            if isinstance(self._spec, str)
            else str(getattr(self._spec.scheduler, "address", ""))
        )

    def start(self) -> None:
        """Connect (and start a local cluster for ``local:N``); again does nothing.

        Raises:
            ClusterUnreachableError: the scheduler did not answer.
        """
        with self._lock:
            if self._connection is not None:
                return
            connection = connect(self._spec, timeout=self._timeout)
            connection.client.subscribe_topic(START_TOPIC, self.starts)
            self._helper = Helper()
            self._connection = connection

    @property
    def client(self) -> Client:
        """The Dask client (after :meth:`start`)."""
        connection = self._connection
        if connection is None:
            raise RuntimeError("DaskBackend is not started: call start() first")
        return connection.client

    @property
    def helper(self) -> Callable[..., None]:
        """Runs slow client calls off timer threads and Dask's loop."""
        helper = self._helper
        if helper is None:
            raise RuntimeError("DaskBackend is not started: call start() first")
        return helper

    def graph_runner(self, tasks: list[Any]) -> DaskGraphRunner:
        """A runner of one task-graph execution on the cluster."""
        self.client  # noqa: B018 - raises if not started
        runner = DaskGraphRunner(self, tasks)
        self._runners.add(runner)
        return runner

    def close(self) -> None:
        """Disconnect; a cluster started for ``local:N`` is shut down."""
        with self._lock:
            connection, self._connection = self._connection, None
            helper, self._helper = self._helper, None
        if helper is not None:
            helper.close()
        if connection is None:
            return
        # Executions kept by the manager answer for their results after the
        # cluster is gone.
        for runner in list(self._runners):
            try:
                runner.fetch_results()
            except Exception:
                logger.exception("could not fetch an execution's results before disconnecting")
        if isinstance(self._spec, Client):
            connection.client.unsubscribe_topic(START_TOPIC)
            return
        connection.close()
