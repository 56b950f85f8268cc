"""The dashboard server over HTTP: endpoints, security rules, /metrics, SSE, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import threadloom
from threadloom import RetryPolicy, TaskManager, TaskStatus, ThreadPoolManager
from threadloom.dashboard import Dashboard, DashboardError, parse_bind
from threadloom.dashboard._layout import layered_layout
from threadloom.dashboard._stream import Broadcaster
from threadloom.history import TaskHistory

WAIT = 10.0


@pytest.fixture
def pool() -> Iterator[ThreadPoolManager]:
    with ThreadPoolManager(2, 2) as pool:
        yield pool


@pytest.fixture
def dash(pool: ThreadPoolManager) -> Iterator[Dashboard]:
    # Every task followed (no sampling): the tests count them.
    with Dashboard(pool, sample_interval=0.1, max_task_rate=None) as dash:
        yield dash


def get(dash: Dashboard, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{dash.port}{path}", timeout=WAIT, **kwargs)


def post(dash: Dashboard, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{dash.port}{path}", timeout=WAIT, **kwargs)


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


# -- endpoints -----------------------------------------------------------------


def test_every_view_has_json_and_every_response_a_csp(dash: Dashboard) -> None:
    for path in ("/", "/healthz", "/api/info", "/api/overview", "/api/tasks", "/api/stream"):
        response = get(dash, path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert get(dash, "/healthz").json() == {"status": "ok", "live": True}
    # No manager and no history behind a bare pool: those views say so.
    response = get(dash, "/api/executions")
    assert response.status_code == 404
    assert "no history" in response.json()["error"]


def test_metrics_parse_and_match_the_pool_counters(
    pool: ThreadPoolManager, dash: Dashboard
) -> None:
    def boom() -> None:
        raise ValueError("no")

    ids = [pool.submit(lambda: None) for _ in range(20)]
    failing = pool.submit_call(boom, retry=RetryPolicy(1, delay=0.0))
    assert pool.wait_all(WAIT)
    assert all(pool.get_task_status(t) is TaskStatus.COMPLETED for t in ids)
    assert pool.get_task_status(failing) is TaskStatus.FAILED
    response = get(dash, "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    values = metric_values(response.text)
    metrics = pool.get_metrics()
    assert (
        values[("threadloom_tasks_total", (("status", "completed"),))] == metrics["tasks_completed"]
    )
    assert (
        values[("threadloom_tasks_total", (("status", "failed"),))] == metrics["tasks_failed"] == 1
    )
    assert values[("threadloom_tasks_submitted_total", ())] == metrics["tasks_submitted"] == 21
    assert values[("threadloom_task_retries_total", ())] == metrics["tasks_retried"] == 1
    assert values[("threadloom_queue_depth", (("priority", "normal"),))] == 0
    workers = (
        values[("threadloom_workers", (("state", "busy"),))]
        + values[("threadloom_workers", (("state", "idle"),))]
    )
    assert workers == pool.get_metrics()["worker_count"]
    core = "native" if threadloom.NATIVE else "python"
    info = ("threadloom_info", (("core", core), ("version", threadloom.__version__)))
    assert values[info] == 1
    # No task ids in labels.
    assert "task-" not in response.text


def test_task_detail_carries_the_traceback(pool: ThreadPoolManager, dash: Dashboard) -> None:
    def explode() -> None:
        raise KeyError("the key")

    task_id = pool.submit_call(explode, name="exploder")
    assert pool.wait_for_task(task_id, WAIT)

    def detail() -> dict[str, Any]:
        return get(dash, f"/api/tasks/{task_id}").json()  # type: ignore[no-any-return]

    # The event reaches the dashboard on its subscription thread: poll, bounded.
    body = _eventually(detail, lambda d: bool(d.get("traceback")))
    assert body["status"] == "failed"
    assert body["error_type"] == "KeyError"
    assert "in explode" in body["traceback"]
    assert get(dash, "/api/tasks/task-nope").status_code == 404


def test_tasks_table_filters_and_sorts(pool: ThreadPoolManager, dash: Dashboard) -> None:
    for name in ("beta", "alpha", "gamma"):
        pool.submit_call(lambda: None, name=name)
    assert pool.wait_all(WAIT)
    body = _eventually(
        lambda: get(dash, "/api/tasks?sort=name&order=asc").json(), lambda b: b["total"] == 3
    )
    assert [t["name"] for t in body["tasks"]] == ["alpha", "beta", "gamma"]
    body = get(dash, "/api/tasks?name=AM&status=completed").json()
    assert [t["name"] for t in body["tasks"]] == ["gamma"]
    bad = get(dash, "/api/tasks?sort=secret")
    assert bad.status_code == 400 and "cannot sort by 'secret'" in bad.json()["error"]
    assert get(dash, "/api/tasks?limit=0").status_code == 400


def test_stream_aggregates_thin_bars_into_cells(pool: ThreadPoolManager, dash: Dashboard) -> None:
    for _ in range(500):
        pool.submit(lambda: None)
    assert pool.wait_all(WAIT)
    body = _eventually(
        lambda: get(dash, "/api/stream?width=100").json(),
        lambda b: sum(c[3] for c in b["cells"]) + len(b["bars"]) >= 500,
    )
    # 500 tasks of a few microseconds in a 60 s window 100 px wide: cells, not bars.
    assert len(body["cells"]) <= 2 * 100
    assert all(0 <= c[1] < 100 for c in body["cells"])
    assert get(dash, "/api/stream?t0=5&t1=1").status_code == 400


def test_sse_pushes_updates_and_resumes_from_last_event_id(
    pool: ThreadPoolManager, dash: Dashboard
) -> None:
    url = f"http://127.0.0.1:{dash.port}/events"
    with httpx.stream("GET", url, timeout=WAIT) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        pool.submit(lambda: None)
        first = _read_messages(response, 1)[0]
    assert first["event"] == "update"
    message_id = int(first["id"])
    data = json.loads(first["data"])
    assert "counters" in data
    # Resume: the messages after that id are replayed first, in order.
    with httpx.stream("GET", url, headers={"Last-Event-ID": str(message_id)}, timeout=WAIT) as r:
        replayed = _read_messages(r, 2)
    assert [int(m["id"]) for m in replayed] == [message_id + 1, message_id + 2]
    # Too old an id (dropped from the ring): a reset, so the page refetches.
    with httpx.stream("GET", url, headers={"Last-Event-ID": "-5"}, timeout=WAIT) as r:
        assert _read_messages(r, 1)[0]["event"] == "reset"
    assert get(dash, "/events", headers={"Last-Event-ID": "x"}).status_code == 400


def _read_messages(response: httpx.Response, count: int) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in current:
                messages.append(current)
                if len(messages) == count:
                    return messages
            current = {}
            continue
        key, _, value = line.partition(": ")
        if key in ("id", "event", "data"):
            current[key] = value
    raise AssertionError(f"stream ended after {messages}")


def test_broadcaster_keeps_a_bounded_replay_ring() -> None:
    async def scenario() -> None:
        ring = Broadcaster(replay_bytes=100)
        ring.bind()
        for i in range(50):
            ring.publish(f"message {i:03d}")  # 11 bytes each
        assert ring.bytes <= 100
        assert ring.after(49) == [(50, "message 049")]
        assert ring.after(1) is None  # long gone
        assert ring.after(50) == []

    asyncio.run(scenario())


# -- control actions and security ------------------------------------------------


def test_control_actions_need_post_and_same_origin(
    pool: ThreadPoolManager, dash: Dashboard
) -> None:
    release = threading.Event()
    blockers = [pool.submit(release.wait, WAIT) for _ in range(2)]
    victim = pool.submit(lambda: None)
    origin = {"Origin": f"http://127.0.0.1:{dash.port}"}
    try:
        assert get(dash, f"/api/tasks/{victim}/cancel").status_code == 405
        refused = post(dash, f"/api/tasks/{victim}/cancel")  # no Origin: not same-origin
        assert refused.status_code == 403
        evil = post(dash, f"/api/tasks/{victim}/cancel", headers={"Origin": "http://evil.test"})
        assert evil.status_code == 403
        assert pool.get_task_status(victim) is TaskStatus.QUEUED
        done = post(dash, f"/api/tasks/{victim}/cancel", headers=origin)
        assert done.status_code == 200
        assert done.json() == {"task_id": victim, "cancelled": True, "status": "cancelled"}
        assert post(dash, "/api/tasks/task-0/cancel", headers=origin).status_code == 404
    finally:
        release.set()
    assert all(pool.wait_for_task(t, WAIT) for t in blockers)


def test_dns_rebinding_host_is_refused(dash: Dashboard) -> None:
    response = get(dash, "/api/info", headers={"Host": f"evil.test:{dash.port}"})
    assert response.status_code == 403


def test_non_loopback_bind_requires_a_token(pool: ThreadPoolManager) -> None:
    with Dashboard(pool, host="0.0.0.0") as dash:
        assert dash.token is not None and dash.token_generated
        assert dash.url.endswith(f"?token={dash.token}")
        base = f"http://127.0.0.1:{dash.port}"
        for path in ("/", "/healthz", "/api/info", "/metrics", "/events", "/static/app.css"):
            response = httpx.get(base + path, timeout=WAIT)
            assert response.status_code == 401, path
        assert httpx.get(base + "/api/info?token=wrong", timeout=WAIT).status_code == 401
        page = httpx.get(f"{base}/?token={dash.token}", timeout=WAIT)
        assert page.status_code == 200
        cookie = page.cookies.get("threadloom_token")
        assert cookie == dash.token
        assert "HttpOnly" in page.headers["set-cookie"]
        with_cookie = httpx.get(base + "/api/info", cookies={"threadloom_token": cookie})
        assert with_cookie.status_code == 200
        bearer = {"Authorization": f"Bearer {dash.token}"}
        assert httpx.get(base + "/metrics", headers=bearer, timeout=WAIT).status_code == 200
        # A cookie alone never authorises an action (CSRF); the header does.
        victim = pool.submit(lambda: None)
        assert pool.wait_for_task(victim, WAIT)
        csrf = httpx.post(
            f"{base}/api/tasks/{victim}/cancel",
            cookies={"threadloom_token": cookie},
            headers={"Origin": base},
            timeout=WAIT,
        )
        assert csrf.status_code == 403
        ok = httpx.post(
            f"{base}/api/tasks/{victim}/cancel",
            headers={"X-Threadloom-Token": dash.token},
            timeout=WAIT,
        )
        assert ok.status_code == 200


def test_a_given_token_is_required_on_loopback_too(pool: ThreadPoolManager) -> None:
    with Dashboard(pool, token="s3cret-token") as dash:
        assert get(dash, "/api/info").status_code == 401
        assert get(dash, "/api/info", headers={"X-Threadloom-Token": "s3cret-token"}).is_success


# -- bad input ---------------------------------------------------------------------


def test_a_port_in_use_is_a_clear_error(pool: ThreadPoolManager) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        dash = Dashboard(pool, port=port)
        with pytest.raises(DashboardError, match=f"port {port} on 127.0.0.1 is already in use"):
            dash.start()


def test_bad_arguments_are_refused_with_their_name(pool: ThreadPoolManager) -> None:
    with pytest.raises(DashboardError, match=r"cannot use host 'no-such-host\.invalid'"):
        Dashboard(pool, host="no-such-host.invalid")
    with pytest.raises(ValueError, match="port must be between 0 and 65535"):
        Dashboard(pool, port=70000)
    with pytest.raises(TypeError, match="source must be a ThreadPoolManager"):
        Dashboard(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token must be"):
        Dashboard(pool, token="short")
    with pytest.raises(ValueError, match="needs a source"):
        Dashboard(None)


def test_parse_bind() -> None:
    assert parse_bind("8050") == ("127.0.0.1", 8050)
    assert parse_bind("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    for bad, message in (("x", "must be a number"), ("1:99999", "out of range"), (":1", "empty")):
        with pytest.raises(ValueError, match=message):
            parse_bind(bad)


def test_an_unreadable_history_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DashboardError, match="no history database"):
        Dashboard(None, history=tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DashboardError, match="cannot open history"):
        Dashboard(None, history=junk)
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.db"
        sqlite3.connect(locked).close()
        locked.chmod(0)
        with pytest.raises(DashboardError, match="not readable"):
            Dashboard(None, history=locked)


# -- the task manager, history and schedules ----------------------------------------


def test_history_only_dashboard_pages_in_sql(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with TaskManager(history=db) as manager:
        task = manager.register_task("t", lambda: None)
        for _ in range(7):
            manager.execute_task(task, wait=True)
    with Dashboard(None, history=db) as dash:
        assert get(dash, "/api/info").json()["live"] is False
        first = get(dash, "/api/history/runs?limit=3").json()
        second = get(dash, "/api/history/runs?limit=3&offset=3").json()
        last = get(dash, "/api/history/runs?limit=3&offset=6").json()
        assert (len(first["runs"]), first["more"]) == (3, True)
        assert (len(last["runs"]), last["more"]) == (1, False)
        seen = {r["run_id"] for r in first["runs"] + second["runs"] + last["runs"]}
        assert len(seen) == 7
        assert get(dash, "/api/history/runs?status=failed").json()["runs"] == []
        bad = get(dash, "/api/history/runs?status=exploded")
        assert bad.status_code == 400 and "unknown status 'exploded'" in bad.json()["error"]
        executions = get(dash, "/api/history/executions?limit=100").json()["executions"]
        assert len(executions) == 7
        dag = get(dash, f"/api/executions/{executions[0]['execution_id']}").json()
        assert [n["name"] for n in dag["nodes"]] == ["t"]
        assert (
            post(dash, "/api/tasks/x/cancel", headers={"Origin": _origin(dash)}).status_code == 404
        )


def _origin(dash: Dashboard) -> str:
    return f"http://127.0.0.1:{dash.port}"


def test_execution_dag_layout_run_and_cancel(tmp_path: Path) -> None:
    gate = threading.Event()
    with TaskManager() as manager, Dashboard(manager) as dash:
        root = manager.register_task("root", gate.wait, WAIT)
        left = manager.register_task("left", lambda: None, dependencies=[root])
        right = manager.register_task("right", lambda: None, dependencies=[root])
        join = manager.register_task("join", lambda: None, dependencies=[left, right])
        started = post(dash, f"/api/registered/{join}/run", headers={"Origin": _origin(dash)})
        assert started.status_code == 200
        execution_id = started.json()["execution_id"]
        dag = get(dash, f"/api/executions/{execution_id}").json()
        layer = {n["name"]: n["layer"] for n in dag["nodes"]}
        assert layer == {"root": 0, "left": 1, "right": 1, "join": 2}
        assert sorted(map(tuple, dag["edges"])) == sorted(
            [(root, left), (root, right), (left, join), (right, join)]
        )
        cancel = post(
            dash, f"/api/executions/{execution_id}/cancel", headers={"Origin": _origin(dash)}
        )
        assert cancel.json() == {"execution_id": execution_id, "cancelled": True}
        gate.set()
        assert manager.wait_for_execution(execution_id, WAIT)
        statuses = {
            n["name"]: n["status"]
            for n in get(dash, f"/api/executions/{execution_id}").json()["nodes"]
        }
        assert statuses["join"] == "cancelled"
        assert get(dash, "/api/executions/nope").status_code == 404


def test_schedules_view_explains_and_pauses(tmp_path: Path) -> None:
    with TaskManager() as manager, Dashboard(manager) as dash:
        job = manager.register_task("nightly", lambda: None, schedule="30 2 * * *")
        body = get(dash, "/api/schedules").json()
        (entry,) = body["schedules"]
        assert entry["name"] == "nightly"
        assert entry["explain"] == "At 02:30 every day"
        assert len(entry["next_fire_times"]) == 5
        origin = {"Origin": _origin(dash)}
        paused = post(dash, f"/api/schedules/{job}/pause", headers=origin).json()
        assert paused == {"job_id": job, "paused": True}
        assert get(dash, "/api/schedules").json()["schedules"][0]["next_fire_times"] == []
        assert post(dash, f"/api/schedules/{job}/resume", headers=origin).json()["paused"] is False
        assert post(dash, f"/api/schedules/{job}/explode", headers=origin).status_code == 404


def test_layered_layout_orders_layers_by_longest_path() -> None:
    parents = {"b": ["a"], "c": ["a", "b"], "d": []}
    layout = layered_layout(["a", "b", "c", "d"], parents)
    assert layout["a"][0] == layout["d"][0] == 0
    assert layout["b"] == (1, 0)
    assert layout["c"] == (2, 0)
    chain = [f"n{i}" for i in range(5000)]
    deep = layered_layout(chain, {chain[i]: [chain[i - 1]] for i in range(1, 5000)})
    assert deep["n4999"] == (4999, 0)


def test_dashboard_history_is_closed_when_it_owns_it(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    TaskHistory(db).close()
    dash = Dashboard(None, history=db)
    dash.stop()  # never started: still closes what the constructor opened
    assert "closed" in repr(dash._sources.history)


def _eventually(fetch: Any, ok: Any, timeout: float = WAIT) -> Any:
    """Fetch until *ok* holds (events reach the dashboard on its subscription
    thread, after the task ended); fails after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        last = fetch()
        if ok(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"never satisfied within {timeout} s: {last!r}")
        pause.wait(0.02)


