"""The workflow designer's server: the document, live checks, save, run, and refusals.

Each test serves a real dashboard (uvicorn on a free port) with a designer on
a copy of examples/workflow.toml, and talks to it over HTTP as the page does.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from threadloom import TaskStatus
from threadloom.dashboard import Dashboard
from threadloom.dashboard._palette import PaletteError
from threadloom.dashboard.designer import Designer, DesignerError
from threadloom.task_manager import TaskManager
from threadloom.workflow import WorkflowError, load_workflow, parse_workflow

from .test_cli import cli_env, run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
WAIT = 20.0
_numbers = itertools.count()


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The checker puts python_path entries on sys.path; keep each test's to itself.
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def example(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "workflow.toml", tmp_path)
    shutil.copy(EXAMPLES / "workflow_tasks.py", tmp_path)
    return tmp_path / "workflow.toml"


class Served:
    def __init__(self, designer: Designer, manager: TaskManager, dashboard: Dashboard) -> None:
        self.designer = designer
        self.manager = manager
        self.base = dashboard.url
        origin = self.base.rstrip("/")
        self.client = httpx.Client(base_url=self.base, timeout=WAIT, headers={"Origin": origin})

    def document(self) -> dict[str, Any]:
        response = self.client.get("/api/designer/document")
        assert response.status_code == 200, response.text
        document: dict[str, Any] = _as_javascript_reads_it(response.json())
        return document

    def post(self, what: str, body: Any) -> httpx.Response:
        return self.client.post(f"/api/designer/{what}", json=body)


def _as_javascript_reads_it(value: Any) -> Any:
    """JSON as a browser holds it: JavaScript numbers do not keep 10.0 apart from 10."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _as_javascript_reads_it(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_javascript_reads_it(v) for v in value]
    return value


@contextlib.contextmanager
def serving(path: Path, modules: tuple[str, ...] = ()) -> Iterator[Served]:
    designer = Designer(path, modules)
    with TaskManager() as manager, Dashboard(manager, designer=designer) as dashboard:
        served = Served(designer, manager, dashboard)
        try:
            yield served
        finally:
            served.client.close()


@pytest.fixture
def served(example: Path) -> Iterator[Served]:
    with serving(example) as served:
        yield served


def _body(document: dict[str, Any], **changes: dict[str, Any]) -> dict[str, Any]:
    """The page's save/validate body, with some tasks' fields replaced."""
    tasks = [
        {"name": t["name"], "fields": changes.get(t["name"], t["fields"])}
        for t in document["tasks"]
    ]
    return {"version": document["version"], "tasks": tasks}


# -- the document and the palette ----------------------------------------------------


def test_the_document_lists_the_files_tasks_and_the_palette(served: Served) -> None:
    document = served.document()
    assert [t["name"] for t in document["tasks"]] == [
        "load_eu",
        "load_us",
        "load_apac",
        "check",
        "totals",
        "report",
        "heartbeat",
    ]
    assert document["tasks"][0]["fields"]["retry"] == {
        "max_retries": 3,
        "delay": 0.2,
        "backoff": 2,
    }
    palette = {e["call"]: e for e in document["palette"]}
    load_orders = palette["workflow_tasks:load_orders"]
    assert load_orders["signature"].startswith("(region: str, count: int = 40")
    assert load_orders["doc"] == "Load a region's orders from its (simulated) order service."
    assert [p["name"] for p in load_orders["params"] if p["required"]] == ["region"]
    # Imported by the module, not defined there: not offered.
    assert "workflow_tasks:current_task" not in palette
    assert document["problems"] == []
    assert "all_done" in document["trigger_rules"]


