"""A task's definition checked and built: the :class:`RegisteredTask` the registry keeps.

:func:`build_task` checks every option of a task the way every layer checks
it (same exception, same text, named for the task) and builds its record;
:data:`PLAIN_TASK_OPTIONS` are the options of a task registered with the
defaults, which the core's fast path fills in without checking.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .._types import TaskPriority
from .._validate import (
    check_count,
    check_priority,
    check_retry,
    check_seconds,
    check_timeout,
)
from ..retry import RetryPolicy
from ..scheduling import parse_schedule
from .dag import TriggerRule
from .records import EMPTY, TaskInfo, new_task_info

#: Fields of a task that :meth:`TaskManager.update_task` may change.
UPDATABLE = frozenset(
    {
        "name",
        "func",
        "args",
        "kwargs",
        "dependencies",
        "priority",
        "max_retries",
        "retry_delay",
        "retry",
        "timeout",
        "schedule",
        "enabled",
        "description",
        "tags",
        "trigger_rule",
        "results_param",
    }
)


def build_task(
    *,
    task_id: str,
    name: object,
    func: object,
    args: Iterable[Any],
    kwargs: Mapping[str, Any],
    dependencies: tuple[str, ...],
    priority: object,
    max_retries: object,
    retry_delay: object,
    retry: object,
    timeout: object,
    schedule_spec: object,
    enabled: object,
    description: object,
    tags: Iterable[str],
    trigger_rule: object,
    results_param: object,
) -> TaskInfo:
    """The task of these fields, each checked (*dependencies*: ids, already resolved).

    Raises:
        TypeError, ValueError: A field is not usable, as
            :meth:`TaskManager.register_task` documents for its arguments.
    """
    if not isinstance(name, str):
        raise TypeError(f"task name must be a non-empty str, not {type(name).__name__}")
    if not name:
        raise ValueError("task name must be a non-empty str, not ''")
    if not callable(func):
        raise TypeError(f"func of task {name!r} must be callable, not {type(func).__name__}")
    # The checks every layer shares (same exception, same text), named for the task.
    try:
        retry_policy = check_retry(retry)
        if retry_policy is not None:
            max_retries, retry_delay = retry_policy.max_retries, retry_policy.delay
        timeout_s = check_timeout(timeout)
        retry_count = check_count("max_retries", max_retries)
        delay = check_seconds("retry_delay", retry_delay)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"task {name!r}: {exc}") from None
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled of task {name!r} must be a bool, not {enabled!r}")
    if not isinstance(description, str):
        raise TypeError(f"description of task {name!r} must be a str, not {description!r}")
    tag_tuple = (tags,) if isinstance(tags, str) else tuple(tags)
    for tag in tag_tuple:
        if not isinstance(tag, str):
            raise TypeError(f"tags of task {name!r} must be strs, not {tag!r}")
    try:
        rule = TriggerRule(trigger_rule)
    except ValueError:
        choices = ", ".join(r.value for r in TriggerRule)
        raise ValueError(
            f"unknown trigger_rule {trigger_rule!r} for task {name!r}; use one of {choices}"
        ) from None
    kwargs = dict(kwargs)
    if results_param is not None:
        if not isinstance(results_param, str) or not results_param.isidentifier():
            raise ValueError(
                f"results_param of task {name!r} must be a keyword name, not {results_param!r}"
            )
        if results_param in kwargs:
            raise ValueError(
                f"results_param {results_param!r} of task {name!r} is also given as a keyword"
            )
    return new_task_info(
        task_id=task_id,
        name=name,
        func=func,
        args=tuple(args),
        kwargs=MappingProxyType(kwargs) if kwargs else EMPTY,
        dependencies=dependencies,
        priority=check_priority(priority),
        max_retries=retry_count,
        retry_delay=delay,
        retry=retry_policy if retry_policy is not None else retry_policy_of(retry_count, delay),
        timeout=timeout_s,
        schedule_spec=schedule_spec,
        schedule=None if schedule_spec is None else parse_schedule(schedule_spec),
        enabled=enabled,
        description=description,
        tags=tag_tuple,
        trigger_rule=rule,
        results_param=results_param,
    )


@functools.lru_cache(maxsize=256)
def retry_policy_of(max_retries: int, delay: float) -> RetryPolicy:
    """The fixed-delay policy of *max_retries* and *delay* (one per distinct pair)."""
    # Shared: max_retries and retry_delay take few distinct values across tasks,
    # and a policy per registered task is memory the garbage collector scans.
    return RetryPolicy(max_retries=max_retries, delay=delay, backoff=1.0)


_NORMAL = int(TaskPriority.NORMAL)
_NO_RETRY = retry_policy_of(0, 1.0)
#: The fields after ``dependencies`` of a task registered with default options.
PLAIN_TASK_OPTIONS = (
    _NORMAL,
    0,
    1.0,
    _NO_RETRY,
    None,
    None,
    None,
    True,
    "",
    (),
    TriggerRule.ALL_SUCCESS,
    None,
)
