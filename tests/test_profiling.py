"""Task profiling: synthetic loads whose answer is known, classified and advised."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from threadloom import (
    RetryPolicy,
    TaskManager,
    TaskPriority,
    TaskStatus,
    ThreadPoolManager,
    current_task,
)
from threadloom.profiling import (
    SPEEDSCOPE_SCHEMA,
    Profiler,
    ProfileReport,
    format_report,
    load_profiles,
    profiler_from,
)

from .conftest import TIMEOUT

# Simulated latency of the IO-bound tasks: what they wait for, not what a
# test waits for (no assertion depends on it).
LATENCY = 0.02


def spin(n: int) -> int:
    """Pure Python on the CPU: holds the GIL."""
    total = 0
    for i in range(n):
        total += i * i
    return total


class EchoServer:
    """A local TCP server answering each request after LATENCY seconds."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = conn.recv(16)
                self.closed.wait(LATENCY)
                conn.sendall(data)
            except OSError:
                pass  # the client gave up (a failing test): nothing to answer

    def fetch(self) -> bytes:
        with socket.create_connection(self.address, timeout=TIMEOUT) as conn:
            conn.sendall(b"ping")
            return conn.recv(16)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


@pytest.fixture
def server() -> Iterator[EchoServer]:
    echo = EchoServer()
    try:
        yield echo
    finally:
        echo.close()


def run_all(pool: ThreadPoolManager, calls: list[tuple[Any, tuple[Any, ...], str]]) -> None:
    futures = [pool.submit_future(func, args, name=name) for func, args, name in calls]
    for future in futures:
        future.result(TIMEOUT)


def recommendation_kinds(report: ProfileReport, subject: str) -> set[str]:
    return {r.kind for r in report.recommendations if r.subject == subject}


# -- costs nothing when off ----------------------------------------------------------


def test_off_by_default_tasks_run_their_own_function() -> None:
    seen: list[Any] = []

    def body() -> None:
        seen.append(current_task().fn)

    with ThreadPoolManager(1, 1) as pool:
        assert pool.profiler is None
        pool.get_task_result(pool.submit(body), TIMEOUT)
        pool.submit_future(body, name="named").result(TIMEOUT)
    # Nothing between the worker and the task: no wrapper, no record.
    assert seen == [body, body]


def test_on_every_attempt_runs_through_the_profiler() -> None:
    seen: list[Any] = []

    def body() -> None:
        seen.append(type(current_task().fn).__name__)

    with ThreadPoolManager(1, 1, profile=True) as pool:
        assert isinstance(pool.profiler, Profiler)
        # The core's fast path (PoolBase.submit) must not bypass the profiler.
        pool.get_task_result(pool.submit(body), TIMEOUT)
        pool.submit_future(body, name="named").result(TIMEOUT)
        report = pool.profiler.report()
    assert seen == ["_ProfiledCall", "_ProfiledCall"]
    # Unnamed: the function's qualified name.
    assert {p.name for p in report.names} == {body.__qualname__, "named"}
    assert all(p.tasks == 1 and p.attempts == 1 for p in report.names)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="profile must be a bool or a Profiler"):
        ThreadPoolManager(profile="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_rate"):
        Profiler(sample_rate=-1)
    with pytest.raises(TypeError, match="sample_rate"):
        Profiler(sample_rate="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_values"):
        Profiler(max_values=0)
    with pytest.raises(ValueError, match="profile= applies to the pool"):
        TaskManager(thread_pool=ThreadPoolManager(), profile=True)
    assert profiler_from(False) is None
    shared = Profiler()
    assert profiler_from(shared) is shared


# -- classification and advice ---------------------------------------------------------


def test_io_bound_socket_load_is_io_and_gets_littles_law_advice(server: EchoServer) -> None:
    with ThreadPoolManager(1, 2, profile=True) as pool:
        run_all(pool, [(server.fetch, (), "fetch")] * 16)
        report = pool.profiler.report(max_workers=2, cores=4)  # type: ignore[union-attr]
    fetch = report.name("fetch")
    assert fetch.kind == "io"
    assert fetch.off_cpu_share > 0.7
    assert fetch.tasks == 16 and fetch.attempts == 16
    # Two workers for sixteen tasks: most of the time is spent in the queue.
    assert fetch.wait.mean > fetch.wall.mean
    (advice,) = [r for r in report.recommendations if r.subject == "fetch"]
    assert advice.kind == "workers"
    assert advice.numbers["max_workers"] == 2
    assert advice.numbers["recommended_workers"] > 2
    assert "raise max_workers from 2 to about" in advice.advice
    assert "Little's law" in advice.advice


