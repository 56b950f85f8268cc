"""The one set of argument checks (threadloom._validate): the same bad argument
fails the same way (same exception type, same text) on every entry point."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from threadloom import TaskManager, TaskPriority, ThreadPoolExecutor, ThreadPoolManager
from threadloom._validate import check_count, check_priority

WAIT = 20.0

# (argument, bad value, exception, text every entry point's message contains)
BAD = [
    ("priority", 1.5, TypeError, "priority must be one of low, normal, high, critical"),
    ("priority", True, TypeError, "not bool (True)"),
    ("priority", "urgent", ValueError, "unknown priority 'urgent'"),
    ("priority", 2**40, ValueError, "out of range (must fit in 32 bits)"),
    ("timeout", "x", TypeError, "timeout must be a number of seconds, not str"),
    ("timeout", -1, ValueError, "timeout must be > 0, not -1"),
    ("timeout", 0, ValueError, "timeout must be > 0, not 0"),
    ("timeout", math.nan, ValueError, "timeout must be finite"),
    ("retry", 3, TypeError, "retry must be a RetryPolicy or None, not int"),
]


@pytest.fixture(scope="module")
def entry_points() -> Iterator[dict[str, Callable[..., Any]]]:
    executor = ThreadPoolExecutor(max_workers=1)
    pool = ThreadPoolManager(min_workers=1, max_workers=1)
    pool.start()
    manager = TaskManager(thread_pool=pool)
    yield {
        "options": lambda **kw: executor.options(**kw),
        "ThreadPoolManager.submit_call": lambda **kw: pool.submit_call(int, **kw),
        "TaskManager.register_task": lambda **kw: manager.register_task("t", int, **kw),
        "register_named": lambda name, **kw: manager.register_task(name, int, **kw),
    }
    manager.stop()
    pool.stop(wait_for_tasks=False, timeout=WAIT)
    executor.shutdown()


@pytest.mark.parametrize(("argument", "value", "error", "text"), BAD)
@pytest.mark.parametrize(
    "entry", ["options", "ThreadPoolManager.submit_call", "TaskManager.register_task"]
)
def test_same_bad_argument_same_error_everywhere(
    entry_points: dict[str, Callable[..., Any]],
    entry: str,
    argument: str,
    value: object,
    error: type[Exception],
    text: str,
) -> None:
    with pytest.raises(error) as caught:
        entry_points[entry](**{argument: value})
    assert type(caught.value) is error
    assert text in str(caught.value)


@pytest.mark.parametrize(("value", "error"), [(1.5, TypeError), ("urgent", ValueError)])
def test_the_seed_submit_fails_as_the_others(value: object, error: type[Exception]) -> None:
    # ThreadPoolManager.submit's fast path is the core's; a priority it does
    # not take goes to the checked path.
    with ThreadPoolManager(min_workers=1, max_workers=1) as pool:
        with pytest.raises(error, match="priority"):
            pool.submit(int, priority=value)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="32 bits"):
            pool.submit(int, priority=2**40)


@pytest.mark.parametrize(
    ("spelling", "value"),
    [
        ("low", 0),
        ("NORMAL", 1),
        ("High", 2),
        ("critical", 3),
        (TaskPriority.HIGH, 2),
        (-5, -5),
        (2**31 - 1, 2**31 - 1),
    ],
)
def test_check_priority_accepts_names_in_any_case_and_ints(spelling: object, value: int) -> None:
    result = check_priority(spelling)
    assert result == value
    assert type(result) is int


def test_register_task_names_the_task_and_checks_counts(
    entry_points: dict[str, Callable[..., Any]],
) -> None:
    register = entry_points["TaskManager.register_task"]
    with pytest.raises(TypeError, match=r"^task 't': max_retries must be an int, not str$"):
        register(max_retries="2")
    with pytest.raises(ValueError, match=r"^task 't': retry_delay must be >= 0, not -1"):
        register(retry_delay=-1)
    with pytest.raises(TypeError, match="task name must be a non-empty str, not int"):
        entry_points["register_named"](5)
    with pytest.raises(ValueError, match="task name must be a non-empty str"):
        entry_points["register_named"]("")
    with pytest.raises(ValueError, match="must be >= 0"):
        check_count("max_retries", -1)
