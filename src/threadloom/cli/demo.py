"""``threadloom demo``: the built-in workload (``threadloom._demo``), run and shown live."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .console import (
    DEFAULT_DB,
    EXIT_FAILED,
    EXIT_OK,
    Interrupts,
    add_cluster,
    add_command,
    add_db,
    add_live,
    add_workers,
    positive_seconds,
)
from .dashboard import add_dashboard
from .live import View
from .session import (
    Session,
    Summary,
    add_profile_options,
    exit_abandoning,
    print_leftovers,
    print_summary,
    profiler_option,
    report_profile,
)

if TYPE_CHECKING:
    from rich.console import Console

    from .._demo import DemoSite

# --------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from rich.text import Text

    from .. import _demo

    interrupts = Interrupts()
    with interrupts:
        site = _demo.DemoSite(seed=args.seed)
        base_url = site.start()
        session: Session | None = None
        code = EXIT_FAILED
        try:
            workflow = _demo.build_workflow(base_url, feed_cron=_demo.FEED_CRON)
            session = Session(
                console,
                db=args.db,
                workers=args.workers,
                live=args.live,
                dashboard=args.dashboard,
                token=args.token,
                cluster=args.cluster,
                profile=profiler_option(args),
            )
            session.register(workflow, schedules=True)
            console.print(
                Text.assemble(
                    ("threadloom demo", "bold"),
                    f": crawling {len(_demo.SOURCES)} sources of a local news site at "
                    f"{base_url} for {args.duration:g} s "
                    + (
                        f"on the Dask cluster {args.cluster}; "
                        if args.cluster
                        else f"with up to {args.workers} workers; "
                    )
                    + f"breaking-news feed checked on cron '{_demo.FEED_CRON}'",
                ),
                soft_wrap=True,
            )
            code = _demo_loop(args, console, session, site, interrupts)
        finally:
            if session is not None:
                session.stop(cancel=True, timeout=10.0)
                session.close()
            site.stop()
    if session is not None:
        report_profile(console, session, args, source="demo")
    return exit_abandoning(session, code)


def _demo_loop(
    args: argparse.Namespace,
    console: Console,
    session: Session,
    site: DemoSite,
    interrupts: Interrupts,
) -> int:
    from .. import _demo

    manager = session.manager
    report_id = session.ids[_demo.ROUND_TARGET]
    feed_id = session.ids["feed:alerts"]
    session.start()
    deadline = args.duration
    rounds: set[str] = set()
    reports: list[Any] = []
    alerts = 0
    draining = False

    def collect() -> None:
        nonlocal alerts
        for execution_id in session.tracker.take_finished():
            rounds.discard(execution_id)
            results = manager.get_execution_status(execution_id).results
            if _demo.ROUND_TARGET in results:
                reports.append(results[_demo.ROUND_TARGET])
            alerts += len(results.get("feed:alerts", ()))

    def tick() -> None:
        nonlocal draining
        collect()
        if session.elapsed < deadline:
            # Two rounds in flight keep the queue fed while the last one finishes.
            while len(rounds) < 2:
                rounds.add(manager.execute_task(report_id))
        elif not draining:
            draining = True
            manager.update_task(feed_id, schedule=None)

    def finished() -> bool:
        return draining and not session.tracker.snapshot()[2]

    def title() -> str:
        phase = "finishing the rounds in flight" if draining else f"{args.duration:g} s"
        return f"threadloom demo · {session.elapsed:4.1f} s / {phase} · {site.base_url}"

    labels = {"feed": "feed (cron)"}
    with View(session, title, stage_labels=labels) as view:
        completed = session.wait(view, interrupts, finished, on_tick=tick)
    if not completed:
        session.announce_stop(interrupts, timeout=10.0)
    session.stop(cancel=not completed, timeout=10.0)
    collect()
    summary = Summary(session.elapsed, session.runs(), session.executions())
    codes = site.requests
    served = sum(codes.values())
    console.print(
        f"site: {served} requests ({codes.get(200, 0)} ok, {codes.get(503, 0)} overloaded 503, "
        f"{codes.get(404, 0)} dead-link 404)",
        highlight=False,
        soft_wrap=True,
    )
    articles = sum(report.articles for report in reports)
    top = reports[-1].top_keywords if reports else ()
    console.print(
        f"extracted: {articles} articles in {len(reports)} crawl rounds; "
        f"top keywords of the last round: {', '.join(top) or 'none'}; "
        f"feed alerts: {alerts}",
        highlight=False,
        soft_wrap=True,
    )
    if not completed:
        assert interrupts.signum is not None
        print_leftovers(console, summary, interrupts.signum, session.abandoned)
    print_summary(console, summary, session.db)
    if not completed:
        return interrupts.exit_code
    db_option = "" if args.db == DEFAULT_DB else f" --db {args.db}"
    console.print(
        f"next: threadloom history{db_option} --status failed; "
        f"threadloom stats{db_option} --by tag",
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_OK


def add_demo_command(commands: Any) -> None:
    demo = add_command(
        commands,
        "demo",
        help="crawl a local test site with a task graph, live (start here)",
        description=(
            "Start a small news site on 127.0.0.1 (generated pages, varied latency, some "
            "failures) and crawl it for a while: fetches (IO-bound, retried with backoff), "
            "parses (CPU-bound), per-source aggregates and a report, at mixed priorities, "
            "with a breaking-news feed checked on a cron schedule. Ends with a summary; "
            "every task run is written to the history file."
        ),
    )
    demo.add_argument(
        "--duration",
        type=positive_seconds,
        default=20.0,
        metavar="SECONDS",
        help="how long to keep starting crawl rounds (default: 20)",
    )
    add_workers(demo, 8, "8")
    demo.add_argument("--seed", type=int, default=7, help="seed of the site's pages and failures")
    add_cluster(demo)
    add_db(demo)
    add_live(demo)
    add_dashboard(demo, optional=True)
    add_profile_options(demo, flag=True)