def test_cpu_bound_python_is_cpu_and_gets_process_advice() -> None:
    with ThreadPoolManager(1, 2, profile=True) as pool:
        run_all(pool, [(spin, (1_000_000,), "crunch")] * 4)
        report = pool.profiler.report(max_workers=2, cores=4)  # type: ignore[union-attr]
    crunch = report.name("crunch")
    assert crunch.kind == "cpu"
    assert recommendation_kinds(report, "crunch") == {"gil"}
    (advice,) = report.recommendations
    # min(cores 4, workers 2, tasks 4): two processes could run it at once.
    assert advice.numbers["expected_speedup"] == 2
    assert "--cluster local:2" in advice.advice
    assert "expected speed-up about 2x" in advice.advice


def test_a_task_spends_its_time_in_a_known_function_at_the_top(server: EchoServer) -> None:
    def hot() -> int:
        return spin(60_000)

    def cold() -> int:
        return spin(600)

    def task() -> int:
        return cold() + hot()

    profiler = Profiler(sample_rate=500)
    with ThreadPoolManager(1, 1, profile=profiler) as pool:
        # Bounded: run batches until the sampler has seen enough of them.
        for _ in range(200):
            run_all(pool, [(task, (), "known")] * 5)
            if profiler.report().name("known").samples >= 30:
                break
    top = profiler.top_functions("known")
    assert top[0].function == "spin"
    tree = profiler.call_tree("known")
    path = [node.function for node in tree.heaviest_path()]
    assert path == ["known", task.__qualname__, hot.__qualname__, "spin"]
    assert tree.total >= 30


def test_applying_the_worker_advice_raises_throughput() -> None:
    latency = threading.Event()  # never set: each task waits LATENCY, off the CPU

    def io_task() -> None:
        latency.wait(LATENCY)

    def throughput(workers: int, profile: bool) -> tuple[float, ProfileReport | None]:
        with ThreadPoolManager(workers, workers, profile=profile) as pool:
            started = time.perf_counter()
            run_all(pool, [(io_task, (), "io")] * 40)
            elapsed = time.perf_counter() - started
            report = pool.profiler.report(max_workers=workers) if pool.profiler else None
        return 40 / elapsed, report

    before, report = throughput(2, True)
    assert report is not None
    (advice,) = [r for r in report.recommendations if r.kind == "workers"]
    advised = int(advice.numbers["recommended_workers"])
    assert advised > 2
    after, _ = throughput(advised, False)
    # Expected about advised/2 times more (at least 5x); only the direction is asserted.
    assert after > before


def test_retry_hot_spot() -> None:
    failures: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(key: int) -> int:
        with lock:
            failures[key] = failures.get(key, 0) + 1
            if failures[key] <= 2:
                raise ConnectionError("refused")
        return key

    with ThreadPoolManager(1, 2, profile=True) as pool:
        retry = RetryPolicy(max_retries=3, delay=0.001, backoff=1.0)
        futures = [pool.submit_future(flaky, (k,), retry=retry, name="flaky") for k in range(4)]
        assert [f.result(TIMEOUT) for f in futures] == [0, 1, 2, 3]
        report = pool.profiler.report(max_workers=2)  # type: ignore[union-attr]
    flaky_profile = report.name("flaky")
    assert (flaky_profile.tasks, flaky_profile.attempts, flaky_profile.failed_attempts) == (
        4,
        12,
        8,
    )
    assert flaky_profile.retried_tasks == 4
    assert flaky_profile.errors == (("ConnectionError", 8),)
    (advice,) = [r for r in report.recommendations if r.kind == "retries"]
    assert advice.subject == "flaky"
    assert "ConnectionError, 8 times" in advice.advice


