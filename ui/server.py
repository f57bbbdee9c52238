"""Serving the studio: the request guard in front of Gradio, and launch with the queue and limits.

The guard's rules come first, whatever Gradio's own checks allow:
- a file request (`/gradio_api/file=PATH`, `/gradio_api/file/PATH`) is answered only when PATH,
  with every symlink resolved, lies inside the data directory; URLs and the proxy route are refused;
- a request body over the upload limit is refused (413): at once when its Content-Length says so,
  and, for every route, as soon as the bytes read so far pass it (a chunked body has no length);
- with auth on, nothing but the login page, the login form and the page's own static files
  answers without a login cookie (401); Gradio's startup route answers its one call at launch,
  and the login page goes out without the API description Gradio would embed in it.
Gradio then narrows files further to its cache and upload folders, which live inside the data
directory too (`serve_files_from`), so the database and the model files are never served.

Public Gradio APIs do what they can: `launch(app_kwargs={"middleware": ...})` puts the guard in
front, `max_file_size` and `blocked_paths` are Gradio's own limits, and `auth` takes the throttled
check of ui/logins.py. Three things have no public API in Gradio 6 and read the running app's
fields (each says so where it does): whether a request carries a valid login (`cookie_id`,
`tokens`), whether launch's one startup call is done (`startup_events_triggered`), and the API
description Gradio embeds in every page, the login page included (`window.gradio_api_info`). A
Gradio upgrade that renames them fails closed: no login is recognised (401), the startup call is
refused, or the description stays in the login page (tests/e2e/test_app_security.py says which).
(`gr.mount_gradio_app` in our own FastAPI app was weighed: it would lose `--share` and
`block_thread`, and still leave the same three reads.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse

from reasoner.store import DB_NAME

from .config import StudioConfig
from .logins import CLIENT, LoginThrottle

CACHE_DIR = "cache"  # under the data directory: Gradio's uploads and the copies of pictures it serves
FILE_ROUTE = re.compile(r"^(?:/gradio_api)?/(?:file=|file/)(?P<path>.*)$", re.DOTALL)
PROXY_ROUTE = re.compile(r"^(?:/gradio_api)?/proxy=")
BODY_SLACK = 64 * 1024  # multipart headers around an upload
PUBLIC_EXACT = frozenset(
    {
        "/",
        "/login",
        "/login/",
        "/favicon.ico",
        "/theme.css",
        "/gradio_api/theme.css",
        "/manifest.json",
        "/robots.txt",
    }
)
API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
STARTUP_ROUTE = "/gradio_api/startup-events"
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
CACHE_MAX_AGE_S = 24 * 3600


def serve_files_from(data_dir: Path) -> Path:
    """Point Gradio's upload and cache folders inside the data directory. Call before building Blocks."""
    cache = data_dir / CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(cache / "examples")
    return cache


def inside(path_text: str, root: Path) -> bool:
    """Whether `path_text` (absolute, or relative to the working directory) resolves inside `root`."""
    if "\x00" in path_text or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", path_text) or path_text.startswith("//"):
        return False  # NUL, URLs and scheme-relative URLs are never files of ours
    try:
        resolved = Path(os.path.abspath(path_text)).resolve(strict=False)
        return resolved.is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):
        return False


