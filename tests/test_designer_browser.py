"""The workflow designer in a real browser: Playwright driving Debian's Chromium.

The tests use the mouse as a person would (press, move, release) to place,
connect, select, pan and zoom.  One browser per module, a fresh page and
server per test; every wait is bounded by Playwright's timeout or WAIT.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from threadloom.dashboard import Dashboard
from threadloom.dashboard.designer import Designer
from threadloom.task_manager import TaskManager

from .test_cli import run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found]

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = os.environ.get("THREADLOOM_CHROMIUM", "/usr/bin/chromium")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WAIT = 20.0
WAIT_MS = 10_000
XSS = "<img src=x onerror=alert(1)>"
_numbers = itertools.count()

if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"no Chromium at {CHROMIUM} in CI (.ci/run should install it)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.dialogs = []
    page.errors = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert page.errors == [], page.errors


@contextlib.contextmanager
def serving(path: Path) -> Iterator[tuple[str, TaskManager]]:
    """The designer on *path*, as a page of a dashboard over a task manager; its URL."""
    designer = Designer(path)
    with TaskManager() as manager, Dashboard(manager, designer=designer) as dashboard:
        yield dashboard.url + "designer", manager


def open_designer(page: Any, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


@pytest.fixture
def example(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "workflow.toml", tmp_path)
    shutil.copy(EXAMPLES / "workflow_tasks.py", tmp_path)
    return tmp_path / "workflow.toml"


@pytest.fixture
def steps_module(tmp_path: Path) -> str:
    """Three small task functions next to the workflow file, under a fresh module name."""
    name = f"designer_steps_{next(_numbers)}_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            '''
            def extract(count: int = 3) -> list[int]:
                """Make some numbers."""
                return list(range(count))

            def transform() -> str:
                """Transform them."""
                return "transformed"

            def publish() -> str:
                """Publish the result."""
                return "published"
            '''
        )
    )
    return name


# -- mouse helpers ---------------------------------------------------------------------


def centre(locator: Any) -> tuple[float, float]:
    # The designer redraws a layer by replacing its elements (after a connect,
    # for one): an element found just before a redraw is gone when measured,
    # and bounding_box() gives None.  So measure the element there now, a few
    # times over, each after it is visible.
    for _ in range(20):
        expect(locator).to_be_visible()
        box = locator.bounding_box()
        if box is not None:
            return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    raise AssertionError(f"{locator} is never still long enough to be measured")


def mouse_drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()


def canvas_point(page: Any, x: float, y: float) -> tuple[float, float]:
    box = page.locator("#canvas").bounding_box()
    return box["x"] + x, box["y"] + y


def place(page: Any, call: str, x: float, y: float) -> None:
    """Drag *call* from the palette to (x, y) of the canvas."""
    mouse_drag(
        page, centre(page.locator(f'.palette-item[data-call="{call}"]')), canvas_point(page, x, y)
    )


def node(page: Any, name: str) -> Any:
    return page.locator(f'#nodes [data-task="{name}"]')


def connect(page: Any, upstream: str, downstream: str) -> None:
    """Drag from *upstream*'s output port onto *downstream*."""
    mouse_drag(
        page,
        centre(node(page, upstream).locator(".port-out")),
        centre(node(page, downstream).locator("rect.body")),
    )


def click_node(page: Any, name: str) -> None:
    x, y = centre(node(page, name).locator("rect.body"))
    page.mouse.click(x, y)
    expect(node(page, name)).to_have_class(re.compile(r"(^|\s)selected(\s|$)"))


def edge_middle(page: Any, upstream: str, downstream: str) -> tuple[float, float]:
    point = page.evaluate(
        """([from, to]) => {
            const path = document.querySelector(
                `.edge-group[data-from="${from}"][data-to="${to}"] .edge`);
            const p = path.getPointAtLength(path.getTotalLength() / 2);
            const m = path.getScreenCTM();
            return [p.x * m.a + p.y * m.c + m.e, p.x * m.b + p.y * m.d + m.f];
        }""",
        [upstream, downstream],
    )
    return float(point[0]), float(point[1])


def save(page: Any) -> None:
    page.locator("#save-button").click()
    expect(page.locator("#message")).to_have_text("saved")
    expect(page.locator("body")).to_have_attribute("data-dirty", "false")


def tasks_in(path: Path) -> dict[str, Any]:
    return dict(tomllib.loads(path.read_text())["tasks"])


# -- the proofs of the issue -------------------------------------------------------------


