"""Workflow files: loading, every class of validation error, registering with a TaskManager."""

from __future__ import annotations

import datetime as dt
import itertools
import sys
import textwrap
from pathlib import Path

import pytest

from threadloom import RetryPolicy, TaskPriority, TaskStatus
from threadloom.graph.dag import TriggerRule
from threadloom.scheduling import CronSchedule, IntervalSchedule, OneOffSchedule
from threadloom.task_manager import TaskManager
from threadloom.workflow import (
    TaskSpec,
    Workflow,
    WorkflowCheck,
    WorkflowError,
    WorkflowProblem,
    check_workflow,
    load_workflow,
    parse_workflow,
    register_workflow,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "workflow.toml"
WAIT = 10.0

_module_numbers = itertools.count()


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # load_workflow puts python_path entries on sys.path; keep each test's to itself.
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def tasks_module(tmp_path: Path) -> str:
    """A module of task functions in tmp_path, under a name no other test uses."""
    name = f"wf_tasks_{next(_module_numbers)}_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            NOT_CALLABLE = 42

            def add(a, b=0, *, priority="unset"):
                return (a + b, priority)

            def total(upstream):
                return sum(value[0] for value in upstream.values())

            def boom():
                raise RuntimeError("boom")
            """
        )
    )
    return name


def write(tmp_path: Path, text: str, name: str = "flow.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[WorkflowProblem]:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert all(p.file == str(path) for p in caught.value.problems)
    return list(caught.value.problems)


def only_problem(path: Path) -> WorkflowProblem:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return problems[0]


# --------------------------------------------------------------------------- valid files


def test_the_example_loads_with_every_field_resolved() -> None:
    workflow = load_workflow(EXAMPLE)

    assert workflow.name == "sales-digest"
    assert workflow.workers == 4
    # Dependency order, and the file's order wherever dependencies allow it.
    assert list(workflow.tasks) == [
        "load_eu",
        "load_us",
        "load_apac",
        "check",
        "totals",
        "report",
        "heartbeat",
    ]
    load_us = workflow.tasks["load_us"]
    assert load_us.args == ("us",)
    assert dict(load_us.kwargs) == {"count": 60, "latency": 0.3}
    assert load_us.priority == TaskPriority.HIGH
    assert load_us.retry == RetryPolicy(max_retries=3, delay=0.2, backoff=2.0)
    assert workflow.tasks["load_eu"].timeout == 10.0
    assert workflow.tasks["check"].trigger_rule is TriggerRule.ALL_DONE
    assert workflow.tasks["check"].depends_on == ("load_eu", "load_us", "load_apac")
    assert workflow.tasks["totals"].priority == TaskPriority.LOW
    assert isinstance(workflow.tasks["report"].schedule, CronSchedule)
    assert isinstance(workflow.tasks["heartbeat"].schedule, IntervalSchedule)
    assert [t.name for t in workflow.scheduled] == ["report", "heartbeat"]
    # The callable was imported from next to the file.
    assert workflow.tasks["load_eu"].func.__module__ == "workflow_tasks"
    assert str(EXAMPLE.parent) in sys.path


def test_closure_is_a_task_and_everything_it_depends_on_in_order() -> None:
    workflow = load_workflow(EXAMPLE)

    assert workflow.closure(["totals"]) == ["load_eu", "load_us", "load_apac", "check", "totals"]
    assert workflow.closure(["heartbeat"]) == ["heartbeat"]


def test_short_forms_and_schedule_forms(tmp_path: Path, tasks_module: str) -> None:
    path = write(
        tmp_path,
        f"""
        [workflow]
        timezone = "Europe/Paris"

        [tasks.a]
        call = "{tasks_module}.add"
        args = [1]
        retry = 2
        priority = 7
        schedule = "0 9 * * MON-FRI"

        [tasks.b]
        call = "{tasks_module}:add"
        args = [1]
        schedule = {{ every = 1, unit = "monday", at = "09:30", timezone = "UTC" }}

        [tasks.c]
        call = "{tasks_module}:add"
        args = [1]
        schedule = {{ once = 2099-01-01T09:00:00, misfire_grace_time = 30 }}
        """,
    )
    workflow = load_workflow(path)
    a, b, c = (workflow.tasks[n] for n in "abc")

    assert a.retry == RetryPolicy(max_retries=2)
    assert a.priority == 7
    assert isinstance(a.schedule, CronSchedule) and str(a.schedule.tz) == "Europe/Paris"
    assert isinstance(b.schedule, IntervalSchedule) and str(b.schedule.tz) == "UTC"
    assert b.schedule.start_day == "monday" and b.schedule.at_time == dt.time(9, 30)
    assert isinstance(c.schedule, OneOffSchedule)
    assert c.schedule.misfire_grace_time == 30.0
    assert c.schedule.at.replace(tzinfo=None) == dt.datetime(2099, 1, 1, 9, 0)


def test_a_dict_document_is_validated_too() -> None:
    workflow = parse_workflow({"tasks": {"cwd": {"call": "os:getcwd"}}}, source="inline")

    assert workflow.source == "inline"
    assert list(workflow.tasks) == ["cwd"]


# --------------------------------------------------------------------------- errors, by class


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    problem = only_problem(tmp_path / "absent.toml")

    assert (problem.task, problem.field, problem.message) == (None, None, "no such file")


def test_a_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[tasks.a]\ncall = "os:getcwd"\npriority = high\n')

    problem = only_problem(path)

    assert problem.task is None
    assert "not valid TOML" in problem.message and "line 3" in problem.message


@pytest.mark.parametrize(
    ("body", "task", "field", "fragment"),
    [
        # Unknown fields, at every level, with a suggestion.
        ('[tasks.a]\ncall = "os:getcwd"\ndepnds_on = []', "a", "depnds_on", "'depends_on'"),
        ('[tasks.a]\ncall = "os:getcwd"\n[extra]\nx = 1', None, "extra", "unknown field"),
        (
            '[workflow]\nworkers2 = 3\n[tasks.a]\ncall = "os:getcwd"',
            None,
            "workflow.workers2",
            "'workers'",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nretry = { backof = 2.0 }',
            "a",
            "retry.backof",
            "'backoff'",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nschedule = { cron = "@daily", timezon = "UTC" }',
            "a",
            "schedule.timezon",
            "'timezone'",
        ),
        # The callable.
        ("[tasks.a]\nargs = []", "a", "call", "missing"),
        ("[tasks.a]\ncall = 3", "a", "call", "must be a string"),
        ('[tasks.a]\ncall = "getcwd"', "a", "call", "not an import path"),
        (
            '[tasks.a]\ncall = "no_such_module_xyz:f"',
            "a",
            "call",
            "no module named 'no_such_module_xyz'",
        ),
        (
            '[tasks.a]\ncall = "os:no_such_function"',
            "a",
            "call",
            "has no attribute 'no_such_function'",
        ),
        ('[tasks.a]\ncall = "os:sep"', "a", "call", "not a callable"),
        # Arguments.
        ('[tasks.a]\ncall = "os:getcwd"\nargs = "x"', "a", "args", "must be a list"),
        ('[tasks.a]\ncall = "os:getcwd"\nkwargs = [1]', "a", "kwargs", "must be a table"),
        # Priority.
        (
            '[tasks.a]\ncall = "os:getcwd"\npriority = "urgent"',
            "a",
            "priority",
            "unknown priority 'urgent'",
        ),
        ('[tasks.a]\ncall = "os:getcwd"\npriority = true', "a", "priority", "must be one of"),
        ('[tasks.a]\ncall = "os:getcwd"\npriority = 9999999999', "a", "priority", "out of range"),
        # Retry policy.
        (
            '[tasks.a]\ncall = "os:getcwd"\nretry = "often"',
            "a",
            "retry",
            "number of retries or a table",
        ),
        ('[tasks.a]\ncall = "os:getcwd"\nretry = { delay = -1 }', "a", "retry.delay", ">= 0"),
        ('[tasks.a]\ncall = "os:getcwd"\nretry = { backoff = 0.5 }', "a", "retry.backoff", ">= 1"),
        (
            '[tasks.a]\ncall = "os:getcwd"\nretry = { max_retries = -2 }',
            "a",
            "retry.max_retries",
            ">= 0",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nretry = { retry_on = ["NoSuchError"] }',
            "a",
            "retry.retry_on",
            "no attribute 'NoSuchError'",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nretry = { retry_on = ["os.getcwd"] }',
            "a",
            "retry.retry_on",
            "not an exception class",
        ),
        # Timeout.
        ('[tasks.a]\ncall = "os:getcwd"\ntimeout = 0', "a", "timeout", "> 0"),
        ('[tasks.a]\ncall = "os:getcwd"\ntimeout = -1.5', "a", "timeout", "> 0"),
        ('[tasks.a]\ncall = "os:getcwd"\ntimeout = "10s"', "a", "timeout", "number of seconds"),
        # Trigger rule and results parameter.
        (
            '[tasks.a]\ncall = "os:getcwd"\ntrigger_rule = "sometimes"',
            "a",
            "trigger_rule",
            "all_success, all_done",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nresults_param = "not valid"',
            "a",
            "results_param",
            "keyword name",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nresults_param = "x"\nkwargs = { x = 1 }',
            "a",
            "results_param",
            "also given in kwargs",
        ),
        # Schedules.
        (
            '[tasks.a]\ncall = "os:getcwd"\nschedule = "61 * * * *"',
            "a",
            "schedule",
            "bad minute field '61'",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nschedule = { cron = "* * * *" }',
            "a",
            "schedule.cron",
            "cron",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nschedule = { every = 0, unit = "seconds" }',
            "a",
            "schedule.every",
            ">= 1",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nschedule = { every = 5, unit = "fortnights" }',
            "a",
            "schedule.unit",
            "'fortnights'",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nschedule = { every = 1, unit = "days", at = "25:99" }',
            "a",
            "schedule.at",
            "",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nschedule = { cron = "* * * * *", every = 5 }',
            "a",
            "schedule",
            "exactly one of",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nschedule = { unit = "seconds" }',
            "a",
            "schedule",
            "exactly one of",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nschedule = { once = "tomorrow" }',
            "a",
            "schedule.once",
            "date-time",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\nschedule = { cron = "* * * * *", coalesce = "some" }',
            "a",
            "schedule.coalesce",
            "coalesce",
        ),
        (
            '[tasks.a]\ncall = "os:getcwd"\n'
            'schedule = { cron = "* * * * *", timezone = "Mars/Base" }',
            "a",
            "schedule.timezone",
            "Mars/Base",
        ),
        ('[tasks.a]\ncall = "os:getcwd"\nschedule = 5', "a", "schedule", "cron string or a table"),
        # Other fields.
        ('[tasks.a]\ncall = "os:getcwd"\ntags = "x"', "a", "tags", "list of strings"),
        ('[tasks.a]\ncall = "os:getcwd"\nenabled = "yes"', "a", "enabled", "true or false"),
        ('[tasks.a]\ncall = "os:getcwd"\ndescription = 3', "a", "description", "string"),
        # The [workflow] table.
        (
            '[workflow]\nworkers = 0\n[tasks.a]\ncall = "os:getcwd"',
            None,
            "workflow.workers",
            "from 1 to 10000",
        ),
        (
            '[workflow]\nworkers = 99999999999999999999\n[tasks.a]\ncall = "os:getcwd"',
            None,
            "workflow.workers",
            "from 1 to 10000",
        ),
        (
            '[workflow]\ntimezone = "Mars/Base"\n[tasks.a]\ncall = "os:getcwd"',
            None,
            "workflow.timezone",
            "unknown time zone",
        ),
        (
            '[workflow]\npython_path = ["no/such/dir"]\n[tasks.a]\ncall = "os:getcwd"',
            None,
            "workflow.python_path",
            "not a directory",
        ),
        (
            '[workflow]\nname = ""\n[tasks.a]\ncall = "os:getcwd"',
            None,
            "workflow.name",
            "non-empty",
        ),
        # The tasks table.
        ("[workflow]\nname = 'x'", None, "tasks", "no tasks"),
        ("tasks = 3", None, "tasks", "table of tables"),
        ("[[tasks]]\ncall = 'os:getcwd'", None, "tasks", "table of tables"),
        ("[tasks]\na = 3", "a", None, "must be a table"),
    ],
)
def test_each_error_names_the_file_the_task_and_the_field(
    tmp_path: Path, body: str, task: str | None, field: str | None, fragment: str
) -> None:
    path = write(tmp_path, body)

    problem = only_problem(path)

    assert (problem.task, problem.field) == (task, field), problem
    assert fragment in problem.message
    text = str(problem)
    assert text.startswith(f"{path}: ")
    if task is not None:
        assert f"task {task!r}" in text
    if field is not None:
        assert f"field {field!r}" in text


def test_a_module_that_fails_to_import_is_reported(tmp_path: Path) -> None:
    name = f"broken_{next(_module_numbers)}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('half-written module')\n")
    path = write(tmp_path, f'[tasks.a]\ncall = "{name}:f"\n')

    problem = only_problem(path)

    assert problem.field == "call"
    assert "RuntimeError: half-written module" in problem.message


@pytest.mark.parametrize(
    ("body", "task", "fragment"),
    [
        ('[tasks.a]\ncall = "os:getcwd"\ndepends_on = ["fetch"]', "a", "unknown task 'fetch'"),
        (
            '[tasks.fetch]\ncall = "os:getcwd"\n'
            '[tasks.a]\ncall = "os:getcwd"\ndepends_on = ["fetc"]',
            "a",
            "did you mean 'fetch'",
        ),
        ('[tasks.a]\ncall = "os:getcwd"\ndepends_on = ["a"]', "a", "cannot depend on itself"),
        (
            '[tasks.a]\ncall = "os:getcwd"\ndepends_on = "b"\n[tasks.b]\ncall = "os:getcwd"',
            "a",
            "list of task names",
        ),
    ],
)
def test_dependency_errors(tmp_path: Path, body: str, task: str, fragment: str) -> None:
    problem = only_problem(write(tmp_path, body))

    assert (problem.task, problem.field) == (task, "depends_on")
    assert fragment in problem.message


def test_a_cycle_is_named_in_dependency_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [tasks.free]
        call = "os:getcwd"
        [tasks.a]
        call = "os:getcwd"
        depends_on = ["b"]
        [tasks.b]
        call = "os:getcwd"
        depends_on = ["c"]
        [tasks.c]
        call = "os:getcwd"
        depends_on = ["a", "free"]
        """,
    )

    problem = only_problem(path)

    assert problem.field == "depends_on"
    # "x -> y" reads "x depends on y"; the cycle may start at any of its tasks.
    cycle = problem.message.removeprefix("dependency cycle: ").split(" -> ")
    assert cycle[0] == cycle[-1] and problem.task == cycle[0]
    edges = set(itertools.pairwise(cycle))
    assert edges == {("a", "b"), ("b", "c"), ("c", "a")}


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [tasks.a]
        call = "os:no_such_function"
        priority = "urgent"
        [tasks.b]
        call = "os:getcwd"
        timeout = -1
        depends_on = ["nothing"]
        """,
    )

    problems = problems_of(path)

    assert {(p.task, p.field) for p in problems} == {
        ("a", "call"),
        ("a", "priority"),
        ("b", "timeout"),
        ("b", "depends_on"),
    }
    message = str(WorkflowError(problems))
    assert message.startswith(f"invalid workflow {path} (4 problems):")


def test_every_problem_inside_a_retry_table_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [tasks.a]
        call = "os:getcwd"
        [tasks.a.retry]
        max_retries = -1
        delay = -2
        backoff = 0.5
        jitter = 1e308
        retry_on = ["NoSuchError", "os.getcwd"]
        """,
    )

    fields = sorted(p.field or "" for p in problems_of(path))

    assert fields == [
        "retry.backoff",
        "retry.delay",
        "retry.jitter",
        "retry.max_retries",
        "retry.retry_on",
        "retry.retry_on",
    ]