def test_missed_deadlines_running_and_queued() -> None:
    blocker = threading.Event()

    def overrun() -> None:
        # Runs until its deadline cancels it (bounded by TIMEOUT).
        current_task().wait_cancelled(TIMEOUT)
        blocker.set()

    with ThreadPoolManager(1, 1, profile=True) as pool:
        running = pool.submit_future(overrun, timeout=0.05, name="slow")
        # Queued behind it with a deadline that passes before it can start.
        queued = pool.submit_future(lambda: None, timeout=0.01, name="slow")
        assert pool.wait_for_task(running.task_id, TIMEOUT)
        assert pool.wait_for_task(queued.task_id, TIMEOUT)
        assert running.status is TaskStatus.TIMED_OUT
        assert queued.status is TaskStatus.TIMED_OUT
        assert blocker.wait(TIMEOUT)
        assert pool.wait_all(TIMEOUT)
    report = pool.profiler.report(max_workers=1)  # type: ignore[union-attr]
    slow = report.name("slow")
    assert slow.deadline_missed == 2
    assert slow.tasks == 2
    (advice,) = [r for r in report.recommendations if r.kind == "deadlines"]
    assert "2 of 2 'slow' tasks missed their deadline" in advice.advice


def test_low_priority_starvation() -> None:
    latency = threading.Event()
    chain_done = threading.Event()
    low_queued = threading.Event()
    pool = ThreadPoolManager(1, 1, profile=True)

    def high(remaining: int) -> None:
        if remaining == 40:
            # The first one lets the low-priority tasks in, then keeps the
            # worker busy with a chain of higher-priority successors.
            assert low_queued.wait(TIMEOUT)
        latency.wait(0.002)
        if remaining:
            pool.submit_call(high, (remaining - 1,), priority=TaskPriority.HIGH, name="high")
        else:
            chain_done.set()

    with pool:
        pool.submit_call(high, (40,), priority=TaskPriority.HIGH, name="high")
        lows = [
            pool.submit_future(lambda: None, priority=TaskPriority.LOW, name="low")
            for _ in range(6)
        ]
        low_queued.set()
        assert chain_done.wait(TIMEOUT)
        for future in lows:
            future.result(TIMEOUT)
        report = pool.profiler.report(max_workers=1)  # type: ignore[union-attr]
    (advice,) = [r for r in report.recommendations if r.kind == "starvation"]
    assert advice.subject == f"priority {int(TaskPriority.LOW)}"
    assert advice.numbers["higher_arrivals"] >= 6
    assert report.name("low").wait.mean > report.name("high").wait.mean


def test_memory_growing_per_task() -> None:
    kept: list[bytearray] = []

    def leaky() -> None:
        kept.append(bytearray(200_000))

    with ThreadPoolManager(1, 1, profile=Profiler(trace_memory=True)) as pool:
        run_all(pool, [(leaky, (), "leaky"), (spin, (100,), "clean")] * 5)
        report = pool.profiler.report()  # type: ignore[union-attr]
    leaky_profile = report.name("leaky")
    assert leaky_profile.memory_growth is not None
    assert leaky_profile.memory_growth.mean >= 200_000
    subjects = {r.subject for r in report.recommendations if r.kind == "memory"}
    assert subjects == {"leaky"}


def test_memory_is_not_traced_by_default() -> None:
    with ThreadPoolManager(1, 1, profile=True) as pool:
        run_all(pool, [(spin, (100,), "clean")])
        report = pool.profiler.report()  # type: ignore[union-attr]
    assert report.name("clean").memory_growth is None


# -- exports, graphs, percentiles -------------------------------------------------------


def test_speedscope_export_is_a_sampled_profile_per_name() -> None:
    profiler = Profiler(sample_rate=500)
    with ThreadPoolManager(1, 1, profile=profiler) as pool:
        for _ in range(200):
            # Each longer than the GIL's switch interval: the sampler gets the
            # GIL when a worker gives it up, so it sees tasks that run at least that long.
            run_all(pool, [(spin, (300_000,), "a"), (spin, (300_000,), "b")])
            counts = {p.name: p.samples for p in profiler.report().names}
            if min(counts.values(), default=0) >= 5:
                break
    document = json.loads(json.dumps(profiler.speedscope()))
    assert document["$schema"] == SPEEDSCOPE_SCHEMA
    frames = document["shared"]["frames"]
    profiles = {p["name"]: p for p in document["profiles"]}
    assert set(profiles) == {"a", "b"}
    for profile in profiles.values():
        assert profile["type"] == "sampled"
        assert profile["unit"] == "seconds"
        assert len(profile["samples"]) == len(profile["weights"]) > 0
        assert profile["endValue"] == pytest.approx(sum(profile["weights"]), abs=1e-5)
        for stack in profile["samples"]:
            # Root first: the leaf of every stack here is spin.
            assert frames[stack[-1]]["name"] == "spin"
            assert all(0 <= i < len(frames) for i in stack)


