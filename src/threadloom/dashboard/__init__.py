"""A web dashboard onto a running pool or task manager (or a history file).

    from threadloom.dashboard import Dashboard

    with TaskManager() as manager, Dashboard(manager) as dash:
        print("dashboard:", dash.url)
        ...

It is a Starlette app served by uvicorn on a background thread of this
process.  Pages are static files shipped in the package (no CDN, no build
step) that read ``/api/...`` JSON and listen to ``/events`` (Server-Sent
Events, at most 10 updates a second, resumable with ``Last-Event-ID``);
``/metrics`` is the Prometheus exposition, ``/healthz`` a liveness probe.
Given a :class:`~threadloom.dashboard.designer.Designer`, it also serves the
workflow designer at ``/designer`` (``threadloom design``).

Security: it binds 127.0.0.1 by default.  Any other address needs a token
(one is generated if none is given; :attr:`Dashboard.url` carries it); a
request without it gets 401.  Control actions (cancel a task or an
execution, pause/resume a schedule, run a task) are POST only and need the
token in a header, or a same-origin request on a loopback bind.  Pages render
user strings as text only, under a Content-Security-Policy without inline
script.

This module imports starlette, uvicorn and prometheus_client; ``import
threadloom`` does not import it.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import secrets
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._errors import DashboardError

if TYPE_CHECKING:
    import os

    from ..history import TaskHistory
    from ..task_manager import TaskManager
    from ..thread_pool_manager import ThreadPoolManager
    from .designer import Designer

__all__ = ["Dashboard", "DashboardError", "parse_bind"]

LOGGER = logging.getLogger("threadloom.dashboard")


#: Events buffered for the dashboard's subscriber (see threadloom.events).
EVENT_BUFFER = 50_000
#: Tasks per second the dashboard follows one by one (task stream, tasks
#: table, latency histograms); above it, a sample.  Counters stay exact.
MAX_TASK_RATE = 2_000.0


def parse_bind(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Parse ``[HOST:]PORT`` (``8050``, ``0.0.0.0:8050``, ``[::1]:8050``).

    Raises:
        ValueError: not of that form, or the port is out of range.
    """
    text = text.strip()
    host, port_text = default_host, text
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise ValueError(f"bad dashboard address {text!r}: use [HOST]:PORT for IPv6")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if not host:
        raise ValueError(f"bad dashboard address {text!r}: empty host")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad dashboard address {text!r}: the port must be a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"bad dashboard address {text!r}: port {port} is out of range 0-65535")
    return host, port