def test_every_problem_inside_a_schedule_table_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [tasks.a]
        call = "os:getcwd"
        [tasks.a.schedule]
        cron = "61 * * * *"
        timezone = "Mars/Base"
        coalesce = "some"
        max_instances = 0
        jitter = 1e308
        misfire_grace_time = -1
        """,
    )

    fields = sorted(p.field or "" for p in problems_of(path))

    assert fields == [
        "schedule.coalesce",
        "schedule.cron",
        "schedule.jitter",
        "schedule.max_instances",
        "schedule.misfire_grace_time",
        "schedule.timezone",
    ]


def test_a_one_off_schedule_in_the_past_is_refused(tmp_path: Path) -> None:
    problem = only_problem(
        write(tmp_path, '[tasks.a]\ncall = "os:getcwd"\nschedule = { once = 2020-01-01T09:00:00 }')
    )

    assert (problem.task, problem.field) == ("a", "schedule.once")
    assert "2020-01-01T09:00:00" in problem.message and "in the past" in problem.message


def test_a_one_off_schedule_in_the_future_is_accepted(tmp_path: Path) -> None:
    workflow = load_workflow(
        write(tmp_path, '[tasks.a]\ncall = "os:getcwd"\nschedule = { once = 2999-01-01T09:00:00 }')
    )

    assert isinstance(workflow.tasks["a"].schedule, OneOffSchedule)


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ("args = [1, 2, 3]", "args", "too many positional arguments"),
        ("kwargs = { c = 1 }", "kwargs", "unexpected keyword argument 'c'"),
        ('kwargs = { priority = "x" }\nargs = []', "args", "missing a required argument: 'a'"),
        ('results_param = "upstream"\nargs = [1]', "results_param", "no parameter 'upstream'"),
    ],
)
def test_arguments_are_checked_against_the_signature(
    tmp_path: Path, tasks_module: str, fields: str, field: str, fragment: str
) -> None:
    path = write(tmp_path, f'[tasks.a]\ncall = "{tasks_module}:add"\n{fields}\n')

    problem = only_problem(path)

    assert (problem.task, problem.field) == ("a", field)
    assert fragment in problem.message and "add(a, b=0, *, priority='unset')" in problem.message


def test_the_results_parameter_counts_as_given(tmp_path: Path, tasks_module: str) -> None:
    # total(upstream) has one required parameter, given at run time.
    workflow = load_workflow(
        write(
            tmp_path,
            f'[tasks.a]\ncall = "{tasks_module}:total"\nresults_param = "upstream"\n',
        )
    )

    assert workflow.tasks["a"].results_param == "upstream"


def test_a_module_that_exits_at_import_is_reported(tmp_path: Path) -> None:
    name = f"exits_{next(_module_numbers)}"
    (tmp_path / f"{name}.py").write_text("import sys\nsys.exit(42)\n")

    problem = only_problem(write(tmp_path, f'[tasks.a]\ncall = "{name}:f"\n'))

    assert problem.field == "call"
    assert "called sys.exit(42)" in problem.message


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[tasks.a]\ncall = "os:getcwd"\ndescription = "café"\n'.encode("latin-1"))

    problem = only_problem(path)

    assert "not UTF-8" in problem.message and "0xe9" in problem.message


def test_deeply_nested_arrays_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, '[tasks.a]\ncall = "os:getcwd"\nargs = ' + "[" * 5000 + "]" * 5000)

    problem = only_problem(path)

    assert "nested too deeply" in problem.message


# --------------------------------------------------------------------------- --check: no imports


def test_check_does_not_import_or_touch_sys_path(tmp_path: Path) -> None:
    name = f"side_effect_{next(_module_numbers)}"
    marker = tmp_path / "imported.txt"
    (tmp_path / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\ndef f(): pass\n"
    )
    path = write(
        tmp_path,
        f"""
        [tasks.a]
        call = "{name}:f"
        retry = {{ retry_on = ["{name}.Error"] }}
        [tasks.b]
        call = "{name}:f"
        depends_on = ["a"]
        schedule = "*/5 * * * *"
        """,
    )
    path_before = list(sys.path)

    check = check_workflow(path)

    assert not marker.exists()
    assert sys.path == path_before
    assert name not in sys.modules
    assert check == WorkflowCheck(str(path), "flow", ("a", "b"), ("b",), None)


def test_check_reports_syntax_fields_graph_and_schedules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [tasks.a]
        call = "not a path"
        priority = "urgent"
        retry = { retry_on = ["no way"] }
        depends_on = ["b"]
        [tasks.b]
        call = "os:getcwd"
        depends_on = ["a"]
        schedule = "61 * * * *"
        [tasks.c]
        call = "never_imported_module:f"
        """,
    )

    with pytest.raises(WorkflowError) as caught:
        check_workflow(path)

    assert {(p.task, p.field) for p in caught.value.problems} == {
        ("a", "call"),
        ("a", "priority"),
        ("a", "retry.retry_on"),
        ("b", "schedule"),
        ("a", "depends_on"),  # the cycle
    }