def test_task_manager_profiles_graph_nodes() -> None:
    latency = threading.Event()
    with TaskManager(profile=True) as manager:
        manager.register_task("extract", lambda: latency.wait(0.001))
        load = manager.register_task("load", spin, 1000, dependencies=["extract"])
        execution = manager.execute_task(load)
        assert manager.wait_for_execution(execution, TIMEOUT)
        assert manager.profiler is not None
        report = manager.profiler.report()
    assert {p.name for p in report.names} == {"extract", "load"}
    assert all(p.tasks == 1 for p in report.names)


def test_percentiles_and_text_report() -> None:
    with ThreadPoolManager(1, 1, profile=True) as pool:
        run_all(pool, [(spin, (n,), "sized") for n in (1_000, 2_000, 4_000, 8_000, 100_000)])
        report = pool.profiler.report(max_workers=1)  # type: ignore[union-attr]
    sized = report.name("sized")
    assert sized.wall.count == 5
    assert sized.wall.p50 <= sized.wall.p90 <= sized.wall.p99 <= sized.wall.max
    assert sized.wall.max == max(sized.wall.max, sized.wall.mean)
    text = "\n".join(format_report(report))
    assert "sized" in text and "recommendations" in text
    json.dumps(report.to_dict())  # JSON-ready
    with pytest.raises(KeyError, match="no profiled task named 'missing'"):
        report.name("missing")


def test_reset_forgets_and_stop_keeps() -> None:
    with ThreadPoolManager(1, 1, profile=True) as pool:
        run_all(pool, [(spin, (100,), "x")])
        profiler = pool.profiler
        assert profiler is not None and profiler.running
    assert not profiler.running
    assert profiler.names() == ["x"]
    profiler.reset()
    assert profiler.names() == []


def test_unnamed_task_timed_out_in_queue_is_named_by_its_function() -> None:
    gate = threading.Event()

    def hold() -> None:
        assert gate.wait(TIMEOUT)

    def never_started() -> None:
        raise AssertionError("timed out in the queue: never runs")

    profiler = Profiler(group_by="function")
    with ThreadPoolManager(1, 1, profile=profiler) as pool:
        holder = pool.submit_future(hold, name="holder")
        late = pool.submit_future(never_started, timeout=0.01)
        assert pool.wait_for_task(late.task_id, TIMEOUT)
        gate.set()
        holder.result(TIMEOUT)
    report = profiler.report()
    # Grouped by function: the name given to hold() is not used.
    assert {p.name for p in report.names} == {hold.__qualname__, never_started.__qualname__}
    assert report.name(never_started.__qualname__).deadline_missed == 1


# -- the command line ------------------------------------------------------------------

IO_WORKFLOW = """
[workflow]
name = "io-fanout"
workers = 2
{tasks}
"""

IO_TASKS = """
import threading

_never = threading.Event()


def fetch(i: int) -> int:
    _never.wait({latency})
    return i
"""


