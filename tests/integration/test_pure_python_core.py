"""The drop-in, manager, task-manager and events suites again, on the pure-Python core.

The core's own tests run over both cores in-process; the executor selects its
core at import, so the suites that sit on top of it are re-run here in a
subprocess with ``THREADLOOM_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_executor_and_manager_suites_pass_on_the_twin() -> None:
    env = dict(os.environ, THREADLOOM_NO_EXTENSIONS="1", THREADLOOM_STRESS_TASKS="0")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(TESTS / "test_executor.py"),
            str(TESTS / "test_thread_pool_manager.py"),
            str(TESTS / "test_task_manager.py"),
            str(TESTS / "test_events.py"),
            "-k",
            # The Dask cases run once, in the ordinary run: the cluster's
            # graph runner is the twin's in both.
            "not stress and not dask",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=TESTS.parent,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert " passed" in result.stdout
    selected = subprocess.run(
        [sys.executable, "-c", "import threadloom; print(threadloom.NATIVE)"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert selected.stdout.strip() == "False", selected.stderr
