"""Who may reach what: the allow-list of routes with the security headers on every answer, the
refusal to serve other machines without logins, and the login check of a shared server."""

from __future__ import annotations

import ipaddress
import socket

import anyio
from starlette.responses import PlainTextResponse

from culture_rag.errors import ExposureError
from culture_rag.serve.users import UsersFile

API = "/gradio_api"
# What the page and gradio_client need; everything else Gradio mounts (monitoring, run history,
# proxying, MCP, PWA manifest, profiling, the vibe editor, …) answers 404.
ALLOWED_EXACT = {
    "/", "/config", "/favicon.ico", "/theme.css",
    f"{API}/info", f"{API}/theme.css", f"{API}/upload", f"{API}/upload_progress", f"{API}/queue/join",
    f"{API}/queue/data", f"{API}/cancel", f"{API}/startup-events", f"{API}/reset",
    f"{API}/run/predict",  # events outside the queue (page load, clicks that only redraw)
}
ALLOWED_PREFIXES = ("/assets/", "/static/", "/svelte/", f"{API}/heartbeat/", f"{API}/file=", f"{API}/call/")
# With --auth: the login form and gradio_client post to /login; /logout ends the session. (The
# page and the client never call /gradio_api/login_check or /gradio_api/token.)
LOGIN_ROUTES = {"/login", "/logout"}
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # Belt and braces for "no external images or links from documents": even if markup slipped
    # through, the browser would load nothing from another origin.
    (
        b"content-security-policy",
        (
            b"default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
            # Gradio's own templates and the page script need inline code and eval.
            b"style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
            b"font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
        ),
    ),
]


def route_allowed(path: str, login: bool = False) -> bool:
    exact = ALLOWED_EXACT | LOGIN_ROUTES if login else ALLOWED_EXACT
    if path in exact or path.rstrip("/") in exact:
        return True
    if not path.startswith(ALLOWED_PREFIXES):
        return False
    if path.startswith(f"{API}/file="):
        target = path[len(f"{API}/file=") :].lower()
        return not (target.startswith(("http:", "https:", "//")) or "://" in target)  # no fetching for others
    return True


class RouteGuard:
    """ASGI middleware: only the routes the app uses, with security headers on every answer."""

    def __init__(self, app, login: bool = False) -> None:
        self.app = app
        self.login = login

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not route_allowed(scope["path"], self.login):
            if scope["type"] == "http":
                await PlainTextResponse("Not found", status_code=404)(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def check_exposure(host: str, users: UsersFile | None) -> None:
    """Refuse to serve other machines without logins: any address but loopback needs --auth."""
    if users is None and not is_loopback(host):
        raise ExposureError(
            f"refusing to serve on {host} without logins: other machines could read and change the library. "
            "Pass --auth users.toml (create entries with `culture-rag users add NAME --auth users.toml`), "
            "or bind 127.0.0.1"
        )


def is_loopback(host: str) -> bool:
    """127.0.0.0/8 and ::1, or a name that resolves to nothing else (localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False  # the bind fails anyway; refusing here keeps the message about logins honest
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def login_check(users: UsersFile):
    """Gradio's auth callable. Async, with the hash in a worker thread: Argon2 takes a tenth of a
    second by design, and a blocking check would stall every page on the server meanwhile."""

    async def check(name: str, password: str) -> bool:
        return await anyio.to_thread.run_sync(users.verify, name, password)

    return check