def run_cli(*args: object, cwd: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("THREADLOOM_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "threadloom", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_profile_prints_json_advice_and_stats_shows_it(tmp_path: Any) -> None:
    (tmp_path / "io_tasks.py").write_text(IO_TASKS.format(latency=LATENCY))
    tasks = "".join(
        f'\n[tasks.fetch_{i}]\ncall = "io_tasks:fetch"\nargs = [{i}]\n' for i in range(12)
    )
    workflow = tmp_path / "flow.toml"
    workflow.write_text(IO_WORKFLOW.format(tasks=tasks))
    db = tmp_path / "h.db"
    speedscope = tmp_path / "out.speedscope.json"

    result = run_cli(
        "profile",
        workflow,
        "--json",
        "--profile-by",
        "function",
        "--speedscope",
        speedscope,
        "--db",
        db,
        "--no-live",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout is the JSON alone
    (fetch,) = report["names"]
    assert fetch["name"] == "fetch" and fetch["tasks"] == 12 and fetch["kind"] == "io"
    kinds = {r["kind"]: r for r in report["recommendations"]}
    assert kinds["workers"]["numbers"]["max_workers"] == 2
    assert kinds["workers"]["numbers"]["recommended_workers"] > 2
    assert json.loads(speedscope.read_text())["$schema"] == SPEEDSCOPE_SCHEMA

    stats = run_cli("stats", "--db", db, cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert "latest recorded profile: run" in stats.stdout
    assert "raise max_workers from 2 to about" in stats.stdout
    stats_json = json.loads(run_cli("stats", "--db", db, "--json", cwd=tmp_path).stdout)
    assert stats_json["profiles"][0]["report"]["names"][0]["name"] == "fetch"


def test_cli_run_without_profile_records_none(tmp_path: Any) -> None:
    (tmp_path / "io_tasks.py").write_text(IO_TASKS.format(latency=0))
    workflow = tmp_path / "flow.toml"
    workflow.write_text(
        IO_WORKFLOW.format(tasks='\n[tasks.one]\ncall = "io_tasks:fetch"\nargs = [1]\n')
    )
    db = tmp_path / "h.db"
    result = run_cli("run", workflow, "--once", "--db", db, "--no-live", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "recommendations" not in result.stdout
    assert load_profiles(db) == []
    profiled = run_cli(
        "run", workflow, "--once", "--profile", "--db", db, "--no-live", cwd=tmp_path
    )
    assert profiled.returncode == 0, profiled.stderr
    assert "recommendations" in profiled.stdout
    assert [p.source for p in load_profiles(db)] == [f"run {workflow}"]


def test_max_task_rate_times_a_sample_and_says_so() -> None:
    profiler = Profiler(max_task_rate=100, sample_rate=0)  # 10 tasks per 0.1 s window
    with ThreadPoolManager(1, 2, profile=profiler) as pool:
        ids = [pool.submit(noop_task) for _ in range(2000)]
        assert pool.wait_all(TIMEOUT)
        assert all(pool.get_task_result(i) is None for i in ids)  # every task ran
        report = profiler.report()
    timed = report.name(noop_task.__qualname__).tasks
    assert 0 < timed < 2000
    assert report.coverage == pytest.approx(timed / 2000)
    unlimited = Profiler(max_task_rate=None, sample_rate=0)
    with ThreadPoolManager(1, 2, profile=unlimited) as pool:
        for _ in range(300):
            pool.submit(noop_task)
        assert pool.wait_all(TIMEOUT)
    assert unlimited.report().coverage == 1.0
    assert unlimited.report().name(noop_task.__qualname__).tasks == 300


def noop_task() -> None:
    return None


# -- the dashboard -----------------------------------------------------------------------


def test_dashboard_serves_the_live_profile_and_a_recorded_one(tmp_path: Any) -> None:
    import httpx

    from threadloom.dashboard import Dashboard
    from threadloom.profiling import save_profile

    profiler = Profiler(sample_rate=500)
    with ThreadPoolManager(1, 1, profile=profiler) as pool, Dashboard(pool) as dash:
        empty = httpx.get(f"{dash.url.rstrip('/')}/api/profile", timeout=TIMEOUT).json()
        assert empty["source"] == "live" and empty["report"]["names"] == []
        for _ in range(200):
            run_all(pool, [(spin, (300_000,), "crunch")])
            if profiler.report().name("crunch").samples >= 5:
                break
        live = httpx.get(f"{dash.url.rstrip('/')}/api/profile", timeout=TIMEOUT).json()
    assert [n["name"] for n in live["report"]["names"]] == ["crunch"]
    assert live["speedscope"]["profiles"][0]["name"] == "crunch"

    db = tmp_path / "h.db"
    from threadloom.history import TaskHistory

    TaskHistory(db).close()
    with Dashboard(history=db) as dash:
        none = httpx.get(f"{dash.url.rstrip('/')}/api/profile", timeout=TIMEOUT).json()
        assert none == {"source": None, "report": None, "speedscope": None}
        save_profile(db, profiler, profiler.report(), "run flow.toml")
        recorded = httpx.get(f"{dash.url.rstrip('/')}/api/profile", timeout=TIMEOUT).json()
    assert recorded["source"] == "recorded: run flow.toml"
    assert recorded["report"]["names"][0]["name"] == "crunch"


def test_dashboard_draws_the_flame_graph_in_a_browser() -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = os.environ.get("THREADLOOM_CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(chromium):
        pytest.skip(f"no Chromium at {chromium}")
    from threadloom.dashboard import Dashboard

    def outer() -> int:
        return spin(300_000)

    profiler = Profiler(sample_rate=500)
    with ThreadPoolManager(1, 1, profile=profiler) as pool:
        for _ in range(200):
            run_all(pool, [(outer, (), "flame")])
            if profiler.report().name("flame").samples >= 10:
                break
        with Dashboard(pool) as dash, sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT * 1000)
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(dash.url + "#profile")
                canvas = page.locator("#flame-canvas")
                # root "flame" -> outer -> spin: at least three boxes drawn.
                sync_api.expect(canvas).to_have_attribute("data-root", "flame")
                page.wait_for_function(
                    "Number(document.getElementById('flame-canvas').dataset.frames) >= 3"
                )
                sync_api.expect(page.locator("#profile-table tbody tr")).to_have_count(1)
                sync_api.expect(page.locator("#profile-advice li")).not_to_have_count(0)
                # Hover over the bottom row (the leaf, spin) names it.
                box = canvas.bounding_box()
                assert box is not None
                page.mouse.move(box["x"] + 5, box["y"] + 18 * 2 + 9)
                sync_api.expect(page.locator("#flame-tip")).to_contain_text("spin")
                assert errors == []
            finally:
                browser.close()


def test_distinct_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import threadloom.profiling.profiler as profiling

    monkeypatch.setattr(profiling, "MAX_NAMES", 3)
    with ThreadPoolManager(1, 1, profile=True) as pool:
        run_all(pool, [(noop_task, (), f"job-{i}") for i in range(6)])
        report = pool.profiler.report()  # type: ignore[union-attr]
    names = {p.name: p.tasks for p in report.names}
    assert len(names) == 4
    assert names[profiling.OTHER_NAMES] == 3  # nothing is lost: counted together


def test_a_restarted_pool_is_counted_once() -> None:
    profiler = Profiler(sample_rate=0)
    pool = ThreadPoolManager(1, 1, profile=profiler)
    for _ in range(2):
        with pool:
            run_all(pool, [(noop_task, (), "again")] * 5)
    report = profiler.report()
    assert report.name("again").tasks == 10
    assert report.coverage == 1.0


def test_profiling_and_a_subscriber_together() -> None:
    seen: list[str] = []
    with ThreadPoolManager(1, 2, profile=True) as pool:
        subscription = pool.subscribe(lambda event: seen.append(event.kind))
        try:
            run_all(pool, [(spin, (100,), "both")] * 5)
            pool.get_task_result(pool.submit(spin, 100), TIMEOUT)
            assert subscription.flush(TIMEOUT)
        finally:
            subscription.unsubscribe()
        report = pool.profiler.report()  # type: ignore[union-attr]
    assert seen.count("task_finished") == 6 and seen.count("task_started") == 6
    assert report.name("both").tasks == 5
    assert report.name(spin.__qualname__).tasks == 1


def test_each_profiled_attempt_is_an_event() -> None:
    import threading as _threading

    from threadloom import Event, TaskProfiled, ThreadPoolManager
    from threadloom.profiling import Profiler

    got: list[TaskProfiled] = []
    done = _threading.Event()

    def record(event: Event) -> None:
        assert isinstance(event, TaskProfiled)
        got.append(event)
        if len(got) >= 2:
            done.set()

    def spin() -> int:
        total = 0
        for i in range(200_000):
            total += i
        return total

    with (
        ThreadPoolManager(1, 1, profile=Profiler(sample_rate=0)) as pool,
        pool.subscribe(record, kinds=["task_profiled"]),
    ):
        ids = [pool.submit_call(spin, name="spin") for _ in range(2)]
        assert [pool.get_task_result(i, 30) for i in ids] == [spin()] * 2
        assert done.wait(30)
    assert {e.task_id for e in got} == set(ids)
    for event in got:
        assert event.name == "spin" and event.attempt == 1 and event.failed == ""
        assert event.cpu_time > 0 and event.wall_time > 0
        assert 0.0 <= event.off_cpu_share <= 1.0


def test_a_thread_that_exits_between_open_and_read_has_no_schedstat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The kernel answers ESRCH when the thread is gone by the read: the
    # profiler's sampling thread must get None, not die of the error.
    from threadloom.profiling import schedstat

    if not schedstat.SCHEDSTAT:
        pytest.skip("no /proc schedstat here")
    assert schedstat.read_schedstat(threading.get_native_id()) is not None

    def gone(fd: int, size: int) -> bytes:
        raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr(os, "read", gone)
    assert schedstat.read_schedstat(threading.get_native_id()) is None