def test_build_connect_set_a_retry_save_and_run_it(
    page: Any, tmp_path: Path, steps_module: str
) -> None:
    path = tmp_path / "flow.toml"
    with serving(path) as (url, _):
        open_designer(page, url)
        place(page, f"{steps_module}:extract", 120, 140)
        place(page, f"{steps_module}:transform", 380, 140)
        place(page, f"{steps_module}:publish", 640, 140)
        for name in ("extract", "transform", "publish"):
            expect(node(page, name)).to_have_count(1)
        connect(page, "extract", "transform")
        connect(page, "transform", "publish")
        expect(page.locator(".edge-group")).to_have_count(2)
        click_node(page, "transform")
        page.locator("#field-retry-mode").select_option("table")
        page.locator("#field-retry-max_retries").fill("2")
        page.locator("#field-retry-max_retries").press("Tab")
        page.locator("#field-retry-delay").fill("0.1")
        page.locator("#field-retry-delay").press("Tab")
        save(page)
        expect(page.locator("#problem-list li")).to_have_count(0)
    assert tasks_in(path) == {
        "extract": {"call": f"{steps_module}:extract"},
        "transform": {
            "call": f"{steps_module}:transform",
            "depends_on": ["extract"],
            "retry": {"max_retries": 2, "delay": 0.1},
        },
        "publish": {"call": f"{steps_module}:publish", "depends_on": ["transform"]},
    }
    result = run_cli("run", path, "--once", "--db", tmp_path / "h.db", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "completed: 3" in result.stdout


def test_a_connection_closing_a_cycle_is_refused_and_highlighted(
    page: Any, tmp_path: Path, steps_module: str
) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [tasks.a]
            call = "{steps_module}:extract"

            [tasks.b]
            call = "{steps_module}:transform"
            depends_on = ["a"]

            [tasks.c]
            call = "{steps_module}:publish"
            depends_on = ["b"]
            """
        )
    )
    before = path.read_bytes()
    with serving(path) as (url, _):
        open_designer(page, url)
        connect(page, "c", "a")
        expect(page.locator("#message")).to_have_text(
            "refused: connecting c → a would close the cycle a → b → c → a"
        )
        for name in ("a", "b", "c"):
            expect(node(page, name)).to_have_class("node cycle")
        expect(page.locator(".edge-group.cycle")).to_have_count(2)
        expect(page.locator("#refused-edge")).to_have_count(1)
        expect(page.locator(".edge-group")).to_have_count(2)
        expect(page.locator("body")).to_have_attribute("data-dirty", "false")
        save(page)
    assert path.read_bytes() == before


def test_open_the_example_and_save_it_unchanged(page: Any, example: Path) -> None:
    before = example.read_text()
    with serving(example) as (url, _):
        open_designer(page, url)
        expect(page.locator("#nodes [data-task]")).to_have_count(7)
        save(page)
    after = example.read_text()
    assert tomllib.loads(after)["tasks"] == tomllib.loads(before)["tasks"]
    assert after == before  # comments, spacing and order included


def test_run_from_the_designer_turns_every_node_green(page: Any, example: Path) -> None:
    with serving(example) as (url, manager):
        open_designer(page, url)
        page.locator("#run-button").click()
        expect(page.locator("body")).to_have_attribute(
            "data-run-status", "completed", timeout=WAIT * 1000
        )
        names = list(tasks_in(example))
        for name in names:
            expect(node(page, name)).to_have_attribute("data-status", "completed")
        fills = page.evaluate(
            "() => [...document.querySelectorAll('#nodes [data-task] rect.body')]"
            ".map((r) => getComputedStyle(r).fill)"
        )
        assert fills == ["rgb(134, 239, 172)"] * len(names)
        link = page.locator("#history-link")
        expect(link).to_be_visible()
        execution_id = page.locator("#message").inner_text().split()[1].rstrip(":")
        assert manager.get_execution(execution_id).status.value == "completed"
        link.click()
        expect(page.locator("#execution-detail h3")).to_contain_text(execution_id)


# -- editing gestures ---------------------------------------------------------------------


def test_delete_an_edge_and_a_node_pan_zoom_and_layout(
    page: Any, tmp_path: Path, steps_module: str
) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [tasks.a]
            call = "{steps_module}:extract"

            [tasks.b]
            call = "{steps_module}:transform"
            depends_on = ["a"]

            [tasks.c]
            call = "{steps_module}:publish"
            depends_on = ["b"]

            [tasks.d]
            call = "{steps_module}:publish"
            depends_on = ["a"]
            """
        )
    )
    with serving(path) as (url, _):
        open_designer(page, url)
        # Select the edge a -> b with a click on it, then the Delete key.
        page.mouse.click(*edge_middle(page, "a", "b"))
        expect(page.locator('.edge-group.selected[data-from="a"][data-to="b"]')).to_have_count(1)
        page.keyboard.press("Delete")
        expect(page.locator(".edge-group")).to_have_count(2)
        expect(page.locator('.edge-group[data-from="a"][data-to="b"]')).to_have_count(0)
        # Nothing is lost on the way: the page's other edges are still there.
        expect(page.locator('.edge-group[data-from="a"][data-to="d"]')).to_have_count(1)
        # Pan: drag the empty background; the nodes move with it.
        before = centre(node(page, "a").locator("rect.body"))
        start = canvas_point(page, 20, 500)
        mouse_drag(page, start, (start[0] + 60, start[1] - 40))
        after = centre(node(page, "a").locator("rect.body"))
        assert (round(after[0] - before[0]), round(after[1] - before[1])) == (60, -40)
        # Zoom: the wheel over the canvas shrinks the nodes.
        width = node(page, "a").locator("rect.body").bounding_box()["width"]
        page.mouse.move(*canvas_point(page, 300, 300))
        page.mouse.wheel(0, 400)
        expect(page.locator("#canvas")).not_to_have_attribute("data-zoom", "1.000")
        assert node(page, "a").locator("rect.body").bounding_box()["width"] < width
        # Drag c to the top left, before its dependencies, then ask for the layers back.
        mouse_drag(page, centre(node(page, "c").locator("rect.body")), canvas_point(page, 30, 30))
        x = {n: centre(node(page, n).locator("rect.body"))[0] for n in "abc"}
        assert x["c"] < x["a"]
        page.locator("#layout-button").click()
        expect(page.locator("#canvas")).to_have_attribute("data-zoom", "1.000")
        x = {n: centre(node(page, n).locator("rect.body"))[0] for n in "abcd"}
        assert x["a"] == x["b"] < x["c"] == x["d"]
        # Delete node b with the mouse and the key: c no longer depends on it.
        expect(page.locator('.edge-group[data-from="b"][data-to="c"]')).to_have_count(1)
        click_node(page, "b")
        page.keyboard.press("Delete")
        expect(node(page, "b")).to_have_count(0)
        save(page)
    assert tasks_in(path) == {
        "a": {"call": f"{steps_module}:extract"},
        "c": {"call": f"{steps_module}:publish"},
        "d": {"call": f"{steps_module}:publish", "depends_on": ["a"]},
    }


