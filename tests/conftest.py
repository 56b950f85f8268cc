"""Shared fixtures: the two cores, and the two executors (stdlib and ours)."""

from __future__ import annotations

import concurrent.futures
import importlib
import os
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import threadloom
from threadloom.core._future import future_class_for

NO_EXTENSIONS = os.environ.get("THREADLOOM_NO_EXTENSIONS", "") not in ("", "0")


def _load_native() -> ModuleType:
    try:
        return importlib.import_module("threadloom.core._core")
    except ImportError as exc:
        if NO_EXTENSIONS:
            pytest.skip(f"native core not built (THREADLOOM_NO_EXTENSIONS=1): {exc}")
        # Outside the pure-Python mode a missing extension is a broken install.
        raise


@pytest.fixture(params=["native", "python"])
def core(request: pytest.FixtureRequest) -> ModuleType:
    """The native core and its pure-Python twin, in turn."""
    module = (
        _load_native()
        if request.param == "native"
        else importlib.import_module("threadloom.core._core_py")
    )
    module.set_future_type(future_class_for(module))
    return module


@pytest.fixture
def future_cls(core: ModuleType) -> type[Any]:
    return future_class_for(core)


@pytest.fixture(params=["stdlib", "threadloom"])
def executor_cls(request: pytest.FixtureRequest) -> type[concurrent.futures.Executor]:
    """The stdlib ThreadPoolExecutor and ours: drop-in tests run on both."""
    if request.param == "stdlib":
        return concurrent.futures.ThreadPoolExecutor
    return threadloom.ThreadPoolExecutor


@pytest.fixture
def executor(executor_cls: type[Any]) -> Iterator[Any]:
    ex = executor_cls(max_workers=2)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


# Every blocking call in the tests is bounded by this, so a bug fails, not hangs.
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A client of a Dask LocalCluster of two worker processes, one for the module.

    Starting a cluster costs seconds.  At teardown no worker process may be
    left running.
    """
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        pids = list(client.run(os.getpid).values())
        client.close()
        cluster.close()
        for pid in pids:
            deadline = time.monotonic() + 30.0  # bounded: a bug fails, not hangs
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(pid), f"worker process {pid} outlived its cluster"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie awaiting its parent's reap is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