# --------------------------------------------------------------------------- registering


def test_register_and_run_with_a_task_manager(tmp_path: Path, tasks_module: str) -> None:
    path = write(
        tmp_path,
        f"""
        [tasks.one]
        call = "{tasks_module}:add"
        args = [1]
        kwargs = {{ b = 2, priority = "is the function's" }}
        priority = "high"

        [tasks.two]
        call = "{tasks_module}:add"
        args = [10]

        [tasks.sum]
        call = "{tasks_module}:total"
        depends_on = ["one", "two"]
        results_param = "upstream"
        tags = ["report"]
        """,
    )
    workflow = load_workflow(path)

    with TaskManager() as manager:
        ids = register_workflow(workflow, manager)
        assert list(ids) == ["one", "two", "sum"]
        registered = manager.get_task(ids["sum"])
        assert registered.dependencies == (ids["one"], ids["two"])
        assert registered.tags == ("report",)
        assert manager.get_task(ids["one"]).priority == TaskPriority.HIGH
        (execution,) = manager.execute_tasks([ids["sum"]])
        assert manager.wait_for_execution(execution, timeout=WAIT)
        results = manager.get_execution_status(execution).results

    # A keyword named like one of register_task's own reaches the function.
    assert results["one"] == (3, "is the function's")
    assert results["two"] == (10, "unset")
    assert results["sum"] == 13


