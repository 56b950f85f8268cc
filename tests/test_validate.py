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


# -- every entry point that takes the same argument checks it the one way ----


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        (-5, ValueError, "retry_delay must be >= 0, not -5"),
        ("x", TypeError, "retry_delay must be a number of seconds, not str"),
        (math.inf, ValueError, "retry_delay must be finite"),
    ],
)
def test_retry_delay_is_checked_even_without_retries(
    entry_points: dict[str, Callable[..., Any]], value: object, error: type[Exception], text: str
) -> None:
    # ThreadPoolManager.submit used to ignore retry_delay when max_retries=0
    # (the core's fast path); TaskManager.register_task always checked it.
    with ThreadPoolManager(min_workers=1, max_workers=1) as pool, pytest.raises(error) as from_pool:
        pool.submit(int, max_retries=0, retry_delay=value)  # type: ignore[arg-type]
    with pytest.raises(error) as from_manager:
        entry_points["TaskManager.register_task"](max_retries=0, retry_delay=value)
    for caught in (from_pool, from_manager):
        assert type(caught.value) is error
        assert text in str(caught.value)


def test_submit_keeps_its_fast_path_for_a_valid_retry_delay() -> None:
    with ThreadPoolManager(min_workers=1, max_workers=1) as pool:
        for delay in (1.0, 0.0, 2, 0.5):
            task_id = pool.submit(int, "7", max_retries=0, retry_delay=delay)
            assert pool.get_task_result(task_id, timeout=WAIT) == 7


@pytest.mark.parametrize(
    ("value", "error", "text"), [row[1:] for row in BAD if row[0] == "priority"]
)
def test_submit_managed_checks_priority_as_options_does(
    value: object, error: type[Exception], text: str
) -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        with pytest.raises(error) as from_options:
            executor.options(priority=value)  # type: ignore[call-overload]
        with pytest.raises(error) as from_managed:
            executor.submit_managed(int, priority=value)  # type: ignore[arg-type]
    assert type(from_managed.value) is type(from_options.value) is error
    assert str(from_managed.value) == str(from_options.value)
    assert text in str(from_managed.value)


def test_submit_managed_takes_priority_names_and_ints() -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        for priority, expected in (("high", 2), ("LOW", 0), (TaskPriority.CRITICAL, 3), (-7, -7)):
            future = executor.submit_managed(int, ("5",), priority=priority)  # type: ignore[arg-type]
            assert future.result(timeout=WAIT) == 5
            assert future.priority == expected
            assert type(future.priority) is int


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        ("x", TypeError, "max_queue_size must be an int, not str"),
        (2.0, TypeError, "max_queue_size must be an int, not float"),
        (True, TypeError, "max_queue_size must be an int, not bool"),
        (0, ValueError, "max_queue_size must be >= 1, not 0"),
        (-3, ValueError, "max_queue_size must be >= 1, not -3"),
    ],
)
def test_max_queue_size_type_and_value_errors(
    value: object, error: type[Exception], text: str
) -> None:
    with pytest.raises(error) as caught:
        ThreadPoolManager(max_queue_size=value)  # type: ignore[arg-type]
    assert type(caught.value) is error
    assert str(caught.value) == text


def test_keep_finished_type_and_value_errors() -> None:
    with pytest.raises(TypeError, match=r"^keep_finished must be an int, not str$"):
        ThreadPoolManager(keep_finished="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^keep_finished must be >= 0, not -1$"):
        ThreadPoolManager(keep_finished=-1)


def _seconds_entry_points() -> dict[str, Callable[[object], object]]:
    from threadloom import ResourceMonitor, RetryPolicy, parse_schedule

    return {
        "RetryPolicy(delay=)": lambda v: RetryPolicy(delay=v),
        "ThreadPoolManager(queue_full_timeout=)": lambda v: ThreadPoolManager(queue_full_timeout=v),
        "Schedule(jitter=)": lambda v: parse_schedule("*/5 * * * *").replace(jitter=v),
        "ResourceMonitor(check_interval=)": lambda v: ResourceMonitor(check_interval=v),
    }


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        ("x", TypeError, "must be a number of seconds, not str"),
        (True, TypeError, "must be a number of seconds, not bool"),
        (-1, ValueError, "must be >= 0, not -1"),
        (math.nan, ValueError, "must be finite, not nan"),
        (10.0**12, ValueError, "must be at most"),
    ],
)
@pytest.mark.parametrize("entry", list(_seconds_entry_points()))
def test_seconds_fail_the_same_way_everywhere(
    entry: str, value: object, error: type[Exception], text: str
) -> None:
    if entry.startswith("ResourceMonitor") and value == -1:
        text = "must be > 0, not -1"  # an interval: zero is refused too
    with pytest.raises(error) as caught:
        _seconds_entry_points()[entry](value)
    assert type(caught.value) is error
    assert text in str(caught.value)


def test_misfire_grace_time_and_jitter_are_checked_by_the_one_validator() -> None:
    from threadloom import parse_schedule

    with pytest.raises(ValueError, match=r"^misfire_grace_time must be > 0, not 0$"):
        parse_schedule("*/5 * * * *").replace(misfire_grace_time=0)
    with pytest.raises(TypeError, match=r"^jitter must be a number of seconds, not str$"):
        parse_schedule("*/5 * * * *").replace(jitter="1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        ("x", TypeError, "cpu_threshold must be a number, not str"),
        (True, TypeError, "cpu_threshold must be a number, not bool"),
        (0, ValueError, "cpu_threshold must be a percentage in (0, 100], not 0"),
        (101, ValueError, "cpu_threshold must be a percentage in (0, 100], not 101"),
        (math.nan, ValueError, "cpu_threshold must be a percentage in (0, 100], not nan"),
    ],
)
def test_thresholds_fail_the_same_way_in_the_constructor_and_update(
    value: object, error: type[Exception], text: str
) -> None:
    from threadloom import ResourceMonitor

    with pytest.raises(error) as from_init:
        ResourceMonitor(cpu_threshold=value)  # type: ignore[arg-type]
    monitor = ResourceMonitor()
    with pytest.raises(error) as from_update:
        monitor.update_thresholds(cpu_threshold=value)  # type: ignore[arg-type]
    for caught in (from_init, from_update):
        assert type(caught.value) is error
        assert str(caught.value) == text


def test_hysteresis_margin_fails_the_same_way_in_the_constructor_and_update() -> None:
    from threadloom import ResourceMonitor

    monitor = ResourceMonitor()
    for call in (
        lambda v: ResourceMonitor(hysteresis_margin=v),
        lambda v: monitor.update_thresholds(hysteresis_margin=v),
    ):
        with pytest.raises(TypeError, match=r"^hysteresis_margin must be a number, not str$"):
            call("x")
        with pytest.raises(ValueError, match=r"^hysteresis_margin must be in \[0, 100\), not 100$"):
            call(100)
    with pytest.raises(ValueError, match=r"^history_size must be >= 1, not 0$"):
        ResourceMonitor(history_size=0)
