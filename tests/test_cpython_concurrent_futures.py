"""CPython's own ``concurrent.futures`` thread-pool tests pass against threadloom.

The work is done by ``tests/cpython_harness.py`` (how the stdlib's classes are
replaced, in every process the tests start, and which tests are skipped and
why is written there).  This test runs it with the interpreter running pytest,
on whichever core that environment selects (``THREADLOOM_NO_EXTENSIONS=1``:
the pure-Python twin), and is skipped, saying why, where the interpreter has
no ``test.test_concurrent_futures`` (manylinux images and some distributions
strip CPython's ``test`` package).  ``THREADLOOM_SKIP_CPYTHON_SUITE=1`` skips
it on purpose (an emulated wheel build, where a 20 s suite takes minutes).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import threadloom


def _load_harness() -> ModuleType:
    # By path: the harness is a script next to this file, not an importable module.
    path = Path(__file__).with_name("cpython_harness.py")
    spec = importlib.util.spec_from_file_location("threadloom_cpython_harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _load_harness()

#: Thread-pool test classes every supported CPython (3.10-3.14) has: each must
#: have run and passed, so that a change in selection cannot pass by running nothing.
EXPECTED_CLASSES = (
    "ThreadPoolExecutorTest",
    "ThreadPoolShutdownTest",
    "ThreadPoolWaitTests",
    "ThreadPoolAsCompletedTest",
    "ThreadPoolInitializerTest",
    "ThreadPoolFailingInitializerTest",
    "FutureTests",
)

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("THREADLOOM_SKIP_CPYTHON_SUITE", "") not in ("", "0"),
        reason="THREADLOOM_SKIP_CPYTHON_SUITE is set",
    ),
    pytest.mark.skipif(
        not harness.suite_available(),
        reason=(
            f"CPython {sys.version.split()[0]} at {sys.executable} has no "
            f"{harness.SUITE} (CPython's test suite is not installed, or not this part of it); "
            "run this file with an interpreter that has it, e.g. a pyenv build"
        ),
    ),
]


def _passed_classes(record: dict[str, Any]) -> set[str]:
    # Every test that ran has a duration; those neither failed nor skipped passed.
    not_passed = set(record["failed"]) | set(record["skip_reasons"])
    return {
        test_id.rsplit(".", 2)[-2] for test_id in record["durations"] if test_id not in not_passed
    }


@pytest.mark.timeout(180)
def test_cpython_thread_pool_suite_passes_against_threadloom() -> None:
    record = harness.run(target="threadloom", jobs=2, timeout=150.0)
    report = harness.describe(record)
    print(report)

    assert not record["broken"], report
    # The tests ran against threadloom's classes, on the core this environment selects.
    assert record["executor"] == (
        f"{threadloom.ThreadPoolExecutor.__module__}.{threadloom.ThreadPoolExecutor.__qualname__}"
    )
    if os.environ.get("THREADLOOM_NO_EXTENSIONS", "") not in ("", "0"):
        assert record["native_core"] is False
    if os.environ.get("THREADLOOM_REQUIRE_EXTENSIONS", "") not in ("", "0"):
        assert record["native_core"] is True

    counts = harness.counts(record)
    assert counts["failed"] == 0, report
    assert counts["left_threads_behind"] == 0, report
    assert counts["selected"] == counts["passed"] + counts["skipped_by_tests"], report
    missing = set(EXPECTED_CLASSES) - _passed_classes(record)
    assert not missing, f"no passing test of {sorted(missing)}\n{report}"
