"""``threadloom demo``: the local site, the pipeline's pieces, and the command end to end."""

from __future__ import annotations

import itertools
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from threadloom import TaskPriority
from threadloom._demo import (
    ARTICLES_PER_SOURCE,
    FEED_CRON,
    FETCH_RETRY,
    ROUND_TARGET,
    SOURCES,
    ArticleFacts,
    DemoSite,
    PageGoneError,
    TransientFetchError,
    aggregate_source,
    build_report,
    build_workflow,
    fetch,
    fetch_article,
    fetch_feed,
    match_alerts,
    parse_article,
    render_article,
    simhash,
)
from threadloom.task_manager import TriggerRule

RUN_TIMEOUT = 90.0
WAIT = 20.0
TERMINAL = {"completed", "failed", "timed_out", "cancelled", "upstream_failed", "skipped"}
DEAD_LINK = next(f"fetch:{s.name}/{s.dead_slot}" for s in SOURCES if s.dead_slot is not None)


@pytest.fixture(scope="module")
def site() -> Iterator[DemoSite]:
    with DemoSite(seed=3, latency_scale=0.0) as running:
        yield running


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p
        )
    env.pop("THREADLOOM_DB", None)
    return env


def summary_numbers(stdout: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^  (\w+): (\d+)$", stdout, re.MULTILINE)}


def rows(db: Path, sql: str) -> list[Any]:
    # As sqlite3 types them: what a row holds depends on the query, so the
    # caller says (runs: list[tuple[str, str, int]] = rows(...)).
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def assert_history_is_consistent(db: Path) -> None:
    executions = rows(db, "SELECT status, finished_at FROM executions")
    assert executions
    assert all(status in TERMINAL and finished is not None for status, finished in executions)
    assert all(status in TERMINAL for (status,) in rows(db, "SELECT status FROM task_runs"))


# --------------------------------------------------------------------------- the site


def test_the_site_listens_on_loopback_only(site: DemoSite) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", site.base_url)
    assert site._server is not None
    assert site._server.server_address[0] == "127.0.0.1"


def test_the_site_serves_articles_a_feed_and_failures(site: DemoSite) -> None:
    page: str | None = None
    statuses: Counter[int] = Counter()
    # Transient failures are random (seeded): ask until both kinds were seen.
    for _ in range(200):
        try:
            page = fetch_article(site.base_url, "legacy-blog", 1)
            statuses[200] += 1
        except TransientFetchError:
            statuses[503] += 1
        if statuses[200] and statuses[503]:
            break
    assert statuses[200] and statuses[503]
    assert page is not None and "<article>" in page

    dead = next(s for s in SOURCES if s.dead_slot is not None)
    with pytest.raises(PageGoneError, match="HTTP 404"):
        fetch_article(site.base_url, dead.name, dead.dead_slot)  # type: ignore[arg-type]
    with pytest.raises(PageGoneError):
        fetch(f"{site.base_url}/no/such/page")
    headlines = fetch_feed(site.base_url)
    assert len(headlines) == 8 and all(isinstance(h, str) for h in headlines)
    assert site.requests[404] >= 2 and site.requests[503] >= 1


def test_fetch_refuses_other_hosts() -> None:
    with pytest.raises(ValueError, match=r"only fetches from 127\.0\.0\.1"):
        fetch("http://example.com/")
    with pytest.raises(ValueError):
        fetch("http://localhost.example.com:8080/")


def test_fetch_ignores_proxy_settings(site: DemoSite, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy nothing listens on: urllib would route 127.0.0.1 through it
    # (no_proxy unset) and fail; the demo's opener must not.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    opener = urllib.request.build_opener()
    with pytest.raises(urllib.error.URLError):
        opener.open(f"{site.base_url}/feed", timeout=5)

    assert fetch_feed(site.base_url)


def test_a_refused_connection_is_transient() -> None:
    stopped = DemoSite(latency_scale=0.0)
    url = stopped.start()
    stopped.stop()

    with pytest.raises(TransientFetchError):
        fetch(f"{url}/feed", timeout=2)


# --------------------------------------------------------------------------- the pipeline


def test_parse_extracts_title_text_entities_and_focus_points() -> None:
    page = (
        "<html><head><title>Harbor Robotics ships sensors</title></head><body>"
        "<nav>markets markets</nav><script>var markets = 1;</script>"
        "<article><h1>Harbor Robotics ships sensors</h1>"
        "<p>Ada Lovelace reports latency of the grid. Latency grew; latency fell.</p>"
        "<p>Quarry Capital doubles energy forecasts.</p></article></body></html>"
    )

    facts = parse_article({"fetch:x/0": page})

    assert facts.title == "Harbor Robotics ships sensors"
    assert facts.words == 4 + 11 + 5
    assert ("latency", 3) in facts.keywords
    assert facts.entities == ("Ada Lovelace", "Harbor Robotics", "Quarry Capital")
    # "markets" is only in <nav> and <script>: those are not the article.
    assert facts.focus_hits == ("latency", "energy", "robotics")
    assert "markets" not in dict(facts.keywords)


def test_simhash_tells_near_duplicates_from_different_articles() -> None:
    import random

    text = render_article("city-desk", 0, random.Random(1))
    other = render_article("city-desk", 0, random.Random(2))
    first = parse_article({"a": text})
    edited = parse_article({"a": text.replace("</article>", " one more line.</article>")})
    different = parse_article({"a": other})

    assert simhash(["a", "b", "c", "d"]) == simhash(["a", "b", "c", "d"])
    assert (first.fingerprint ^ edited.fingerprint).bit_count() <= 3
    assert (first.fingerprint ^ different.fingerprint).bit_count() > 10


def test_aggregate_and_report_count_what_is_missing() -> None:
    facts = ArticleFacts("t", 10, (("grid", 2),), ("Ada Lovelace",), ("energy",), 0b1010)
    twin = ArticleFacts("t", 10, (("grid", 1),), ("Ken Thompson",), ("energy",), 0b1011)

    digest = aggregate_source("city-desk", 6, {"p0": facts, "p1": twin})
    report = build_report({"aggregate:city-desk": digest})

    assert (digest.articles, digest.missing, digest.near_duplicates) == (2, 4, 1)
    assert digest.keywords == (("grid", 3),)
    assert (digest.entities, dict(digest.focus_hits)) == (2, {"energy": 2})
    assert (report.articles, report.missing, report.sources) == (2, 4, 1)
    assert report.top_keywords == ("grid",)


def test_alerts_are_headlines_that_mention_a_focus_point() -> None:
    assert match_alerts({"feed:fetch": ["Port Authority cuts energy", "A quiet day"]}) == [
        "Port Authority cuts energy"
    ]


def test_the_graph() -> None:
    workflow = build_workflow("http://127.0.0.1:1")
    tasks = workflow.tasks
    per_round = len(workflow.closure([ROUND_TARGET]))
    sources = len(SOURCES)

    assert per_round == sources * (2 * ARTICLES_PER_SOURCE + 1) + 1
    assert tasks[ROUND_TARGET].trigger_rule is TriggerRule.ALL_DONE
    fetches = [t for t in tasks.values() if t.tags[0] == "fetch"]
    assert len(fetches) == sources * ARTICLES_PER_SOURCE
    assert all(t.retry == FETCH_RETRY for t in fetches)
    assert FETCH_RETRY.backoff > 1 and FETCH_RETRY.retry_on == (ConnectionError,)
    assert {t.priority for t in fetches} == {TaskPriority.HIGH, TaskPriority.NORMAL}
    parse = tasks["parse:city-desk/0"]
    assert parse.depends_on == ("fetch:city-desk/0",) and parse.priority == TaskPriority.LOW
    assert tasks["aggregate:city-desk"].trigger_rule is TriggerRule.ALL_DONE
    # The feed check is the scheduled part, at the top priority, outside the rounds.
    (scheduled,) = workflow.scheduled
    assert scheduled.name == "feed:alerts" and scheduled.priority == TaskPriority.CRITICAL
    assert "feed:fetch" not in workflow.closure([ROUND_TARGET])
    assert scheduled.schedule is not None
    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    times = scheduled.schedule.next_fire_times(start, 3)
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == [2, 2]
    assert FEED_CRON.split()[0] == "*/2"


# --------------------------------------------------------------------------- the command


def test_the_demo_runs_and_its_summary_matches_its_history(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"

    result = subprocess.run(
        [sys.executable, "-m", "threadloom", "demo", "--duration", "5", "--db", str(db)],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )

    assert result.returncode == 0, result.stderr
    out = result.stdout
    numbers = summary_numbers(out)
    runs: list[tuple[str, str, int]] = rows(db, "SELECT task_name, status, attempts FROM task_runs")
    statuses = Counter(status for _, status, _ in runs)
    # The summary is the history's.
    assert numbers["tasks"] == len(runs)
    for status in TERMINAL:
        assert numbers[status] == statuses.get(status, 0), status
    # A run that never started (upstream failed) has 0 attempts and no retry.
    assert numbers["retries"] == sum(max(0, attempts - 1) for _, _, attempts in runs)
    executions: list[tuple[str, str]] = rows(db, "SELECT trigger, status FROM executions")
    assert numbers["executions"] == len(executions)
    assert f"history: {db}" in out
    assert_history_is_consistent(db)
    # Crawl rounds ran, and the cron part fired during the run.
    triggers = Counter(trigger for trigger, _ in executions)
    assert triggers["manual"] >= 1 and triggers["schedule"] >= 1
    assert f"triggered by: {triggers['manual']} manual, {triggers['schedule']} schedule" in out
    assert numbers["completed"] > 0
    # The dead link fails in every round, and takes down exactly its parse.
    dead = [(status, attempts) for name, status, attempts in runs if name == DEAD_LINK]
    # A 404 is not retried (retry_on: ConnectionError only).
    assert dead and set(dead) == {("failed", 1)}
    assert numbers["failed"] >= len(dead)
    assert numbers["upstream_failed"] == numbers["failed"]
    # Every 404 the site served was an attempt of the dead link's fetch.
    dead_attempts = sum(a for name, _, a in runs if name == DEAD_LINK)
    assert re.search(rf"site: \d+ requests \(\d+ ok, \d+ overloaded 503, {dead_attempts} dead", out)
    assert re.search(r"^  throughput: \d+\.\d tasks/s$", out, re.MULTILINE)
    assert re.search(r"^  wait time: p50 .+, p90 .+, p99 .+, max .+", out, re.MULTILINE)
    assert re.search(r"^  run time: p50 .+, p90 .+, p99 .+, max .+", out, re.MULTILINE)
    assert re.search(r"extracted: [1-9]\d* articles in [1-9]\d* crawl rounds", out)
    # Not a terminal: plain progress lines with the worker count and queue depth.
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert progress and all(
        "fetch " in line and "workers " in line and "queue " in line for line in progress
    )


def _read_lines(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "threadloom", "demo", "--duration", "60", "--db", str(db)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
        seen: list[str] = []
        # The first progress line means tasks are running.
        while not (seen and seen[-1].startswith("[")):
            seen.append(lines.get(timeout=WAIT))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=WAIT) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT)
    rest = []
    while True:
        try:
            rest.append(lines.get(timeout=WAIT))
        except queue.Empty:
            break
        if rest[-1].startswith("  history: "):
            break
    out = "".join(seen + rest)
    assert "interrupted (SIGINT): stopped cleanly" in out
    assert re.search(r"left: \d+ execution\(s\) cancelled; \d+ task\(s\) cancelled", out)
    assert_history_is_consistent(db)
    assert summary_numbers(out)["tasks"] == rows(db, "SELECT COUNT(*) FROM task_runs")[0][0]
