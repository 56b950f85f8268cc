"""Shared fixtures: the two cores, and the two executors (stdlib and ours)."""

from __future__ import annotations

import concurrent.futures
import importlib
import os
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
    module.set_future_type(future_class_for(module))  # type: ignore[attr-defined]
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
