"""Registering: a validated workflow's tasks handed to a task manager."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import WorkflowError, WorkflowProblem
from .model import Workflow

if TYPE_CHECKING:
    from ..graph.manager import TaskManager

__all__ = ["register_workflow"]


def register_workflow(
    workflow: Workflow, manager: TaskManager, *, schedules: bool = True
) -> dict[str, str]:
    """Register every task of *workflow* with *manager*, dependencies first.

    Each task's arguments are bound to its function with
    :func:`functools.partial`, so that no argument name is taken by
    ``register_task``'s own keywords.

    Args:
        workflow: The workflow.
        manager: The task manager (started or not).
        schedules: Register the schedules (False: the tasks only run when executed).

    Returns:
        Task name -> task id.

    Raises:
        WorkflowError: The manager refused a task (for instance a name already
            registered, or a one-off time in the past); the tasks registered
            before it stay registered.
    """
    ids: dict[str, str] = {}
    for spec in workflow.tasks.values():
        func: Callable[..., Any] = spec.func
        if spec.args or spec.kwargs:
            func = functools.partial(spec.func, *spec.args, **spec.kwargs)
        try:
            ids[spec.name] = manager.register_task(
                spec.name,
                func,
                dependencies=[ids[d] for d in spec.depends_on],
                priority=spec.priority,
                retry=spec.retry,
                timeout=spec.timeout,
                schedule=spec.schedule if schedules else None,
                enabled=spec.enabled,
                description=spec.description or spec.call,
                tags=spec.tags,
                trigger_rule=spec.trigger_rule,
                results_param=spec.results_param,
            )
        except (TypeError, ValueError) as exc:
            raise WorkflowError(
                [WorkflowProblem(workflow.source, spec.name, None, f"cannot register: {exc}")]
            ) from exc
    return ids
