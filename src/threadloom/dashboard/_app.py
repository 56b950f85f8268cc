"""The ASGI app: pages, ``/api`` JSON, ``/events`` (SSE), ``/metrics``, ``/healthz``.

Endpoints that read the pool, the manager or SQLite are plain functions, which
Starlette runs in its thread pool, so a slow read never stalls the event loop
serving ``/events``.

Its parts live beside it: the SSE ring and framing (``_stream``), the access
checks and security headers (``_auth``), reading request parameters and the
refusal :class:`ApiError` (``_params``), records as JSON (``_shapes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from .. import __version__
from ..core import NATIVE
from ._auth import Guard
from ._collector import LiveState
from ._layout import layered_layout
from ._params import ApiError, float_param, int_param, statuses
from ._shapes import error_text, execution_json, explain, finite, priority_name, run_json
from ._sources import Sources
from ._stream import Broadcaster, sse

STATIC = Path(__file__).parent / "static"

#: SSE messages per second, at most.
MAX_UPDATES_PER_SECOND = 10
#: Task rows carried by one SSE message; beyond it the page refetches /api/tasks.
ROWS_PER_MESSAGE = 200


# -- the app -------------------------------------------------------------------


class DashboardApp:
    """Builds the Starlette app over *sources* and *state*."""

    def __init__(
        self,
        sources: Sources,
        state: LiveState,
        registry: Any,
        *,
        token: str | None,
        loopback: bool,
        port: Callable[[], int],
        sample_interval: float = 1.0,
        designer: Any = None,
    ) -> None:
        self.sources = sources
        self.designer = designer
        self.state = state
        self.registry = registry
        self.token = token
        self.sample_interval = sample_interval
        self.broadcaster = Broadcaster()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_ticker = threading.Event()
        self.ticker: threading.Thread | None = None
        self.last_counts: tuple[float, int] | None = None
        routes = [
            Route("/", self.index),
            Route("/healthz", self.healthz),
            Route("/favicon.ico", self.favicon),
            Route("/metrics", self.metrics),
            Route("/events", self.events),
            Route("/api/info", self._json(self.info)),
            Route("/api/overview", self._json(self.overview)),
            Route("/api/tasks", self._json(self.tasks)),
            Route("/api/tasks/{task_id}", self._json(self.task)),
            Route("/api/tasks/{task_id}/cancel", self._json(self.cancel_task), methods=["POST"]),
            Route("/api/stream", self._json(self.stream)),
            Route("/api/executions", self._json(self.executions)),
            Route("/api/executions/{execution_id}", self._json(self.execution)),
            Route(
                "/api/executions/{execution_id}/cancel",
                self._json(self.cancel_execution),
                methods=["POST"],
            ),
            Route("/api/registered", self._json(self.registered)),
            Route("/api/registered/{task_id}/run", self._json(self.run_task), methods=["POST"]),
            Route("/api/schedules", self._json(self.schedules)),
            Route(
                "/api/schedules/{job_id}/{action}",
                self._json(self.schedule_action),
                methods=["POST"],
            ),
            Route("/api/history/runs", self._json(self.history_runs)),
            Route("/api/history/executions", self._json(self.history_executions)),
            Route("/api/profile", self._json(self.profile)),
            *([] if designer is None else designer.routes(lambda: sources.manager)),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        self.starlette = Starlette(routes=routes, lifespan=self._lifespan)
        self.asgi: ASGIApp = Guard(self.starlette, token, loopback, port)

    # -- lifecycle ---------------------------------------------------------------
    def _lifespan(self, app: Starlette) -> Any:
        outer = self

        class _Lifespan:
            async def __aenter__(self) -> None:
                outer.loop = asyncio.get_running_loop()
                outer.broadcaster.bind()
                outer.ticker = threading.Thread(
                    target=outer._tick_loop, name="threadloom-dashboard-ticker", daemon=True
                )
                outer.ticker.start()

            async def __aexit__(self, *exc: object) -> None:
                outer.shutdown()

        return _Lifespan()

    def shutdown(self) -> None:
        self.stop_ticker.set()
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.broadcaster.close)
        ticker = self.ticker
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join(5)

    def _tick_loop(self) -> None:
        """Every 1/MAX_UPDATES_PER_SECOND s: publish what changed; sample every interval."""
        period = 1.0 / MAX_UPDATES_PER_SECOND
        last_version = -1
        next_sample = 0.0
        while not self.stop_ticker.wait(period):
            try:
                now = time.monotonic()
                sampled = None
                if now >= next_sample:
                    next_sample = now + self.sample_interval
                    sampled = self.take_sample()
                    self.state.add_sample(sampled)
                version = self.state.version
                if version == last_version and sampled is None:
                    continue
                last_version = version
                data = json.dumps(self.update_message(sampled), default=str)
                loop = self.loop
                if loop is None or loop.is_closed():
                    continue
                loop.call_soon_threadsafe(self.broadcaster.publish, data)
            except RuntimeError:
                return  # the loop closed under us: the server is stopping
            except Exception:
                import logging

                logging.getLogger("threadloom.dashboard").exception("dashboard ticker failed")

    def take_sample(self) -> dict[str, Any]:
        sample: dict[str, Any] = {"t": time.time()}
        pool = self.sources.pool
        if pool is not None:
            m = pool.get_metrics()
            finished = m["tasks_completed"] + m["tasks_failed"]
            previous = self.last_counts
            now = time.monotonic()
            rate = 0.0
            if previous is not None and now > previous[0]:
                rate = max(0, finished - previous[1]) / (now - previous[0])
            self.last_counts = (now, finished)
            sample.update(
                busy=m["active_workers"],
                idle=m["idle_workers"],
                total=m["worker_count"],
                target=m["target_workers"],
                max=m["max_workers"],
                queue={priority_name(p): n for p, n in m["queue_size_by_priority"].items()},
                queue_total=m["queue_size"],
                throughput=rate,
                wait_p50=m["wait_time_p50"],
                wait_p90=m["wait_time_p90"],
                wait_p99=m["wait_time_p99"],
                run_p50=m["run_time_p50"],
                run_p90=m["run_time_p90"],
                run_p99=m["run_time_p99"],
            )
        with self.state.lock:
            resources = self.state.latest_resources
        if resources is not None:
            sample.update(
                cpu=resources["cpu_percent"],
                memory=resources["memory_percent"],
                io=resources["io_percent"],
                disk=resources["disk_percent"],
            )
        return sample

    def counters(self) -> dict[str, Any]:
        pool = self.sources.pool
        if pool is None:
            return {}
        m = pool.get_metrics()
        keys = (
            "tasks_submitted",
            "tasks_started",
            "tasks_completed",
            "tasks_failed",
            "tasks_cancelled",
            "tasks_timed_out",
            "tasks_retried",
            "tasks_rejected",
            "tasks_unfinished",
            "worker_count",
            "active_workers",
            "idle_workers",
            "target_workers",
            "min_workers",
            "max_workers",
            "queue_size",
            "throughput",
            "wait_time_p50",
            "wait_time_p90",
            "wait_time_p99",
            "run_time_p50",
            "run_time_p90",
            "run_time_p99",
            "uptime",
            "running",
        )
        out = {k: finite(m[k]) for k in keys}
        out["queue_size_by_priority"] = {
            priority_name(p): n for p, n in m["queue_size_by_priority"].items()
        }
        return out

    def update_message(self, sample: dict[str, Any] | None) -> dict[str, Any]:
        rows, overflow, executions = self.state.take_dirty(ROWS_PER_MESSAGE)
        with self.state.lock:
            alerts = list(self.state.alerts)[:20]
            events_seen = self.state.events_seen
        return {
            "t": time.time(),
            "counters": self.counters(),
            "sample": sample,
            "tasks": rows,
            "tasks_overflow": overflow,
            "executions": executions[:50],
            "alerts": alerts,
            "events_seen": events_seen,
        }

    # -- plumbing ------------------------------------------------------------------
    def _json(self, func: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        from starlette.concurrency import run_in_threadpool

        async def endpoint(request: Request) -> Response:
            try:
                body = await run_in_threadpool(func, request)
            except ApiError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            return JSONResponse(body)

        return endpoint

    def _need(self, what: str) -> Any:
        value = getattr(self.sources, what)
        if value is None:
            raise ApiError(404, f"this dashboard has no {what}")
        return value

    # -- pages and plain endpoints -------------------------------------------------
    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def favicon(self, request: Request) -> Response:
        return Response(status_code=204)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "live": self.sources.live})

    async def metrics(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        body = await run_in_threadpool(generate_latest, self.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def events(self, request: Request) -> Response:
        """SSE: at most MAX_UPDATES_PER_SECOND ``update`` messages a second.

        A client resuming with ``Last-Event-ID`` gets the messages it missed,
        or a ``reset`` event (refetch /api) if they left the replay ring.
        """
        raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        last_id: int | None = None
        if raw:
            try:
                last_id = int(raw)
            except ValueError:
                return JSONResponse({"error": f"bad Last-Event-ID {raw!r}"}, status_code=400)
        broadcaster = self.broadcaster

        async def stream() -> AsyncIterator[bytes]:
            nonlocal last_id
            yield b"retry: 2000\n\n"
            if last_id is not None:
                missed = broadcaster.after(last_id)
                if missed is None:
                    yield sse(broadcaster.next_id - 1, "{}", "reset")
                else:
                    for message_id, data in missed:
                        yield sse(message_id, data)
                    if missed:
                        # Sent: the loop below must not send them again.
                        last_id = missed[-1][0]
            if last_id is None or broadcaster.after(last_id) is None:
                last_id = broadcaster.next_id - 1
            while not broadcaster.closing:
                changed = broadcaster.changed
                assert changed is not None
                fresh = broadcaster.after(last_id)
                if fresh is None:
                    yield sse(broadcaster.next_id - 1, "{}", "reset")
                    last_id = broadcaster.next_id - 1
                    continue
                if fresh:
                    for message_id, data in fresh:
                        yield sse(message_id, data)
                    last_id = fresh[-1][0]
                    continue
                try:
                    await asyncio.wait_for(changed.wait(), 15.0)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                if await request.is_disconnected():
                    return

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    # -- JSON views ----------------------------------------------------------------
    def info(self, request: Request) -> dict[str, Any]:
        s = self.sources
        return {
            "version": __version__,
            "native": NATIVE,
            "live": s.live,
            "manager": s.manager is not None,
            "history": s.history is not None,
            "monitor": s.monitor is not None,
            "token_required": self.token is not None,
            "max_updates_per_second": MAX_UPDATES_PER_SECOND,
            "designer": self.designer is not None,
        }

    def overview(self, request: Request) -> dict[str, Any]:
        monitor = self.sources.monitor
        resources: dict[str, Any] | None = None
        if monitor is not None:
            sample = monitor.get_current_sample()
            resources = {
                "cpu": sample.cpu_percent,
                "memory": sample.memory_percent,
                "disk": sample.disk_percent,
                "io": sample.io_percent,
                "cpu_count": sample.cpu_count,
                "cpu_count_source": sample.cpu_count_source,
                "memory_limit_bytes": sample.memory_limit_bytes,
                "memory_limit_source": sample.memory_limit_source,
                "thresholds": monitor.get_thresholds(),
                "active_alerts": [
                    {"resource": a.resource_type, "value": a.value, "threshold": a.threshold}
                    for a in monitor.get_active_alerts().values()
                ],
            }
        with self.state.lock:
            alerts = list(self.state.alerts)
        return {
            "counters": self.counters(),
            "series": self.state.series_points(),
            "resources": resources,
            "alerts": alerts,
            "last_event_id": self.broadcaster.next_id - 1,
        }

    def tasks(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        try:
            rows, total = self.state.task_rows(
                status=q.get("status") or None,
                name=q.get("name") or None,
                sort=q.get("sort") or "queued_at",
                descending=(q.get("order") or "desc") != "asc",
                limit=int_param(request, "limit", 100, 1, 1000),
                offset=int_param(request, "offset", 0, 0, 10**9),
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return {"tasks": rows, "total": total}

    def task(self, request: Request) -> dict[str, Any]:
        task_id = request.path_params["task_id"]
        detail = self.state.task_detail(task_id)
        pool = self.sources.pool
        if pool is not None:
            try:
                info = pool.get_task_info(task_id)
            except KeyError:
                info = None
            if info is not None:
                if detail is None:
                    error_type, message = error_text(info.error)
                    detail = {
                        "task_id": info.task_id,
                        "name": info.name,
                        "priority": info.priority,
                        "attempts": info.attempts,
                        "queued_at": info.submitted_at,
                        "started_at": info.started_at,
                        "finished_at": info.finished_at,
                        "error_type": error_type,
                        "message": message,
                        "traceback": "",
                        "attempts_log": [],
                    }
                detail["status"] = info.status.value
        if detail is None:
            raise ApiError(404, f"unknown task {task_id!r}")
        return detail

    def cancel_task(self, request: Request) -> dict[str, Any]:
        pool = self._need("pool")
        task_id = request.path_params["task_id"]
        try:
            cancelled = pool.cancel_task(task_id)
            status = pool.get_task_status(task_id).value
        except KeyError:
            raise ApiError(404, f"unknown task {task_id!r}") from None
        return {"task_id": task_id, "cancelled": cancelled, "status": status}

    def stream(self, request: Request) -> dict[str, Any]:
        now = time.time()
        t1 = float_param(request, "t1") or now
        t0 = float_param(request, "t0") or (t1 - 60.0)
        if t0 >= t1:
            raise ApiError(400, "t0 must be before t1")
        width = int_param(request, "width", 1000, 10, 4000)
        return self.state.stream(t0, t1, width)

    def executions(self, request: Request) -> dict[str, Any]:
        history = self._need("history")
        limit = int_param(request, "limit", 50, 1, 500)
        records = history.query_executions(limit=limit)
        return {"executions": [execution_json(r) for r in records]}

    def execution(self, request: Request) -> dict[str, Any]:
        execution_id = request.path_params["execution_id"]
        manager = self.sources.manager
        parents: dict[str, tuple[str, ...]] = {}
        if manager is not None:
            from ..task_manager import UnknownExecutionError, UnknownTaskError

            try:
                info = manager.get_execution(execution_id)
            except UnknownExecutionError:
                raise ApiError(404, f"unknown execution {execution_id!r}") from None
            for task_id in info.tasks:
                try:
                    parents[task_id] = manager.get_task(task_id).dependencies
                except UnknownTaskError:
                    parents[task_id] = ()
            runs = {
                task_id: {
                    "task_id": task_id,
                    "name": run.name,
                    "status": run.status.value,
                    "attempts": run.attempts,
                    "duration": run.duration,
                    "error_type": error_text(run.error)[0],
                    "message": error_text(run.error)[1],
                }
                for task_id, run in info.tasks.items()
            }
            status, targets = info.status.value, info.targets
            started, finished = info.started_at, info.finished_at
        else:
            history = self._need("history")
            records = history.query_executions(execution_id=execution_id)
            if not records:
                raise ApiError(404, f"unknown execution {execution_id!r}")
            record = records[0]
            runs = {
                r.task_id: {
                    "task_id": r.task_id,
                    "name": r.task_name,
                    "status": r.status.value,
                    "attempts": r.attempts,
                    "duration": r.duration,
                    "error_type": r.error_type or "",
                    "message": r.error_message or "",
                }
                for r in history.query_runs(execution_id=execution_id, limit=None)
            }
            status, targets = record.status.value, record.targets
            started, finished = record.started_at, record.finished_at
        layout = layered_layout(list(runs), parents)
        nodes = []
        for task_id, run in runs.items():
            layer, row = layout[task_id]
            nodes.append({**run, "layer": layer, "row": row})
        edges = [[p, c] for c, ps in parents.items() for p in ps if p in runs]
        return {
            "execution_id": execution_id,
            "status": status,
            "targets": list(targets),
            "started_at": started,
            "finished_at": finished,
            "nodes": nodes,
            "edges": edges,
        }

    def cancel_execution(self, request: Request) -> dict[str, Any]:
        manager = self._need("manager")
        from ..task_manager import UnknownExecutionError

        execution_id = request.path_params["execution_id"]
        try:
            cancelled = manager.cancel_execution(execution_id)
        except UnknownExecutionError:
            raise ApiError(404, f"unknown execution {execution_id!r}") from None
        return {"execution_id": execution_id, "cancelled": cancelled}

    def registered(self, request: Request) -> dict[str, Any]:
        manager = self._need("manager")
        return {
            "tasks": [
                {
                    "task_id": t.task_id,
                    "name": t.name,
                    "dependencies": list(t.dependencies),
                    "enabled": t.enabled,
                    "schedule": None if t.schedule_spec is None else str(t.schedule_spec),
                    "description": t.description,
                }
                for t in manager.list_tasks()
            ]
        }

    def run_task(self, request: Request) -> dict[str, Any]:
        manager = self._need("manager")
        from ..task_manager import UnknownTaskError

        task_id = request.path_params["task_id"]
        try:
            execution_id = manager.execute_task(task_id)
        except UnknownTaskError:
            raise ApiError(404, f"unknown task {task_id!r}") from None
        except (ValueError, RuntimeError) as exc:
            raise ApiError(409, str(exc)) from None
        return {"execution_id": execution_id}

    def schedules(self, request: Request) -> dict[str, Any]:
        scheduler = self.sources.scheduler
        names: dict[str, str] = {}
        if self.sources.manager is not None:
            names = {t.task_id: t.name for t in self.sources.manager.list_tasks()}
        jobs = []
        now = datetime.now(timezone.utc)
        for info in scheduler.list_schedules() if scheduler is not None else []:
            schedule = info.schedule
            try:
                upcoming = [] if info.paused else schedule.next_fire_times(now, 5)
            except Exception as exc:
                upcoming = []
                explain_error = str(exc)
            else:
                explain_error = ""
            jobs.append(
                {
                    "job_id": info.job_id,
                    "name": names.get(info.job_id, info.job_id),
                    "schedule": repr(schedule),
                    "explain": explain(schedule) or explain_error,
                    "tz": str(schedule.tz),
                    "next_fire_times": [t.isoformat() for t in upcoming],
                    "paused": info.paused,
                    "running": info.running,
                    "queued": info.queued,
                }
            )
        with self.state.lock:
            missed = list(self.state.recent_misses)
        return {"schedules": jobs, "missed": missed}

    def schedule_action(self, request: Request) -> dict[str, Any]:
        scheduler = self.sources.scheduler
        job_id, action = request.path_params["job_id"], request.path_params["action"]
        if action not in ("pause", "resume"):
            raise ApiError(404, f"unknown schedule action {action!r} (pause or resume)")
        if scheduler is None:
            raise ApiError(404, f"no schedule {job_id!r}")
        try:
            getattr(scheduler, action)(job_id)
        except KeyError:
            raise ApiError(404, f"no schedule {job_id!r}") from None
        return {"job_id": job_id, "paused": scheduler.get(job_id).paused}

    def history_runs(self, request: Request) -> dict[str, Any]:
        history = self._need("history")
        limit = int_param(request, "limit", 50, 1, 500)
        offset = int_param(request, "offset", 0, 0, 10**9)
        q = request.query_params
        records = history.query_runs(
            task_id=q.get("task_id") or None,
            execution_id=q.get("execution_id") or None,
            status=statuses(q.get("status")),
            since=float_param(request, "since"),
            until=float_param(request, "until"),
            limit=limit + 1,
            offset=offset,
        )
        return {
            "runs": [run_json(r) for r in records[:limit]],
            "offset": offset,
            "limit": limit,
            "more": len(records) > limit,
        }

    def history_executions(self, request: Request) -> dict[str, Any]:
        history = self._need("history")
        limit = int_param(request, "limit", 50, 1, 500)
        offset = int_param(request, "offset", 0, 0, 10**9)
        records = history.query_executions(
            status=statuses(request.query_params.get("status")),
            since=float_param(request, "since"),
            until=float_param(request, "until"),
            limit=limit + 1,
            offset=offset,
        )
        return {
            "executions": [execution_json(r) for r in records[:limit]],
            "offset": offset,
            "limit": limit,
            "more": len(records) > limit,
        }

    def profile(self, request: Request) -> dict[str, Any]:
        """The live pool's profile, else the latest one recorded in the history file."""
        from ..profiling import load_profiles

        pool = self.sources.pool
        profiler = pool.profiler if pool is not None else None
        if profiler is not None:
            return {
                "source": "live",
                "report": profiler.report().to_dict(),
                "speedscope": profiler.speedscope(),
            }
        history = self.sources.history
        if history is not None:
            for recorded in load_profiles(history.path, limit=1):
                return {
                    "source": f"recorded: {recorded.source}",
                    "recorded_at": recorded.recorded_at,
                    "report": recorded.report,
                    "speedscope": recorded.speedscope,
                }
        return {"source": None, "report": None, "speedscope": None}