def test_problems_show_on_their_node_and_field_and_schedules_preview(
    page: Any, example: Path
) -> None:
    with serving(example) as (url, _):
        open_designer(page, url)
        click_node(page, "heartbeat")
        page.locator("#field-args").fill('["unexpected"]')
        page.locator("#field-args").press("Tab")
        problems = page.locator('.field[data-field="args"] .field-problems li')
        expect(problems).to_contain_text(
            "workflow_tasks:heartbeat() -> 'str' cannot take these: too many positional arguments"
        )
        expect(node(page, "heartbeat")).to_have_attribute("data-problems", "1")
        expect(page.locator("#problem-list li")).to_have_count(1)
        page.locator("#field-args").fill("")
        page.locator("#field-args").press("Tab")
        expect(node(page, "heartbeat")).to_have_attribute("data-problems", "0")
        page.locator("#field-schedule-mode").select_option("cron")
        page.locator("#field-schedule-cron").fill("30 9 * * *")
        page.locator("#field-schedule-cron").press("Tab")
        preview = page.locator("#schedule-preview")
        expect(preview.locator(".words")).to_have_text("At 09:30 every day")
        expect(preview.locator("ol.fires li")).to_have_count(5)
        page.locator("#field-schedule-cron").fill("99 * * * *")
        page.locator("#field-schedule-cron").press("Tab")
        expect(page.locator('.field[data-field="schedule"] .field-problems li')).to_contain_text(
            "bad minute field '99'"
        )


def test_a_save_after_an_edit_on_disk_is_refused(page: Any, example: Path) -> None:
    with serving(example) as (url, _):
        open_designer(page, url)
        click_node(page, "heartbeat")
        page.locator("#field-timeout").fill("5")
        page.locator("#field-timeout").press("Tab")
        theirs = example.read_text() + "\n# edited by someone else\n"
        example.write_text(theirs)
        page.locator("#save-button").click()
        expect(page.locator("#message")).to_contain_text("not saved: workflow.toml changed on disk")
        expect(page.locator("body")).to_have_attribute("data-dirty", "true")
    assert example.read_text() == theirs


def test_names_from_the_file_render_as_text(page: Any, tmp_path: Path, steps_module: str) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(f'[tasks."{XSS}"]\ncall = "{steps_module}:extract"\ntags = ["x"]\n')
    with serving(path) as (url, _):
        open_designer(page, url)
        expect(node(page, XSS).locator("title")).to_have_text(XSS)
        expect(node(page, XSS).locator("text.name")).to_have_text(XSS[:23] + "…")
        click_node(page, XSS)
        expect(page.locator("#task-form h2")).to_have_text(XSS)
        assert page.locator("img").count() == 0
    assert page.dialogs == []


