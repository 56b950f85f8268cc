"""The one exception hierarchy (threadloom._errors): one class per failure, everywhere."""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Iterator

import pytest

import threadloom
from threadloom import _errors
from threadloom.task_manager import TaskManager
from threadloom.thread_pool_manager import ThreadPoolManager

WAIT = 20.0


@pytest.fixture
def pool() -> Iterator[ThreadPoolManager]:
    pool = ThreadPoolManager(min_workers=1, max_workers=1)
    pool.start()
    yield pool
    pool.stop(wait_for_tasks=False, timeout=WAIT)


# (exception, the modules that raised it before _errors held it)
OLD_HOMES = [
    ("UnknownTaskError", ["thread_pool_manager", "task_manager"]),
    ("UnknownExecutionError", ["task_manager"]),
    ("TaskNotFinished", ["thread_pool_manager"]),
    ("QueueFull", ["thread_pool_manager"]),
    ("HistoryError", ["history"]),
    ("TaskDependencyError", ["graph.dag", "task_manager"]),
    ("UnknownDependencyError", ["graph.dag", "task_manager"]),
    ("DependencyCycleError", ["graph.dag", "task_manager"]),
    ("WorkflowError", ["workflow"]),
    ("WorkflowProblem", ["workflow"]),
    ("DashboardError", ["dashboard"]),
    ("DesignerError", ["dashboard.designer"]),
    ("PaletteError", ["dashboard.designer", "dashboard._palette"]),
    ("RequestRefused", ["dashboard.designer"]),
    ("TaskCancelled", ["managed"]),
    ("ClusterUnreachableError", ["distributed"]),
]


def test_every_exception_is_defined_once_and_exported() -> None:
    assert sorted(name for name, _ in OLD_HOMES) == sorted(_errors.__all__)
    for name, modules in OLD_HOMES:
        cls = getattr(_errors, name)
        assert cls.__module__ == "threadloom._errors"
        assert getattr(threadloom, name) is cls, name
        for module in modules:
            assert getattr(importlib.import_module(f"threadloom.{module}"), name) is cls, module


def test_one_unknown_task_error_for_the_pool_and_the_task_manager(
    pool: ThreadPoolManager,
) -> None:
    with pytest.raises(threadloom.UnknownTaskError, match="unknown task id 'nope'") as pool_err:
        pool.get_task_status("nope")
    with TaskManager(thread_pool=pool) as manager:
        with pytest.raises(
            threadloom.UnknownTaskError, match="no task has id or name 'nope'"
        ) as manager_err:
            manager.get_task("nope")
        with pytest.raises(threadloom.UnknownExecutionError, match="no execution has id 'x'"):
            manager.get_execution_status("x")
    for err in (pool_err.value, manager_err.value):
        assert isinstance(err, KeyError)
        assert err.key == "nope"


def test_unknown_task_error_survives_pickling() -> None:
    err = threadloom.UnknownTaskError("t1", "no task has id or name 't1'")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is threadloom.UnknownTaskError
    assert (copy.key, str(copy)) == ("t1", "no task has id or name 't1'")
    default = pickle.loads(pickle.dumps(threadloom.UnknownTaskError("t2")))
    assert str(default) == "unknown task id 't2' (never submitted, or pruned after finishing)"
