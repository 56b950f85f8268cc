"""The dashboard in a real browser: Playwright driving Debian's Chromium.

One browser per module; each test gets a fresh page, pool and dashboard.
Every wait is bounded (Playwright's timeouts, or the pool's own waits).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from threadloom import TaskManager, TaskStatus, ThreadPoolManager
from threadloom.dashboard import Dashboard

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("THREADLOOM_CHROMIUM", "/usr/bin/chromium")
WAIT = 10.0
WAIT_MS = 10_000
XSS = "<img src=x onerror=alert(1)>"

if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        # .ci/run installs it: in CI a missing browser is a broken setup, not a skip.
        raise RuntimeError(f"no Chromium at {CHROMIUM} in CI (.ci/run should install it)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


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
    context = browser.new_context()
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


@pytest.fixture
def pool() -> Iterator[ThreadPoolManager]:
    with ThreadPoolManager(1, 1, thread_name_prefix="worker") as pool:
        yield pool


def test_counters_change_during_a_run_over_sse(page: Any, pool: ThreadPoolManager) -> None:
    with Dashboard(pool, sample_interval=0.2) as dash:
        page.goto(dash.url)
        completed = page.locator('[data-counter="tasks_completed"]')
        sync_api.expect(completed).to_have_text("0")
        sync_api.expect(page.locator("#conn")).to_have_text("live")
        page.evaluate("window.__notReloaded = true")
        for _ in range(25):
            pool.submit(lambda: None)
        assert pool.wait_all(WAIT)
        sync_api.expect(completed).to_have_text("25")
        sync_api.expect(page.locator('[data-counter="tasks_submitted"]')).to_have_text("25")
        # Pushed into the same document, not fetched by a reload.
        assert page.evaluate("window.__notReloaded") is True


def test_a_failing_tasks_traceback_is_in_its_detail(page: Any, pool: ThreadPoolManager) -> None:
    def explode_on_purpose() -> None:
        raise ZeroDivisionError("deliberately")

    with Dashboard(pool) as dash:
        task_id = pool.submit_call(explode_on_purpose, name="exploder")
        assert pool.wait_for_task(task_id, WAIT)
        page.goto(dash.url + "#tasks")
        row = page.locator(f'#tasks-table tr[data-task="{task_id}"]')
        sync_api.expect(row).to_contain_text("ZeroDivisionError")
        row.click()
        traceback = page.locator("#task-detail pre.traceback")
        sync_api.expect(traceback).to_contain_text("in explode_on_purpose")
        sync_api.expect(traceback).to_contain_text("ZeroDivisionError: deliberately")


def test_the_xss_task_name_renders_as_text(page: Any, pool: ThreadPoolManager) -> None:
    def fail() -> None:
        raise ValueError(XSS)

    with Dashboard(pool) as dash:
        task_id = pool.submit_call(fail, name=XSS)
        assert pool.wait_for_task(task_id, WAIT)
        page.goto(dash.url + "#tasks")
        name = page.locator(f'#tasks-table tr[data-task="{task_id}"] .task-name')
        sync_api.expect(name).to_have_text(XSS)
        page.locator(f'#tasks-table tr[data-task="{task_id}"]').click()
        sync_api.expect(page.locator("#task-detail .task-name")).to_have_text(XSS)
        sync_api.expect(page.locator("#task-detail pre.traceback")).to_contain_text(XSS)
        assert page.locator("main img").count() == 0
    assert page.dialogs == []


def test_the_cancel_button_cancels_a_queued_task(page: Any, pool: ThreadPoolManager) -> None:
    release = threading.Event()
    with Dashboard(pool) as dash:
        blocker = pool.submit_call(release.wait, (WAIT,), name="blocker")
        victim = pool.submit_call(lambda: None, name="victim")
        try:
            page.goto(dash.url + "#tasks")
            row = page.locator(f'#tasks-table tr[data-task="{victim}"]')
            sync_api.expect(row).to_contain_text("queued")
            row.locator('button[data-action="cancel"]').click()
            sync_api.expect(row).to_contain_text("cancelled")
            assert pool.get_task_status(victim) is TaskStatus.CANCELLED
        finally:
            release.set()
        assert pool.wait_for_task(blocker, WAIT)
        assert pool.get_task_status(blocker) is TaskStatus.COMPLETED


def test_dag_nodes_change_colour_as_they_finish(page: Any) -> None:
    gate = threading.Event()
    with TaskManager() as manager, Dashboard(manager) as dash:
        first = manager.register_task("first", gate.wait, WAIT)
        second = manager.register_task("second", lambda: None, dependencies=[first])
        execution_id = manager.execute_task(second)
        try:
            page.goto(dash.url + "#executions")
            sync_api.expect(page.locator("#execution-detail h3")).to_contain_text(execution_id)
            first_node = page.locator(f'#dag [data-node="{first}"]')
            second_node = page.locator(f'#dag [data-node="{second}"]')
            sync_api.expect(first_node).to_have_attribute("data-status", "running")
            sync_api.expect(second_node).to_have_attribute("data-status", "pending")
            before = _fill(page, second)
        finally:
            gate.set()
        assert manager.wait_for_execution(execution_id, WAIT)
        # Pushed: the page learns of the change over SSE and redraws the DAG.
        sync_api.expect(second_node).to_have_attribute("data-status", "completed")
        sync_api.expect(first_node).to_have_attribute("data-status", "completed")
        after = _fill(page, second)
        assert after != before
        assert _fill(page, first) == after


def _fill(page: Any, task_id: str) -> str:
    # One script run reads the node and its style: the DAG is redrawn on
    # updates, and a locator could resolve to a node replaced meanwhile.
    return str(
        page.evaluate(
            "id => getComputedStyle(document.querySelector(`#dag [data-node='${id}'] rect`)).fill",
            task_id,
        )
    )


def test_every_view_renders_without_script_errors(page: Any, pool: ThreadPoolManager) -> None:
    # The page fixture fails the test on any uncaught page error (including a
    # CSP violation that stops a script).
    with Dashboard(pool) as dash:
        for _ in range(50):
            pool.submit(lambda: None)
        assert pool.wait_all(WAIT)
        page.goto(dash.url)
        for view in ("stream", "tasks", "executions", "schedules", "history", "overview"):
            page.locator(f'#nav a[data-view="{view}"]').click()
            sync_api.expect(page.locator(f"#view-{view}")).to_be_visible()
        page.locator('#nav a[data-view="stream"]').click()
        sync_api.expect(page.locator("#stream-summary")).to_contain_text("workers")


def test_run_a_task_and_pause_its_schedule_from_the_page(page: Any) -> None:
    with TaskManager() as manager, Dashboard(manager) as dash:
        job = manager.register_task("nightly", lambda: None, schedule="0 3 * * *")
        page.goto(dash.url + "#executions")
        page.locator("#run-select").select_option(job)
        page.locator("#run-button").click()
        sync_api.expect(page.locator("#run-result")).to_contain_text("started")
        execution_id = page.locator("#run-result").inner_text().split()[-1]
        assert manager.wait_for_execution(execution_id, WAIT)
        node = page.locator(f'#dag [data-node="{job}"]')
        sync_api.expect(node).to_have_attribute("data-status", "completed")
        page.goto(dash.url + "#schedules")
        row = page.locator(f'#schedules-table tr[data-job="{job}"]')
        sync_api.expect(row).to_contain_text("At 03:00 every day")
        row.locator('button[data-action="pause"]').click()
        sync_api.expect(row.locator('button[data-action="resume"]')).to_be_visible()
        assert manager.scheduler is not None and manager.scheduler.get(job).paused