def test_registering_a_name_already_taken_is_a_workflow_error(
    tmp_path: Path, tasks_module: str
) -> None:
    document = {"tasks": {"a": {"call": f"{tasks_module}:add", "args": [1]}}}
    workflow = parse_workflow(document, base_dir=tmp_path)
    with TaskManager() as manager:
        manager.register_task("a", print)
        with pytest.raises(WorkflowError) as caught:
            register_workflow(workflow, manager)
    (problem,) = caught.value.problems
    assert problem.task == "a" and "already registered" in problem.message


def test_without_schedules_scheduled_tasks_are_registered_unscheduled() -> None:
    workflow = load_workflow(EXAMPLE)
    with TaskManager() as manager:
        ids = register_workflow(workflow, manager, schedules=False)
        assert manager.get_task(ids["report"]).schedule is None


def test_a_full_retry_policy_and_a_timeout_reach_the_task_manager() -> None:
    policy = RetryPolicy(max_retries=2, delay=0.01, backoff=3.0, retry_on=(OSError,))
    spec = TaskSpec(name="t", func=print, retry=policy, timeout=2.5)
    workflow = Workflow(source="w", name="w", tasks={"t": spec})
    with TaskManager() as manager:
        ids = register_workflow(workflow, manager)
        registered = manager.get_task(ids["t"])
    assert registered.retry == policy
    assert registered.timeout == 2.5