def test_the_dashboard_links_to_the_designer(page: Any, example: Path) -> None:
    with serving(example) as (url, _):
        page.goto(url.removesuffix("designer"))
        link = page.locator("#designer-link")
        expect(link).to_be_visible()
        link.click()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator("#file-name")).to_have_text("workflow.toml")


def fill_field(page: Any, selector: str, value: str) -> None:
    """Type into a panel field and leave it, as a person does (the change event)."""
    page.locator(selector).fill(value)
    page.locator(selector).press("Tab")


def test_every_panel_field_edits_the_files_field(
    page: Any, tmp_path: Path, steps_module: str
) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(
        f'# my flow\n[tasks.a]\ncall = "{steps_module}:extract"\n\n'
        f'[tasks.b]\ncall = "{steps_module}:transform"\ndepends_on = ["a"]\n'
    )
    with serving(path) as (url, _):
        open_designer(page, url)
        click_node(page, "a")
        fill_field(page, "#field-name", "source")
        expect(node(page, "source")).to_have_count(1)
        expect(page.locator('.edge-group[data-from="source"][data-to="b"]')).to_have_count(1)
        fill_field(page, "#field-kwargs", '{"count": 5}')
        page.locator("#field-priority").select_option("high")
        page.locator("#field-retry-mode").select_option("count")
        fill_field(page, "#field-retry-count", "4")
        fill_field(page, "#field-timeout", "2.5")
        fill_field(page, "#field-tags", "load, nightly")
        # A kwarg the signature lacks: the checker's message on the kwargs field.
        fill_field(page, "#field-kwargs", '{"count": 5, "colour": "red"}')
        expect(page.locator('.field[data-field="kwargs"] .field-problems li')).to_contain_text(
            "got an unexpected keyword argument 'colour'"
        )
        expect(node(page, "source")).to_have_attribute("data-problems", "1")
        fill_field(page, "#field-kwargs", '{"count": 5}')
        expect(node(page, "source")).to_have_attribute("data-problems", "0")
        click_node(page, "b")
        expect(page.locator("#field-depends_on li span")).to_have_text(["source"])
        page.locator("#field-trigger_rule").select_option("all_done")
        fill_field(page, "#field-results_param", "upstream")
        # transform() takes no parameter named upstream: shown on that field.
        expect(
            page.locator('.field[data-field="results_param"] .field-problems li')
        ).not_to_have_count(0)
        fill_field(page, "#field-results_param", "")
        fill_field(page, "#field-args", "[]")
        save(page)
        expect(page.locator("#problem-list li")).to_have_count(0)
    assert tasks_in(path) == {
        "source": {
            "call": f"{steps_module}:extract",
            "kwargs": {"count": 5},
            "priority": "high",
            "retry": 4,
            "timeout": 2.5,
            "tags": ["load", "nightly"],
        },
        "b": {
            "call": f"{steps_module}:transform",
            "depends_on": ["source"],
            "trigger_rule": "all_done",
            "args": [],
        },
    }
    assert path.read_text().startswith("# my flow\n")


def test_a_typo_and_a_missing_dependency_show_on_their_fields_and_are_removed(
    page: Any, tmp_path: Path, steps_module: str
) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(
        f'# my flow\n[tasks.a]\ncall = "{steps_module}:extract"\n'
        'prioirty = "high"   # a typo\n\n'
        f'[tasks.b]\ncall = "{steps_module}:transform"\n'
        'depends_on = ["a", "gone"]   # gone was deleted\n'
    )
    with serving(path) as (url, _):
        open_designer(page, url)
        expect(page.locator("#problem-list li")).to_have_count(2)
        click_node(page, "a")
        typo = page.locator('.field[data-field="prioirty"]')
        expect(typo.locator(".field-problems li")).to_have_text(
            ["unknown field; did you mean 'priority'?"]
        )
        typo.locator(".remove-field").click()
        expect(page.locator('.field[data-field="prioirty"]')).to_have_count(0)
        expect(node(page, "a")).to_have_attribute("data-problems", "0")
        click_node(page, "b")
        deps = page.locator('.field[data-field="depends_on"]')
        expect(deps.locator(".field-problems li")).to_contain_text("unknown task 'gone'")
        expect(deps.locator("li.unknown span")).to_have_text("gone (no such task)")
        deps.locator('li[data-dep="gone"] .remove-dep').click()
        expect(node(page, "b")).to_have_attribute("data-problems", "0")
        expect(page.locator("#field-depends_on li span")).to_have_text(["a"])
        save(page)
        expect(page.locator("#problem-list li")).to_have_count(0)
    assert tasks_in(path) == {
        "a": {"call": f"{steps_module}:extract"},
        "b": {"call": f"{steps_module}:transform", "depends_on": ["a"]},
    }
    assert path.read_text().startswith("# my flow\n")
