"""The checker: one document validated field by field, every problem collected
(callables imported, or only their import paths checked; schedules built)."""

from __future__ import annotations

import datetime as _dt
import difflib
import graphlib
import heapq
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .._errors import WorkflowError, WorkflowProblem
from .._types import TaskPriority
from .._validate import check_priority
from ..graph.dag import TriggerRule
from ..retry import RetryPolicy
from ..scheduling import CronSchedule, IntervalSchedule, OneOffSchedule, Schedule, every
from .model import MAX_SECONDS, MAX_WORKERS, TaskSpec, Workflow, WorkflowCheck

__all__ = ["Checker"]

_TOP_FIELDS = ("workflow", "tasks")
_WORKFLOW_FIELDS = ("name", "workers", "timezone", "python_path", "cluster")
#: The fields of a workflow file's task (the designer edits exactly these).
TASK_FIELDS = (
    "call",
    "args",
    "kwargs",
    "depends_on",
    "priority",
    "retry",
    "timeout",
    "trigger_rule",
    "results_param",
    "schedule",
    "tags",
    "description",
    "enabled",
)
_RETRY_FIELDS = ("max_retries", "delay", "backoff", "max_delay", "jitter", "retry_on")
_SCHEDULE_KINDS = ("cron", "every", "once")
_SCHEDULE_POLICIES = (
    "misfire_grace_time",
    "coalesce",
    "max_instances",
    "on_max_instances",
    "jitter",
    "windows",
    "blackouts",
    "blackout_policy",
)
_SCHEDULE_FIELDS = (*_SCHEDULE_KINDS, "unit", "at", "timezone", *_SCHEDULE_POLICIES)
_INTERVAL_UNITS = (
    "seconds",
    "minutes",
    "hours",
    "days",
    "weeks",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)

#: The most retries a task may ask for.
_MAX_RETRIES = 1_000_000