def test_retries_back_off_and_stop_at_exceptions_not_retried(tmp_path: Path) -> None:
    import time

    stamps: list[float] = []

    def flaky(kind: str) -> str:
        stamps.append(time.monotonic())
        if kind == "gone":
            raise LookupError("not there")
        if len(stamps) < 3:
            raise OSError("try again")
        return "ok"

    policy = RetryPolicy(max_retries=3, delay=0.05, backoff=4.0, retry_on=(OSError,))
    tasks = {
        "flaky": TaskSpec("flaky", flaky, args=("transient",), retry=policy),
        "gone": TaskSpec("gone", flaky, args=("gone",), retry=policy),
    }
    with TaskManager() as manager:
        ids = register_workflow(Workflow(source="w", name="w", tasks=tasks), manager)
        (execution,) = manager.execute_tasks([ids["flaky"]])
        assert manager.wait_for_execution(execution, timeout=WAIT)
        flaky_run = manager.get_execution_status(execution).tasks[ids["flaky"]]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        stamps.clear()
        (execution,) = manager.execute_tasks([ids["gone"]])
        assert manager.wait_for_execution(execution, timeout=WAIT)
        gone_run = manager.get_execution_status(execution).tasks[ids["gone"]]

    assert (flaky_run.status, flaky_run.attempts) == (TaskStatus.COMPLETED, 3)
    # The second wait is backoff (4x) times the first: 0.05 s, then 0.2 s.
    assert gaps[0] >= 0.05 and gaps[1] >= 0.2
    assert (gone_run.status, gone_run.attempts) == (TaskStatus.FAILED, 1)