def _is_loopback(host: str) -> bool:
    """True if every address *host* resolves to is a loopback address.

    Raises:
        DashboardError: *host* does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise DashboardError(f"cannot use host {host!r} for the dashboard: {exc}") from None
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )


class Dashboard:
    """Serve the dashboard of *source* on ``http://host:port/``.

    Args:
        source: a ``ThreadPoolManager``, a ``TaskManager`` (its pool, schedules
            and history), or None to serve *history* alone.
        host: address to bind; anything not loopback requires a token.
        port: TCP port; 0 picks a free one (see :attr:`port` once started).
        history: a ``TaskHistory`` or a database path for the history view
            (default: the task manager's history).  A path is opened
            read-mostly and closed by :meth:`stop`.
        token: the access token; generated when the bind is not loopback and
            none is given.  With a token, every request must carry it.
        sample_interval: seconds between the overview's time-series samples.
        max_task_rate: tasks per second followed one by one (None: all);
            above it the task views show a sample, so that watching a busy
            pool does not slow it down.  Counters and ``/metrics`` totals are
            the pool's own and stay exact.
        designer: a :class:`~threadloom.dashboard.designer.Designer` to serve
            at ``/designer`` (its Run button uses the task manager *source*).

    Raises:
        TypeError, ValueError: a bad argument (the message names it).
        DashboardError: a bad host, or an unreadable history file.
    """

    def __init__(
        self,
        source: ThreadPoolManager | TaskManager | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        history: TaskHistory | str | os.PathLike[str] | None = None,
        token: str | None = None,
        *,
        sample_interval: float = 1.0,
        max_task_rate: float | None = MAX_TASK_RATE,
        designer: Designer | None = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"host must be a non-empty str, not {host!r}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port}")
        if token is not None and (not isinstance(token, str) or len(token) < 8):
            raise ValueError("token must be a str of at least 8 characters")
        if not (isinstance(sample_interval, int | float) and sample_interval > 0):
            raise ValueError(f"sample_interval must be > 0 seconds, not {sample_interval!r}")
        from ._sources import resolve

        self.host = host
        self.loopback = _is_loopback(host)
        self.token = token if token is not None or self.loopback else secrets.token_urlsafe(18)
        self.token_generated = token is None and self.token is not None
        self._requested_port = port
        self._sample_interval = float(sample_interval)
        self.max_task_rate = max_task_rate
        self._sources = resolve(source, history)
        self._designer = designer
        self._port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._subscriptions: list[Any] = []
        self._app: Any = None
        self._socket: socket.socket | None = None
        self._started = False

    # -- properties --------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """The dashboard's address, with ``?token=...`` when a token is required."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        base = f"http://{host}:{self._port}/"
        return base if self.token is None else f"{base}?token={self.token}"

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> Dashboard:
        """Bind, start serving on a background thread and subscribe to the source.

        Raises:
            DashboardError: the port is in use, or the host cannot be bound.
            RuntimeError: already started.
        """
        if self._started:
            raise RuntimeError("the dashboard is already started")
        import uvicorn

        from ._app import DashboardApp
        from ._collector import LiveState
        from ._metrics import make_registry

        sock = self._socket = self._bind()
        self._port = sock.getsockname()[1]
        state = LiveState()
        sources = self._sources
        self._app = DashboardApp(
            sources,
            state,
            make_registry(sources, state),
            token=self.token,
            loopback=self.loopback,
            port=lambda: self._port,
            sample_interval=self._sample_interval,
            designer=self._designer,
        )
        if sources.pool is not None:
            # A deeper buffer than the default: a burst of short tasks makes
            # three events each, and the dashboard should see them all.
            self._subscriptions.append(
                sources.pool.events.subscribe(
                    state.on_event, buffer_size=EVENT_BUFFER, max_task_rate=self.max_task_rate
                )
            )
        if sources.monitor is not None:
            self._subscriptions.append(sources.monitor.subscribe(state.on_event))
        config = uvicorn.Config(
            self._app.asgi,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            ws="none",
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="threadloom-dashboard", daemon=True
        )
        self._started = True
        self._thread.start()
        deadline = time.monotonic() + 15.0
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise DashboardError(
                    f"the dashboard server did not start on {self.host}:{self._port}"
                )
            time.sleep(0.01)
        return self

    def _bind(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(
                self.host, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except (socket.gaierror, UnicodeError) as exc:
            raise DashboardError(
                f"cannot use host {self.host!r} for the dashboard: {exc}"
            ) from None
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise DashboardError(
                    f"port {self._requested_port} on {self.host} is already in use; "
                    "choose another with --dashboard HOST:PORT (0 picks a free one)"
                ) from None
            raise DashboardError(
                f"cannot bind the dashboard to {self.host}:{self._requested_port}: "
                f"{exc.strerror or exc}"
            ) from None
        sock.set_inheritable(True)
        return sock

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, unsubscribe, close a history this dashboard opened."""
        if self._sources.owns_history and self._sources.history is not None:
            # Also when never started: the constructor opened it.
            closing_history: Any = self._sources.history
        else:
            closing_history = None
        if not self._started:
            if closing_history is not None:
                closing_history.close(timeout)
            return
        self._started = False
        for subscription in self._subscriptions:
            subscription.unsubscribe(timeout)
        self._subscriptions.clear()
        if self._app is not None:
            self._app.shutdown()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            # Closed by us, after the server stopped using it.
            self._socket.close()
            self._socket = None
        if closing_history is not None:
            closing_history.close(timeout)

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"serving {self.url}" if self._started else "stopped"
        return f"<Dashboard {state}>"