class Checker:
    """Validates one document, collecting problems instead of stopping at the first.

    With *import_code* False nothing is imported and ``sys.path`` is left
    alone: callables and exception names are checked as import paths only.
    """

    def __init__(self, source: str, base_dir: Path, *, import_code: bool = True) -> None:
        self.source = source
        self.base_dir = base_dir
        self.import_code = import_code
        self.problems: list[WorkflowProblem] = []
        self.cluster: str | None = None

    def problem(self, task: str | None, field: str | None, message: str) -> None:
        self.problems.append(WorkflowProblem(self.source, task, field, message))

    def unknown_fields(
        self, table: Mapping[str, Any], known: Sequence[str], task: str | None, prefix: str = ""
    ) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
                self.problem(task, prefix + key, f"unknown field{hint}")

    # -- the document -----------------------------------------------------------

    def workflow(self, data: Mapping[str, Any]) -> Workflow:
        try:
            name, workers, order, specs = self.document(data)
        except RecursionError:
            self.problem(None, None, "values are nested too deeply")
            raise WorkflowError(self.problems) from None
        if self.problems:
            raise WorkflowError(self.problems)
        return Workflow(
            source=self.source,
            name=name,
            tasks=MappingProxyType({n: specs[n] for n in order}),
            workers=workers,
            cluster=self.cluster,
        )

    def check(self, data: Mapping[str, Any]) -> WorkflowCheck:
        try:
            name, workers, order, _ = self.document(data)
        except RecursionError:
            self.problem(None, None, "values are nested too deeply")
            raise WorkflowError(self.problems) from None
        if self.problems:
            raise WorkflowError(self.problems)
        tables = data["tasks"]
        scheduled = tuple(
            n
            for n in order
            if tables[n].get("schedule") is not None and tables[n].get("enabled", True)
        )
        return WorkflowCheck(self.source, name, tuple(order), scheduled, workers)

    def document(
        self, data: Mapping[str, Any]
    ) -> tuple[str, int | None, list[str], dict[str, TaskSpec]]:
        """Check everything; return (name, workers, task names in order, specs built)."""
        if not isinstance(data, Mapping):
            self.problem(None, None, f"the document must be a table, not {_kind(data)}")
            raise WorkflowError(self.problems)
        self.unknown_fields(data, _TOP_FIELDS, None)
        header = data.get("workflow", {})
        if not isinstance(header, Mapping):
            self.problem(None, "workflow", f"must be a table ([workflow]), not {_kind(header)}")
            header = {}
        self.unknown_fields(header, _WORKFLOW_FIELDS, None, "workflow.")
        name = header.get("name", Path(self.source).stem)
        if not isinstance(name, str) or not name:
            self.problem(None, "workflow.name", f"must be a non-empty string, not {name!r}")
        workers = header.get("workers")
        if workers is not None and (
            isinstance(workers, bool)
            or not isinstance(workers, int)
            or not 1 <= workers <= MAX_WORKERS
        ):
            self.problem(
                None,
                "workflow.workers",
                f"must be an integer from 1 to {MAX_WORKERS}, not {workers!r}",
            )
            workers = None
        cluster = header.get("cluster")
        if cluster is not None and not (
            isinstance(cluster, str) and re.fullmatch(r"local(:[1-9][0-9]*)?|[a-z]+://\S+", cluster)
        ):
            self.problem(
                None,
                "workflow.cluster",
                f"must be 'local:N' or a scheduler address such as 'tcp://HOST:8786', "
                f"not {cluster!r}",
            )
            cluster = None
        self.cluster = cluster
        timezone = header.get("timezone")
        if timezone is not None and not isinstance(timezone, str):
            self.problem(None, "workflow.timezone", f"must be a string, not {_kind(timezone)}")
            timezone = None
        elif timezone is not None:
            try:
                CronSchedule("0 0 * * *", timezone)
            except (ValueError, TypeError, OSError) as exc:
                self.problem(None, "workflow.timezone", f"unknown time zone: {exc}")
                timezone = None
        self.add_python_path(header.get("python_path", ["."]))

        tasks_table = data.get("tasks")
        if tasks_table is None:
            self.problem(None, "tasks", "no tasks: add at least one [tasks.NAME] table")
            raise WorkflowError(self.problems)
        if not isinstance(tasks_table, Mapping):
            self.problem(
                None, "tasks", f"must be a table of tables ([tasks.NAME]), not {_kind(tasks_table)}"
            )
            raise WorkflowError(self.problems)
        if not tasks_table:
            self.problem(None, "tasks", "no tasks: add at least one [tasks.NAME] table")
        specs: dict[str, TaskSpec] = {}
        for task_name, table in tasks_table.items():
            spec = self.task(task_name, table, timezone)
            if spec is not None:
                specs[task_name] = spec
        order = self.graph(tasks_table)
        return str(name), workers, order, specs

    def add_python_path(self, entries: object) -> None:
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            self.problem(None, "workflow.python_path", "must be a list of directory strings")
            return
        for entry in entries:
            directory = (self.base_dir / entry).resolve()
            if not directory.is_dir():
                self.problem(None, "workflow.python_path", f"{str(directory)!r} is not a directory")
            elif self.import_code and str(directory) not in sys.path:
                sys.path.insert(0, str(directory))

    def graph(self, tasks: Mapping[str, Any]) -> list[str]:
        """Check dependencies; return the task names in dependency order."""
        dependencies: dict[str, tuple[str, ...]] = {}
        for name, table in tasks.items():
            deps = table.get("depends_on", []) if isinstance(table, Mapping) else []
            if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
                dependencies[name] = ()
                continue  # reported by task()
            for dep in deps:
                if dep not in tasks:
                    close = difflib.get_close_matches(dep, list(tasks), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.problem(name, "depends_on", f"unknown task {dep!r}{hint}")
                elif dep == name:
                    self.problem(name, "depends_on", "a task cannot depend on itself")
            dependencies[name] = tuple(dict.fromkeys(d for d in deps if d in tasks and d != name))
        order = _stable_order(dependencies)
        if len(order) == len(dependencies):
            return order
        # Some tasks were never ready: they are on, or behind, a cycle.
        # graphlib reports the cycle as [a, b, ..., a] with each node a
        # dependency of the next: reversed, it reads "a depends on b".
        try:
            graphlib.TopologicalSorter(dependencies).prepare()
        except graphlib.CycleError as exc:
            cycle = list(reversed(exc.args[1]))
            self.problem(cycle[0], "depends_on", f"dependency cycle: {' -> '.join(cycle)}")
        return list(tasks)

    # -- one task -------------------------------------------------------------------

    def task(self, name: str, table: object, timezone: str | None) -> TaskSpec | None:
        if not isinstance(table, Mapping):
            self.problem(name, None, f"must be a table ([tasks.{name}]), not {_kind(table)}")
            return None
        before = len(self.problems)
        self.unknown_fields(table, TASK_FIELDS, name)
        call = table.get("call")
        func: Callable[..., Any] | None = None
        if call is None:
            self.problem(
                name, "call", 'missing: the callable to run, e.g. call = "module:function"'
            )
        elif not isinstance(call, str):
            self.problem(name, "call", f"must be a string 'module:function', not {_kind(call)}")
        elif self.import_code:
            func = self.import_callable(name, "call", call)
        else:
            self.import_path(name, "call", call)
        args = table.get("args", [])
        if not isinstance(args, list):
            self.problem(name, "args", f"must be a list, not {_kind(args)}")
            args = []
        kwargs = table.get("kwargs", {})
        if not isinstance(kwargs, Mapping):
            self.problem(name, "kwargs", f"must be a table, not {_kind(kwargs)}")
            kwargs = {}
        depends_on = table.get("depends_on", [])
        if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
            self.problem(
                name,
                "depends_on",
                f'must be a list of task names, e.g. depends_on = ["fetch"]; got {depends_on!r}',
            )
            depends_on = []
        priority = self.priority(name, table.get("priority", "normal"))
        retry = self.retry(name, table.get("retry"))
        timeout = self.seconds(name, "timeout", table.get("timeout"), allow_zero=False)
        trigger_rule = TriggerRule.ALL_SUCCESS
        rule = table.get("trigger_rule", TriggerRule.ALL_SUCCESS.value)
        try:
            trigger_rule = TriggerRule(rule)
        except ValueError:
            choices = ", ".join(r.value for r in TriggerRule)
            self.problem(name, "trigger_rule", f"unknown rule {rule!r}; use one of {choices}")
        results_param = table.get("results_param")
        if results_param is not None and (
            not isinstance(results_param, str) or not results_param.isidentifier()
        ):
            self.problem(
                name, "results_param", f"must be a Python keyword name, not {results_param!r}"
            )
        elif results_param is not None and results_param in kwargs:
            self.problem(name, "results_param", f"{results_param!r} is also given in kwargs")
        if func is not None and len(self.problems) == before:
            self.signature(name, func, str(call), args, kwargs, results_param)
        schedule = self.schedule(name, table.get("schedule"), timezone)
        tags = table.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            self.problem(name, "tags", f"must be a list of strings, not {tags!r}")
            tags = []
        description = table.get("description", "")
        if not isinstance(description, str):
            self.problem(name, "description", f"must be a string, not {_kind(description)}")
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem(name, "enabled", f"must be true or false, not {enabled!r}")
        if len(self.problems) > before or func is None:
            return None
        return TaskSpec(
            name=name,
            func=func,
            call=str(call),
            args=tuple(args),
            kwargs=MappingProxyType(dict(kwargs)),
            depends_on=tuple(dict.fromkeys(depends_on)),
            priority=priority,
            retry=retry,
            timeout=timeout,
            trigger_rule=trigger_rule,
            results_param=results_param,
            schedule=schedule,
            tags=tuple(tags),
            description=description,
            enabled=enabled,
        )

    def signature(
        self,
        task: str,
        func: Callable[..., Any],
        call: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        results_param: str | None,
    ) -> None:
        """Check that *func* accepts *args*, *kwargs* and, at run time, *results_param*."""
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            return  # some builtins have none: they are checked when called
        try:
            signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            field = "args" if "positional" in str(exc) else "kwargs"
            self.problem(task, field, f"{call}{signature} cannot take these: {exc}")
            return
        injected: dict[str, object] = {} if results_param is None else {results_param: {}}
        if results_param is not None:
            try:
                signature.bind_partial(**injected)
            except TypeError:
                self.problem(
                    task,
                    "results_param",
                    f"{call}{signature} has no parameter {results_param!r} to receive "
                    "the results of its dependencies",
                )
                return
        try:
            signature.bind(*args, **kwargs, **injected)
        except TypeError as exc:
            self.problem(task, "args", f"{call}{signature} is not given everything it needs: {exc}")

    def import_path(self, task: str, field: str, path: str) -> None:
        """Check that *path* reads as ``module:attribute``, without importing it."""
        if ":" in path:
            module_name, _, attribute = path.partition(":")
        else:
            module_name, _, attribute = path.rpartition(".")
        parts = [*module_name.split("."), *attribute.split(".")]
        if not module_name or not attribute or not all(p.isidentifier() for p in parts):
            self.problem(task, field, f"{path!r} is not an import path; write 'module:function'")

    def import_callable(self, task: str, field: str, path: str) -> Callable[..., Any] | None:
        obj = self.import_object(task, field, path)
        if obj is not None and not callable(obj):
            self.problem(task, field, f"{path!r} is a {type(obj).__name__}, not a callable")
            return None
        return obj  # type: ignore[no-any-return]

    def import_object(self, task: str, field: str, path: str) -> Any:
        if ":" in path:
            module_name, _, attribute = path.partition(":")
        else:
            module_name, _, attribute = path.rpartition(".")
        if not module_name or not attribute:
            self.problem(task, field, f"{path!r} is not an import path; write 'module:function'")
            return None
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or module_name
            self.problem(
                task,
                field,
                f"cannot import module {module_name!r}: no module named {missing!r} "
                f"(searched the workflow's python_path and sys.path)",
            )
            return None
        except SystemExit as exc:
            self.problem(
                task, field, f"importing module {module_name!r} called sys.exit({exc.code!r})"
            )
            return None
        except Exception as exc:
            self.problem(
                task,
                field,
                f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}",
            )
            return None
        obj: Any = module
        for part in attribute.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                self.problem(task, field, f"module {module_name!r} has no attribute {attribute!r}")
                return None
        return obj

    def priority(self, task: str, value: object) -> int:
        # The one parser of priorities: the file accepts what options() does.
        try:
            return check_priority(value)
        except (TypeError, ValueError) as exc:
            self.problem(task, "priority", str(exc))
            return int(TaskPriority.NORMAL)

    def seconds(self, task: str, field: str, value: object, *, allow_zero: bool) -> float | None:
        if value is None:
            return None
        bound = ">= 0" if allow_zero else "> 0"
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value != value  # NaN
            or value < 0
            or (value == 0 and not allow_zero)
        ):
            self.problem(task, field, f"must be a number of seconds {bound}, not {value!r}")
            return None
        if value > MAX_SECONDS:
            self.problem(
                task, field, f"must be at most {MAX_SECONDS} seconds (a year), not {value!r}"
            )
            return None
        return float(value)

    def retry(self, task: str, value: object) -> RetryPolicy | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = {"max_retries": value}
        if not isinstance(value, Mapping):
            self.problem(
                task,
                "retry",
                "must be a number of retries or a table, e.g. "
                f"retry = {{ max_retries = 3, delay = 0.5, backoff = 2.0 }}; got {value!r}",
            )
            return None
        before = len(self.problems)
        self.unknown_fields(value, _RETRY_FIELDS, task, "retry.")
        # Each field on its own, so that every bad one is reported, through
        # RetryPolicy's own validators (plus the bounds a file must respect).
        options: dict[str, Any] = {}
        for key in ("max_retries", "delay", "backoff", "max_delay", "jitter"):
            if key not in value:
                continue
            option = value[key]
            if key in ("delay", "max_delay", "jitter"):
                if self.seconds(task, f"retry.{key}", option, allow_zero=True) is None:
                    continue
            elif (
                key == "max_retries"
                and isinstance(option, int)
                and not isinstance(option, bool)
                and option > _MAX_RETRIES
            ):
                self.problem(task, "retry.max_retries", f"must be at most {_MAX_RETRIES}")
                continue
            try:
                RetryPolicy(**{key: option})
            except (TypeError, ValueError) as exc:
                self.problem(task, f"retry.{key}", str(exc))
                continue
            options[key] = option
        if "retry_on" in value:
            classes = self.exception_classes(task, value["retry_on"])
            if classes is not None:
                options["retry_on"] = classes
        if len(self.problems) > before or not self.import_code:
            return None
        try:
            return RetryPolicy(**options)
        except (TypeError, ValueError) as exc:
            self.problem(task, "retry", str(exc))
            return None

    def exception_classes(self, task: str, value: object) -> tuple[type[BaseException], ...] | None:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            self.problem(
                task, "retry.retry_on", f"must be a list of exception names, not {value!r}"
            )
            return None
        classes: list[type[BaseException]] = []
        before = len(self.problems)
        for name in names:
            path = name if ("." in name or ":" in name) else f"builtins:{name}"
            if not self.import_code:
                self.import_path(task, "retry.retry_on", path)
                continue
            obj = self.import_object(task, "retry.retry_on", path)
            if obj is None:
                continue
            if not (isinstance(obj, type) and issubclass(obj, BaseException)):
                self.problem(task, "retry.retry_on", f"{name!r} is not an exception class")
                continue
            classes.append(obj)
        if len(self.problems) > before:
            return None
        return tuple(classes)

    def schedule(self, task: str, value: object, timezone: str | None) -> Schedule | None:
        if value is None:
            return None
        as_string = isinstance(value, str)
        if as_string:
            value = {"cron": value}
        if not isinstance(value, Mapping):
            self.problem(
                task,
                "schedule",
                'must be a cron string or a table such as { every = 30, unit = "seconds" }; '
                f"got {value!r}",
            )
            return None
        before = len(self.problems)
        self.unknown_fields(value, _SCHEDULE_FIELDS, task, "schedule.")
        kinds = [k for k in _SCHEDULE_KINDS if k in value]
        if len(kinds) != 1:
            self.problem(
                task,
                "schedule",
                "give exactly one of cron, every or once"
                + (f" (got {', '.join(kinds)})" if kinds else ""),
            )
            return None
        kind = kinds[0]
        zone = value.get("timezone", timezone)
        if "timezone" in value:
            try:
                if not isinstance(zone, str):
                    raise TypeError(f"must be a time zone name, not {_kind(zone)}")
                CronSchedule("0 0 * * *", zone)
            except (TypeError, ValueError, OSError) as exc:
                self.problem(task, "schedule.timezone", str(exc))
                zone = timezone
        # Each policy on its own (on a schedule that always fires), so that every
        # bad one is reported, by the scheduling module's own validators.
        policies: dict[str, Any] = {}
        for policy in _SCHEDULE_POLICIES:
            if policy not in value:
                continue
            option = value[policy]
            if policy in ("misfire_grace_time", "jitter"):
                allow_zero = policy == "jitter"
                if self.seconds(task, f"schedule.{policy}", option, allow_zero=allow_zero) is None:
                    continue
            try:
                CronSchedule("* * * * *", "UTC", **{policy: option})
            except (TypeError, ValueError) as exc:
                self.problem(task, f"schedule.{policy}", str(exc))
                continue
            policies[policy] = option
        made = self.schedule_of_kind(task, kind, value, zone, {}, as_string)
        if made is None or len(self.problems) > before:
            return None
        try:
            schedule = self.schedule_of_kind(task, kind, value, zone, policies, as_string)
        except Exception as exc:
            # The policies are valid one by one; together they can contradict
            # the time (windows that never meet a cron expression).
            self.problem(task, "schedule", str(exc))
            return None
        if isinstance(schedule, OneOffSchedule):
            self.check_not_past(task, schedule)
        return schedule

    def schedule_of_kind(
        self,
        task: str,
        kind: str,
        value: Mapping[str, Any],
        zone: str | None,
        policies: dict[str, Any],
        as_string: bool,
    ) -> Schedule | None:
        """Build the schedule; with no *policies*, report its problems (None if any)."""
        field = "schedule" if as_string else f"schedule.{kind}"
        try:
            if kind == "cron":
                expr = value["cron"]
                if not isinstance(expr, str):
                    raise TypeError(f"must be a cron string, not {_kind(expr)}")
                for extra in ("unit", "at"):
                    if extra in value:
                        raise ValueError(f"{extra!r} belongs to an 'every' schedule, not to cron")
                return CronSchedule(expr, zone, **policies)
            if kind == "once":
                moment = value["once"]
                if not isinstance(moment, _dt.datetime):
                    raise TypeError(
                        f"must be a TOML date-time, e.g. once = 2030-01-01T09:00:00, not {moment!r}"
                    )
                return OneOffSchedule(moment, zone, **policies)
            count = value["every"]
            unit = value.get("unit")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"must be an integer >= 1, not {count!r}")
            if count > MAX_SECONDS:
                raise ValueError(f"must be at most {MAX_SECONDS}, not {count!r}")
            if unit not in _INTERVAL_UNITS:
                field = "schedule.unit"
                raise ValueError(f"must be one of {', '.join(_INTERVAL_UNITS)}; got {unit!r}")
            job = getattr(every(count), unit)
            at = value.get("at")
            if at is not None:
                field = "schedule.at"
                if not isinstance(at, str):
                    raise TypeError(f"must be a time string such as '09:30', not {at!r}")
                job = job.at(at)
            field = "schedule"
            return IntervalSchedule(job, zone, **policies)
        except Exception as exc:
            if policies:
                raise
            # The scheduling module's messages name what is wrong (for cron, the field).
            self.problem(task, field, str(exc))
            return None

    def check_not_past(self, task: str, schedule: OneOffSchedule) -> None:
        """A one-off time already past would fire at once: refuse it (unless within its grace)."""
        now = _dt.datetime.now(_dt.timezone.utc)
        late = (now - schedule.at).total_seconds()
        grace = schedule.misfire_grace_time
        if late >= 0 and (grace is None or late > grace):
            current = now.astimezone(schedule.tz).isoformat(timespec="seconds")
            self.problem(
                task,
                "schedule.once",
                f"{schedule.at.isoformat()} is in the past (now {current}); "
                "a one-off schedule must be in the future",
            )


def _stable_order(dependencies: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Kahn's algorithm, taking among the ready tasks the one declared first.

    So the order is the file's wherever dependencies allow.  Tasks on or
    behind a cycle are left out (the caller compares lengths).
    """
    position = {name: index for index, name in enumerate(dependencies)}
    waiting = {name: len(deps) for name, deps in dependencies.items()}
    dependents: dict[str, list[str]] = {name: [] for name in dependencies}
    for name, deps in dependencies.items():
        for dep in deps:
            dependents[dep].append(name)
    ready = [position[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    names = list(dependencies)
    order = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, position[dependent])
    return order


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