def test_a_timeout_ends_the_task_timed_out() -> None:
    import threading

    release = threading.Event()

    def stuck() -> None:
        release.wait(WAIT)

    workflow = Workflow(source="w", name="w", tasks={"t": TaskSpec("t", stuck, timeout=0.05)})
    with TaskManager() as manager:
        ids = register_workflow(workflow, manager)
        (execution,) = manager.execute_tasks([ids["t"]])
        assert manager.wait_for_execution(execution, timeout=WAIT)
        release.set()
        status = manager.get_execution_status(execution).tasks[ids["t"]].status
    assert status is TaskStatus.TIMED_OUT


def test_workflow_problems_lists_what_parse_workflow_raises(
    tmp_path: Path, tasks_module: str
) -> None:
    from threadloom.workflow import workflow_problems

    data = {
        "tasks": {
            "a": {"call": f"{tasks_module}:add", "args": [1, 2, 3, 4]},
            "b": {"call": f"{tasks_module}:add", "args": [1], "depends_on": ["c"]},
            "c": {"call": f"{tasks_module}:add", "args": [1], "depends_on": ["b"]},
        }
    }
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(data, source="flow.toml", base_dir=tmp_path)
    problems = workflow_problems(data, source="flow.toml", base_dir=tmp_path)
    assert problems == list(caught.value.problems)
    assert [(p.task, p.field) for p in problems] == [("a", "args"), ("b", "depends_on")]
    valid = {"tasks": {"a": {"call": f"{tasks_module}:add", "args": [1]}}}
    assert workflow_problems(valid, base_dir=tmp_path) == []
    # A document that is not a table ends the check with the one problem found.
    assert [p.message for p in workflow_problems([], base_dir=tmp_path)] == [  # type: ignore[arg-type]
        "the document must be a table, not a list"
    ]


def test_parse_schedule_builds_a_tasks_schedule_field() -> None:
    from threadloom.workflow import parse_schedule

    assert isinstance(parse_schedule("*/5 * * * *", "UTC"), CronSchedule)
    interval = parse_schedule({"every": 30, "unit": "seconds"}, "UTC")
    assert isinstance(interval, IntervalSchedule)
    with pytest.raises(WorkflowError) as caught:
        parse_schedule("61 * * * *", source="flow.toml", task="report")
    [problem] = caught.value.problems
    assert (problem.file, problem.task, problem.field) == ("flow.toml", "report", "schedule")
    assert "bad minute field '61'" in problem.message
