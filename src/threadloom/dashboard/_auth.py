"""Access to the dashboard: the token, Host and Origin checks, and the security headers."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Content-Security-Policy of every response: no inline script, nothing off-site.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
TOKEN_COOKIE = "threadloom_token"


class Guard:
    """Token check, Host check, control-action rules and security headers.

    * With a token, every request must carry it (``Authorization: Bearer``,
      ``X-Threadloom-Token``, ``?token=`` or the cookie set when a page was
      opened with ``?token=``); otherwise 401.
    * POST (the control actions) needs the token in a header, or, on a
      loopback bind, an ``Origin`` equal to the dashboard's own (same-origin);
      a cookie alone never authorises an action.  Other methods than GET,
      HEAD and POST get 405.
    * On a loopback bind the Host header must name the loopback address
      (defeats DNS rebinding).
    """

    def __init__(self, app: ASGIApp, token: str | None, loopback: bool, port: Callable[[], int]):
        self.app = app
        self.token = token
        self.loopback = loopback
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        method = scope["method"]
        set_cookie = None
        problem: tuple[int, str] | None = None
        header_token = headers.get("x-threadloom-token") or _bearer(headers.get("authorization"))
        if self.loopback and not self._host_ok(headers.get("host", "")):
            problem = (403, "unexpected Host header for a loopback dashboard")
        elif method not in ("GET", "HEAD", "POST"):
            problem = (405, f"method {method} not allowed")
        elif self.token is not None:
            query_token = (query.get("token") or [None])[0]
            cookie_token = _cookie(headers.get("cookie", ""), TOKEN_COOKIE)
            offered = header_token or query_token or cookie_token
            if not _same(offered, self.token):
                problem = (401, "a valid token is required")
            elif query_token is not None and _same(query_token, self.token):
                set_cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        if problem is None and method == "POST" and not _same(header_token, self.token):
            origin = headers.get("origin")
            if not (self.loopback and origin is not None and self._origin_ok(origin)):
                problem = (
                    403,
                    "control actions need the token in a header, or a same-origin "
                    "request to a loopback dashboard",
                )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if set_cookie is not None:
                    extra.append((b"set-cookie", set_cookie.encode()))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        if problem is not None:
            status, text = problem
            response = JSONResponse({"error": text}, status_code=status)
            if status == 401:
                response.headers["www-authenticate"] = 'Bearer realm="threadloom"'
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _host_ok(self, host: str) -> bool:
        name = host[1 : host.find("]")] if host.startswith("[") else host.partition(":")[0]
        name = name.lower()
        return name in ("localhost", "::1") or name.startswith("127.")

    def _origin_ok(self, origin: str) -> bool:
        for host in ("127.0.0.1", "localhost", "[::1]"):
            if origin == f"http://{host}:{self.port()}":
                return True
        return False


def _same(offered: str | None, token: str | None) -> bool:
    if offered is None or token is None:
        return False
    return hmac.compare_digest(offered.encode(), token.encode())


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