def test_task_stream_stays_bounded_at_100k_tasks() -> None:
    from threadloom import events as ev
    from threadloom.dashboard._collector import LiveState

    state = LiveState(max_bars=200_000)
    start = 1_000_000.0
    for i in range(100_000):
        worker = f"w{i % 8}"
        t0 = start + i * 0.0005
        state.on_event(ev.TaskStarted(t0, f"t{i}", "job", 1, 1, worker, 0.0))
        state.on_event(ev.TaskFinished(t0 + 0.0004, f"t{i}", "job", 1, "completed", 1, 0.0, 0.0004))
    # The whole run (50 s) in a 1000-pixel window: every task is accounted
    # for, in at most workers x pixels cells.
    view = state.stream(start, start + 50.0, 1000)
    assert len(view["workers"]) == 8
    assert view["bars"] == []
    assert len(view["cells"]) <= 8 * 1000
    assert sum(cell[3] for cell in view["cells"]) == 100_000
    # Zoomed in to 10 ms: bars wider than a pixel come as bars.
    zoom = state.stream(start, start + 0.01, 1000)
    assert 19 <= len(zoom["bars"]) <= 21
    assert zoom["cells"] == []
    assert all(bar[3] == "job" for bar in zoom["bars"])
    # The task table keeps the latest max_tasks only.
    assert len(state.tasks) == state.max_tasks