class Guard:
    """ASGI middleware with the rules in this module's docstring."""

    def __init__(self, app, data_dir: Path, max_body: int, auth_on: bool):
        self.app = app
        self.data_dir = Path(data_dir)
        self.max_body = max_body
        self.auth_on = auth_on

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        CLIENT.set((scope.get("client") or ("unknown",))[0])  # for the login throttle (ui/logins.py)
        refusal = self.refusal(scope)
        if refusal is None:
            if self.auth_on and scope["type"] == "http" and scope.get("path") == "/" and not logged_in(scope):
                send = without_api_info(send)  # the login page: Gradio would describe the API in it
            return await self.counted(scope, receive, send)
        status, text = refusal
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        return await PlainTextResponse(text, status_code=status)(scope, receive, send)

    async def counted(self, scope, receive, send):
        """Run the app with the body's bytes counted as they arrive. Past the limit the app is told
        the client left (it stops reading, so nothing more is buffered), whatever it answers is
        dropped, and the client gets 413."""
        state = {"read": 0, "over": False, "answered": False}

        cut_short = (
            {"type": "http.disconnect"} if scope["type"] == "http" else {"type": "websocket.disconnect", "code": 1009}
        )

        async def counted_receive():
            if state["over"]:
                return cut_short
            message = await receive()
            if message["type"] == "http.request":  # a body in parts: the total counts
                state["read"] += len(message.get("body") or b"")
                state["over"] = state["read"] > self.max_body
            elif message["type"] == "websocket.receive":  # each message counts alone
                state["over"] = len(message.get("bytes") or b"") + len(message.get("text") or "") > self.max_body
            return cut_short if state["over"] else message

        async def guarded_send(message):
            if state["over"]:
                return None  # the app's answer to a body cut short; the 413 below replaces it
            state["answered"] = state["answered"] or message["type"] in ("http.response.start", "websocket.accept")
            return await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1009})
        elif state["over"] and not state["answered"]:
            await too_large(self.max_body)(scope, receive, send)

    def refusal(self, scope) -> tuple[int, str] | None:
        path = scope.get("path", "")
        if self.auth_on and not public(path) and not starting(scope) and not logged_in(scope):
            return 401, "Not authenticated: log in first"
        if PROXY_ROUTE.match(path):
            return 403, "This studio proxies nothing"
        match = FILE_ROUTE.match(path)
        if match and not inside(match["path"], self.data_dir):
            return 403, "File not allowed: only files inside the studio's data directory are served"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return 413, too_large_text(self.max_body)
        return None


def too_large_text(max_body: int) -> str:
    return f"Request too large: the limit is {max_body - BODY_SLACK} bytes"


def too_large(max_body: int) -> PlainTextResponse:
    return PlainTextResponse(too_large_text(max_body), status_code=413, headers={"Connection": "close"})


def without_api_info(send):
    """`send` for the login page, with Gradio's embedded API description taken out of the HTML.
    (No public switch keeps it out of the page; the template's one line is matched exactly.)"""
    held: list[dict] = []

    async def send_page(message):
        if message["type"] == "http.response.start":
            held.append(message)
            return None
        if message["type"] != "http.response.body":
            return await send(message)
        held.append(message)
        if message.get("more_body"):
            return None
        body = API_INFO.sub(b"window.gradio_api_info = null;</script>", b"".join(m.get("body", b"") for m in held[1:]))
        start = held[0]
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        return await send({"type": "http.response.body", "body": body})

    return send_page


def public(path: str) -> bool:
    return path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)


def starting(scope) -> bool:
    """Gradio's launch calls its own startup route once, without a login; that call only.
    (Private field: Gradio offers no public way to ask whether its startup ran.)"""
    app = scope.get("app")
    return scope.get("path") == STARTUP_ROUTE and getattr(app, "startup_events_triggered", True) is False


def logged_in(scope) -> bool:
    """A valid Gradio login cookie, checked against the running app's own tokens. (Private fields:
    Gradio checks logins only inside its routes; middleware has no public way to ask.)"""
    app = scope.get("app")
    cookie_id, tokens = getattr(app, "cookie_id", None), getattr(app, "tokens", None)
    if cookie_id is None or tokens is None:
        return False
    cookies = HTTPConnection(scope).cookies
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    return token is not None and token in tokens


def launch(demo, config: StudioConfig, css: str | None = None, prevent_thread_lock: bool = False):
    """Queue (bounded, one model task at a time) and serve `demo` with the guard in front."""
    data_dir = config.data_dir
    guard = Middleware(Guard, data_dir=data_dir, max_body=config.max_upload_bytes + BODY_SLACK, auth_on=config.auth_on)
    demo.queue(max_size=config.queue_size, default_concurrency_limit=1)
    return demo.launch(
        server_name=config.host,
        server_port=config.port,
        share=config.share,
        auth=LoginThrottle(dict(config.auth)).login if config.auth_on else None,
        auth_message="Reasoner Studio: log in to think, draw and give preferences.",
        max_file_size=config.max_upload_bytes,
        blocked_paths=[str(data_dir / name) for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "models")],
        app_kwargs={"middleware": [guard]},
        ssr_mode=False,
        css=css,
        show_error=False,
        quiet=True,
        prevent_thread_lock=prevent_thread_lock,
    )