def test_python_path_modules_are_read_not_imported(tmp_path: Path) -> None:
    name = f"designer_unimported_{next(_numbers)}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            '''
            raise RuntimeError("importing this module is a bug")

            def offered(a, b=2, *rest, key, **extra):
                """Offered from its source."""

            def _private():
                pass
            '''
        )
    )
    designer = Designer(tmp_path / "flow.toml")
    entry = designer.palette[f"{name}:offered"]
    assert entry.signature == "(a, b=2, *rest, key, **extra)"
    assert entry.doc == "Offered from its source."
    assert [(p.name, p.required) for p in entry.params] == [
        ("a", True),
        ("b", False),
        ("rest", False),
        ("key", True),
        ("extra", False),
    ]
    assert f"{name}:_private" not in designer.palette
    assert name not in sys.modules


def test_a_missing_file_is_created_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "new-flow.toml"
    designer = Designer(path)
    assert tomllib.loads(path.read_text()) == {"workflow": {"name": "new-flow"}}
    problems = designer.document()["problems"]
    assert [p["message"] for p in problems] == ["no tasks: add at least one [tasks.NAME] table"]


def test_bad_modules_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(PaletteError, match=r"'\.\.evil' is not a module name"):
        Designer(tmp_path / "flow.toml", ["..evil"])
    with pytest.raises(PaletteError, match="cannot import module 'no_such_module_here'"):
        Designer(tmp_path / "flow.toml", ["no_such_module_here"])
    (tmp_path / "broken.toml").write_text("[tasks\n")
    with pytest.raises(DesignerError, match="is not valid TOML"):
        Designer(tmp_path / "broken.toml")


# -- live checks: the same checker as threadloom run ----------------------------------


def test_problems_are_the_checkers_on_their_task_and_field(served: Served, example: Path) -> None:
    document = served.document()
    fields = {t["name"]: t["fields"] for t in document["tasks"]}
    broken = {
        "load_eu": {**fields["load_eu"], "args": ["eu", 1, 2, 3, 4, 5]},
        "check": {**fields["check"], "trigger_rule": "sometimes"},
        "report": {**fields["report"], "schedule": "61 * * * *"},
        "heartbeat": {**fields["heartbeat"], "retry": {"max_retries": 2, "delay": -1}},
    }
    response = served.post("validate", _body(document, **broken))
    assert response.status_code == 200, response.text
    problems = response.json()["problems"]
    where = {(p["task"], p["field"]) for p in problems}
    assert where == {
        ("load_eu", "args"),
        ("check", "trigger_rule"),
        ("report", "schedule"),
        ("heartbeat", "retry.delay"),
    }
    # The messages are load_workflow's, word for word.
    data = tomllib.loads(example.read_text())
    for name, table in broken.items():
        data["tasks"][name] = table
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(data, source=str(example), base_dir=example.parent)
    assert sorted(p["text"] for p in problems) == sorted(str(p) for p in caught.value.problems)


def test_a_cycle_is_reported_on_the_task_that_closes_it(served: Served) -> None:
    document = served.document()
    fields = {t["name"]: t["fields"] for t in document["tasks"]}
    cyclic = {"load_eu": {**fields["load_eu"], "depends_on": ["report"]}}
    problems = served.post("validate", _body(document, **cyclic)).json()["problems"]
    assert [p["field"] for p in problems] == ["depends_on"]
    assert "dependency cycle: " in problems[0]["message"]


def test_schedule_preview_gives_five_fire_times_and_words(served: Served) -> None:
    cron = served.post("schedule", {"schedule": "0 9 * * MON-FRI"}).json()
    assert cron["problems"] == []
    assert cron["words"] == "At 09:00 on Monday through Friday"
    assert len(cron["fires"]) == 5
    assert all("T09:00:00" in fire for fire in cron["fires"])
    interval = served.post("schedule", {"schedule": {"every": 3, "unit": "seconds"}}).json()
    assert interval["words"] == "Every 3 seconds"
    assert len(interval["fires"]) == 5
    bad = served.post("schedule", {"schedule": "61 * * * *"}).json()
    assert bad["fires"] == []
    assert "bad minute field '61'" in bad["problems"][0]["message"]


# -- save ---------------------------------------------------------------------------


def test_an_unchanged_save_keeps_the_file_byte_for_byte(served: Served, example: Path) -> None:
    before = example.read_bytes()
    document = served.document()
    response = served.post("save", _body(document))
    assert response.status_code == 200, response.text
    assert example.read_bytes() == before
    assert "# every 10 seconds (six fields: seconds first)" in example.read_text()


def test_a_save_changes_only_what_changed(served: Served, example: Path) -> None:
    document = served.document()
    fields = {t["name"]: t["fields"] for t in document["tasks"]}
    edits = {
        "heartbeat": {**fields["heartbeat"], "retry": 2, "timeout": 1.5},
        "report": {k: v for k, v in fields["report"].items() if k != "schedule"},
    }
    body = _body(document, **edits)
    body["tasks"] = [t for t in body["tasks"] if t["name"] != "load_us"]
    for task in body["tasks"]:
        if task["name"] == "check":
            task["fields"] = {**task["fields"], "depends_on": ["load_eu", "load_apac"]}
    response = served.post("save", body)
    assert response.status_code == 200, response.text
    text = example.read_text()
    data = tomllib.loads(text)
    assert "load_us" not in data["tasks"]
    assert data["tasks"]["heartbeat"]["retry"] == 2
    assert data["tasks"]["heartbeat"]["timeout"] == 1.5
    assert "schedule" not in data["tasks"]["report"]
    # Untouched lines keep their comments.
    assert "kwargs = { fail_first_attempt = true }     # fails once" in text
    assert "# A sales digest" in text
    workflow = load_workflow(example)
    assert list(workflow.tasks) == [
        "load_eu",
        "load_apac",
        "check",
        "totals",
        "report",
        "heartbeat",
    ]
    assert response.json()["version"] == served.document()["version"]


def test_a_stale_save_is_refused_and_the_disk_wins(served: Served, example: Path) -> None:
    document = served.document()
    theirs = example.read_text().replace('name = "sales-digest"', 'name = "edited-elsewhere"')
    example.write_text(theirs)
    fields = {t["name"]: t["fields"] for t in document["tasks"]}
    response = served.post("save", _body(document, heartbeat={**fields["heartbeat"], "retry": 5}))
    assert response.status_code == 409
    assert "changed on disk since it was opened" in response.json()["error"]
    assert example.read_text() == theirs
    # Reopened, the page gets the new version and may save over it.
    fresh = served.document()
    fields = {t["name"]: t["fields"] for t in fresh["tasks"]}
    response = served.post("save", _body(fresh, heartbeat={**fields["heartbeat"], "retry": 5}))
    assert response.status_code == 200, response.text
    saved = tomllib.loads(example.read_text())
    assert saved["workflow"]["name"] == "edited-elsewhere"
    assert saved["tasks"]["heartbeat"]["retry"] == 5


def test_save_writes_through_a_rename_and_keeps_the_mode(served: Served, example: Path) -> None:
    os.chmod(example, 0o640)
    inode = example.stat().st_ino
    document = served.document()
    fields = {t["name"]: t["fields"] for t in document["tasks"]}
    response = served.post("save", _body(document, heartbeat={**fields["heartbeat"], "retry": 1}))
    assert response.status_code == 200, response.text
    assert example.stat().st_ino != inode  # a new file renamed over the old one
    assert example.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in example.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_new_tasks_are_appended_as_tables(tmp_path: Path) -> None:
    name = f"designer_new_{next(_numbers)}"
    (tmp_path / f"{name}.py").write_text(
        "def first():\n    return 1\n\ndef second():\n    return 2\n"
    )
    path = tmp_path / "flow.toml"
    with serving(path) as served:
        document = served.document()
        body = {
            "version": document["version"],
            "tasks": [
                {"name": "a", "fields": {"call": f"{name}:first", "retry": {"max_retries": 2}}},
                {"name": "b", "fields": {"call": f"{name}:second", "depends_on": ["a"]}},
            ],
        }
        response = served.post("save", body)
        assert response.status_code == 200, response.text
        assert response.json()["problems"] == []
    text = path.read_text()
    assert "[tasks.a]" in text and "retry = {max_retries = 2}" in text
    assert tomllib.loads(text)["tasks"] == {
        "a": {"call": f"{name}:first", "retry": {"max_retries": 2}},
        "b": {"call": f"{name}:second", "depends_on": ["a"]},
    }
    code = run_cli("run", path, "--once", "--db", tmp_path / "h.db", cwd=tmp_path)
    assert code.returncode == 0, code.stdout + code.stderr


# -- hostile requests: refused with a message, nothing written ----------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"call": "os:system", "args": ["touch /tmp/pwned"]},
            "'os:system' is refused: it is not in the palette",
        ),
        ({"call": "..workflow_tasks:heartbeat"}, "without '..' or slashes"),
        ({"call": "../../etc/passwd:x"}, "without '..' or slashes"),
        (
            {"call": "workflow_tasks:heartbeat", "tags": ["<script>alert(1)</script>"]},
            "field 'tags' is refused",
        ),
        (
            {"call": "workflow_tasks:heartbeat", "results_param": "x' onload='alert(1)"},
            "field 'results_param' is refused",
        ),
        (
            {"call": "workflow_tasks:heartbeat", "description": "<script>alert(1)</script>"},
            "field 'description' is refused: '<script>alert(1)</script>' holds markup",
        ),
        (
            {
                "call": "workflow_tasks:heartbeat",
                "retry": {"retry_on": ["subprocess:CalledProcessError"]},
            },
            "exceptions must be builtins or come from the palette",
        ),
        ({"call": "workflow_tasks:heartbeat", "code": "import os"}, "unknown field 'code'"),
        # Every field's text is checked, not only the labels': a schedule, a retry
        # table, a flag, the names of kwargs (their values are the function's data).
        (
            {"call": "workflow_tasks:heartbeat", "schedule": "<script>alert(1)</script>"},
            "field 'schedule' is refused: '<script>alert(1)</script>' holds markup",
        ),
        (
            {"call": "workflow_tasks:heartbeat", "schedule": {"every": 3, "unit": "<b>s</b>"}},
            "field 'schedule.unit' is refused",
        ),
        (
            {"call": "workflow_tasks:heartbeat", "retry": {"delay": "<img src=x onerror=1>"}},
            "field 'retry.delay' is refused",
        ),
        ({"call": "workflow_tasks:heartbeat", "enabled": "<b>"}, "field 'enabled' is refused"),
        (
            {"call": "workflow_tasks:heartbeat", "kwargs": {"<script>": 1}},
            "field 'kwargs' is refused: '<script>' holds markup",
        ),
    ],
)
def test_hostile_fields_are_refused_and_nothing_changes(
    served: Served, example: Path, change: dict[str, Any], expected: str
) -> None:
    before, stat = example.read_bytes(), example.stat()
    document = served.document()
    for what in ("save", "validate", "run"):
        response = served.post(what, _body(document, heartbeat=change))
        assert response.status_code == 400, (what, response.text)
        assert expected in response.json()["error"]
    assert example.read_bytes() == before
    assert example.stat().st_mtime_ns == stat.st_mtime_ns
    assert served.manager.list_tasks() == []


def test_a_task_name_with_script_is_refused(served: Served, example: Path) -> None:
    before = example.read_bytes()
    document = served.document()
    body = _body(document)
    body["tasks"].append(
        {"name": "<script>alert(1)</script>", "fields": {"call": "workflow_tasks:heartbeat"}}
    )
    response = served.post("save", body)
    assert response.status_code == 400
    assert "task name '<script>alert(1)</script>' is refused" in response.json()["error"]
    assert example.read_bytes() == before


def test_malformed_bodies_get_clear_errors(served: Served, example: Path) -> None:
    before = example.read_bytes()
    not_json = served.client.post(
        "/api/designer/save", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert (not_json.status_code, not_json.json()) == (400, {"error": "the body is not JSON"})
    no_tasks = served.post("save", {"version": "x"})
    assert no_tasks.status_code == 400
    assert '"tasks" list' in no_tasks.json()["error"]
    huge = served.client.post("/api/designer/validate", content=b"[" + b"0," * 1_100_000 + b"0]")
    assert huge.status_code == 413
    deep = served.client.post("/api/designer/schedule", content=b"[" * 100_000 + b"]" * 100_000)
    assert (deep.status_code, deep.json()) == (400, {"error": "the body is nested too deeply"})
    # A POST from another site is refused by the dashboard's guard before the designer.
    foreign = httpx.post(
        served.base + "api/designer/save",
        json=_body(served.document()),
        headers={"Origin": "http://evil.example"},
        timeout=WAIT,
    )
    assert foreign.status_code == 403
    assert example.read_bytes() == before


# -- run ------------------------------------------------------------------------------


def test_run_executes_the_graph_once_and_again(served: Served) -> None:
    document = served.document()
    body = _body(document)
    for attempt in range(2):
        response = served.post("run", body)
        assert response.status_code == 200, response.text
        result = response.json()
        assert set(result["tasks"]) == {t["name"] for t in document["tasks"]}
        assert served.manager.wait_for_execution(result["execution_id"], WAIT)
        execution = served.client.get(f"/api/executions/{result['execution_id']}").json()
        assert execution["status"] == "completed", (attempt, execution)
        assert {n["status"] for n in execution["nodes"]} == {TaskStatus.COMPLETED.value}
        # Schedules are not registered: a run is the graph, once.
        assert served.manager.scheduler is None or not served.manager.scheduler.list_schedules()


def test_run_refuses_a_workflow_with_problems(served: Served) -> None:
    document = served.document()
    fields = {t["name"]: t["fields"] for t in document["tasks"]}
    response = served.post("run", _body(document, check={**fields["check"], "trigger_rule": "x"}))
    assert response.status_code == 422
    assert "fix the workflow's 1 problem(s)" in response.json()["error"]
    assert served.manager.list_tasks() == []


# -- the command ------------------------------------------------------------------------


def test_design_command_serves_the_file_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "threadloom", "design", "flow.toml", "--module", "json"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline().strip()
        assert line.startswith("designer: http://127.0.0.1:") and line.endswith("/designer"), (
            line,
            process.stderr.read() if process.poll() is not None else "",
        )
        url = line.split(" ", 1)[1]
        page = httpx.get(url, timeout=WAIT)
        assert page.status_code == 200 and "threadloom designer" in page.text
        document = httpx.get(url.replace("/designer", "/api/designer/document"), timeout=WAIT)
        calls = {e["call"] for e in document.json()["palette"]}
        assert {"json:dumps", "json:loads"} <= calls
        assert (tmp_path / "flow.toml").exists()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=WAIT)


def test_design_command_errors_exit_2(tmp_path: Path) -> None:
    bad = run_cli("design", "flow.toml", "--module", "../evil", cwd=tmp_path)
    assert bad.returncode == 2
    assert "'../evil' is not a module name" in bad.stderr
    assert "Traceback" not in bad.stderr
    port = run_cli("design", "flow.toml", "--port", "70000", cwd=tmp_path)
    assert port.returncode == 2
    assert "port must be between 0 and 65535" in port.stderr


def test_the_dashboard_reports_the_designer(served: Served) -> None:
    info = served.client.get("/api/info").json()
    assert info["designer"] is True
    assert json.loads(served.client.get("/api/designer/document").text)["file"] == "workflow.toml"


def test_a_file_with_a_cycle_opens_and_lays_out(tmp_path: Path) -> None:
    name = f"designer_cycle_{next(_numbers)}"
    (tmp_path / f"{name}.py").write_text("def step():\n    return 1\n")
    path = tmp_path / "flow.toml"
    path.write_text(
        f'[tasks.a]\ncall = "{name}:step"\ndepends_on = ["c"]\n'
        f'[tasks.b]\ncall = "{name}:step"\ndepends_on = ["a"]\n'
        f'[tasks.c]\ncall = "{name}:step"\ndepends_on = ["b"]\n'
        f'[tasks.d]\ncall = "{name}:step"\ndepends_on = ["c"]\n'
    )
    with serving(path) as served:
        document = served.document()
        assert [p["message"] for p in document["problems"]] == [
            "dependency cycle: a -> c -> b -> a"
        ]
        parents = {t["name"]: t["fields"]["depends_on"] for t in document["tasks"]}
        response = served.post("layout", {"parents": parents})
        assert response.status_code == 200, response.text
        positions = response.json()["positions"]
        assert set(positions) == {"a", "b", "c", "d"}
        # Drawn without the edge that closes the cycle (the search from a finds
        # it at a -> b): a chain b, c, a, with d beside a.
        assert {n: p[0] for n, p in positions.items()} == {"b": 0, "c": 1, "a": 2, "d": 2}


def test_calls_written_on_disk_meanwhile_are_allowed_after_a_reload(
    served: Served, example: Path
) -> None:
    name = f"designer_later_{next(_numbers)}"
    (example.parent / f"{name}.py").write_text("def later():\n    return 1\n")
    with example.open("a") as file:
        file.write(f'\n[tasks.later]\ncall = "{name}:later"\n')
    document = served.document()
    assert any(t["name"] == "later" for t in document["tasks"])
    response = served.post("save", _body(document))
    assert response.status_code == 200, response.text
    assert response.json()["problems"] == []


def test_labels_the_file_already_holds_are_kept(tmp_path: Path) -> None:
    name = f"designer_labels_{next(_numbers)}"
    (tmp_path / f"{name}.py").write_text("def step():\n    return 1\n")
    path = tmp_path / "flow.toml"
    path.write_text(
        f'[tasks."a <b>"]\ncall = "{name}:step"\ntags = ["R&D", "nightly run"]\n'
        f'description = "uses <b>"\n'
        f'[tasks.c]\ncall = "{name}:step"\ndepends_on = ["a <b>"]\n'
    )
    before = path.read_bytes()
    with serving(path) as served:
        document = served.document()
        response = served.post("save", _body(document))
        assert response.status_code == 200, response.text
        body = _body(document)
        body["tasks"][1]["fields"] = {**body["tasks"][1]["fields"], "tags": ["x&y"]}
        refused = served.post("save", body)
        assert refused.status_code == 400
        assert "field 'tags' is refused: 'x&y' holds markup" in refused.json()["error"]
    assert path.read_bytes() == before


def test_a_module_next_to_the_file_can_be_named_with_module(tmp_path: Path) -> None:
    name = f"designer_beside_{next(_numbers)}"
    (tmp_path / f"{name}.py").write_text(
        "from json import dumps\n\ndef mine(x: int) -> int:\n    '''Mine.'''\n    return x\n"
    )
    assert str(tmp_path) not in sys.path
    designer = Designer(tmp_path / "flow.toml", [name])
    assert designer.palette[f"{name}:mine"].signature == "(x: int) -> int"
    assert f"{name}:dumps" not in designer.palette  # imported there, not defined
    assert name in sys.modules


def test_a_file_with_an_unknown_field_can_be_checked_fixed_and_saved(tmp_path: Path) -> None:
    name = f"designer_typo_{next(_numbers)}"
    (tmp_path / f"{name}.py").write_text("def step():\n    return 1\n")
    path = tmp_path / "flow.toml"
    path.write_text(
        f'# the flow\n[tasks.a]\ncall = "{name}:step"\nprioirty = "high"   # a typo\n'
        f'\n[tasks.b]\ncall = "{name}:step"\ndepends_on = ["a"]\n'
    )
    before = path.read_bytes()
    with serving(path) as served:
        document = served.document()
        assert [(p["task"], p["field"]) for p in document["problems"]] == [("a", "prioirty")]
        # The page sends the file's field back: checked, not refused.
        checked = served.post("validate", _body(document))
        assert checked.status_code == 200, checked.text
        assert [p["message"] for p in checked.json()["problems"]] == [
            "unknown field; did you mean 'priority'?"
        ]
        unchanged = served.post("save", _body(document))
        assert unchanged.status_code == 200, unchanged.text
        assert path.read_bytes() == before
        # Another unknown field is still refused.
        body = _body(document, b={"call": f"{name}:step", "code": "import os"})
        refused = served.post("save", body)
        assert refused.status_code == 400
        assert "unknown field 'code'" in refused.json()["error"]
        # Fixed: the typo removed, the right field set.
        fixed = _body(served.document(), a={"call": f"{name}:step", "priority": "high"})
        response = served.post("save", fixed)
        assert response.status_code == 200, response.text
        assert response.json()["problems"] == []
    assert tomllib.loads(path.read_text())["tasks"]["a"] == {
        "call": f"{name}:step",
        "priority": "high",
    }
    assert path.read_text().startswith("# the flow\n")


def test_values_json_cannot_carry_keep_their_toml_types(tmp_path: Path) -> None:
    name = f"designer_dates_{next(_numbers)}"
    (tmp_path / f"{name}.py").write_text(
        "import datetime\n\n"
        "def since(moment: datetime.datetime, day: datetime.date, scale: float) -> str:\n"
        "    assert isinstance(moment, datetime.datetime), moment\n"
        "    assert isinstance(day, datetime.date), day\n"
        "    return type(scale).__name__\n"
    )
    path = tmp_path / "flow.toml"
    path.write_text(
        f'[tasks.a]\ncall = "{name}:since"\n'
        "args = [1979-05-27T07:32:00Z, 1979-05-27]\nkwargs = { scale = 2.0 }\n"
        "schedule = { once = 2040-01-01T09:00:00 }\ntimeout = 10.0\n"
    )
    before = path.read_bytes()
    with serving(path) as served:
        document = served.document()
        # The page holds them as JSON: strings and plain numbers.
        fields = document["tasks"][0]["fields"]
        assert fields["args"] == ["1979-05-27T07:32:00+00:00", "1979-05-27"]
        assert fields["kwargs"] == {"scale": 2}
        assert document["problems"] == []
        response = served.post("save", _body(document))
        assert response.status_code == 200, response.text
        assert response.json()["problems"] == []
        assert path.read_bytes() == before
        # Another field edited: the dates stay TOML dates, 2.0 a float.
        edited = served.post("save", _body(document, a={**fields, "timeout": 5}))
        assert edited.status_code == 200, edited.text
        saved = tomllib.loads(path.read_text())["tasks"]["a"]
        assert saved["args"] == [
            datetime.datetime(1979, 5, 27, 7, 32, tzinfo=datetime.timezone.utc),
            datetime.date(1979, 5, 27),
        ]
        assert saved["kwargs"] == {"scale": 2.0} and isinstance(saved["kwargs"]["scale"], float)
        assert saved["schedule"] == {"once": datetime.datetime(2040, 1, 1, 9, 0)}
        assert saved["timeout"] == 5
        # A run gets the file's values too: the function asserts their types.
        run = served.post("run", _body(served.document()))
        assert run.status_code == 200, run.text
        result = run.json()
        assert served.manager.wait_for_execution(result["execution_id"], WAIT)
        execution = served.client.get(f"/api/executions/{result['execution_id']}").json()
        assert execution["status"] == "completed", execution


def test_the_modules_of_the_files_tasks_join_the_palette(tmp_path: Path) -> None:
    # textwrap is neither given with --module nor in the python_path directory.
    path = tmp_path / "flow.toml"
    path.write_text('[tasks.a]\ncall = "textwrap:dedent"\nargs = ["  x"]\n')
    with serving(path) as served:
        document = served.document()
        palette = {e["call"]: e for e in document["palette"]}
        indent = palette["textwrap:indent"]
        assert indent["signature"] == "(text, prefix, predicate=None)"
        assert indent["doc"].startswith("Adds 'prefix' to the beginning of selected lines")
        assert not any(call.startswith("textwrap:_") for call in palette)
        # On the allow-list: a second task may use it; what is not listed is refused.
        body = _body(document)
        body["tasks"].append(
            {"name": "b", "fields": {"call": "textwrap:indent", "args": ["x", "> "]}}
        )
        response = served.post("validate", body)
        assert (response.status_code, response.json()["problems"]) == (200, [])
        body["tasks"][1]["fields"]["call"] = "textwrap:_wrap_chunks"
        refused = served.post("validate", body)
        assert refused.status_code == 400
        assert "'textwrap:_wrap_chunks' is refused: it is not in the palette" in refused.text