def test_import_threadloom_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, threadloom, threadloom.cli, threadloom.dashboard; "
        "heavy = ('starlette', 'uvicorn', 'prometheus_client'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_overview_shows_limits_thresholds_and_alerts() -> None:
    from threadloom.resource_monitor import ResourceMonitor

    monitor = ResourceMonitor(check_interval=60, disk_threshold=0.001)
    with ThreadPoolManager(1, 1, resource_monitor=monitor) as pool, Dashboard(pool) as dash:
        monitor.sample_now()  # the disk is fuller than 0.001 %: an alert
        body = _eventually(
            lambda: get(dash, "/api/overview").json(),
            lambda b: any(a["resource"] == "disk" for a in b["alerts"]),
        )
        resources = body["resources"]
        assert resources["thresholds"]["disk"] == 0.001
        assert resources["cpu_count"] >= 1 and resources["memory_limit_bytes"] > 0
        assert resources["memory_limit_source"]
        assert "disk" in [a["resource"] for a in resources["active_alerts"]]
        values = metric_values(get(dash, "/metrics").text)
        threshold = values[("threadloom_resource_threshold_ratio", (("resource", "disk"),))]
        assert threshold == pytest.approx(0.00001)


def test_stop_ends_connected_event_streams(pool: ThreadPoolManager) -> None:
    dash = Dashboard(pool).start()
    ended = threading.Event()
    connected = threading.Event()

    def client() -> None:
        with httpx.stream("GET", f"http://127.0.0.1:{dash.port}/events", timeout=WAIT) as r:
            connected.set()
            for _ in r.iter_lines():
                pass
        ended.set()

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    assert connected.wait(WAIT)
    dash.stop()
    assert ended.wait(WAIT), "the event stream outlived the dashboard"
    assert not dash._thread.is_alive()  # type: ignore[union-attr]
    assert not pool.events.active  # its subscription is gone
