"""Workflow files: task graphs described in TOML, validated before anything runs.

A workflow file names tasks (a Python callable by import path, its arguments,
priority, retry policy, timeout, trigger rule, schedule) and their
dependencies::

    [workflow]
    name = "prices"                # shown in output (default: the file's stem)
    workers = 4                    # the pool's maximum; `threadloom run --workers` wins
    timezone = "UTC"               # of the schedules (default: local)
    python_path = ["."]            # put on sys.path, relative to this file (default ["."])
    cluster = "local:4"            # run on Dask (or "tcp://HOST:8786"); `run --cluster` wins

    [tasks.fetch]
    call = "workflow_tasks:fetch_rates"   # module:attribute (or module.attribute)
    args = ["EUR"]
    kwargs = { days = 3 }
    priority = "high"                     # low, normal, high, critical, or an int
    retry = { max_retries = 3, delay = 0.5, backoff = 2.0 }   # or: retry = 3
    timeout = 10.0                        # seconds, from queueing to the end
    tags = ["fetch"]

    [tasks.report]
    call = "workflow_tasks:report"
    depends_on = ["fetch"]
    trigger_rule = "all_done"             # see threadloom.task_manager.TriggerRule
    results_param = "upstream"            # receives {dependency name: result}
    schedule = "*/10 * * * * *"           # cron (5 fields, or 6 with seconds first)
    # schedule = { every = 30, unit = "seconds" }   # an interval
    # schedule = { cron = "0 9 * * MON-FRI", timezone = "Europe/Paris", misfire_grace_time = 60 }

:func:`load_workflow` reads and checks the whole file and raises one
:class:`WorkflowError` listing every problem found, each naming the file, the
task and the field.  :func:`register_workflow` then registers the tasks with a
:class:`~threadloom.task_manager.TaskManager`.

A workflow file is code: loading it imports the modules its ``call`` and
``retry_on`` fields name (running whatever they run at import) and puts its
``python_path`` directories on ``sys.path``; running it calls any function of
any importable module (``call = "os:system"`` is valid).  Load only files you
would run as a script.  :func:`check_workflow` validates a file without
importing anything, so it is safe on a file you have not read yet.

The modules: ``model`` (:class:`TaskSpec`, :class:`Workflow`,
:class:`WorkflowCheck` and the bounds), ``check`` (the checker that validates a
document field by field), ``load`` (reading files and documents through it)
and ``register`` (:func:`register_workflow`).
"""

from .._errors import WorkflowError, WorkflowProblem
from .check import TASK_FIELDS as TASK_FIELDS
from .load import check_workflow, load_workflow, parse_schedule, parse_workflow, workflow_problems
from .model import MAX_SECONDS, MAX_WORKERS, TaskSpec, Workflow, WorkflowCheck
from .register import register_workflow

__all__ = [
    "MAX_SECONDS",
    "MAX_WORKERS",
    "TaskSpec",
    "Workflow",
    "WorkflowCheck",
    "WorkflowError",
    "WorkflowProblem",
    "check_workflow",
    "load_workflow",
    "parse_schedule",
    "parse_workflow",
    "register_workflow",
    "workflow_problems",
]
