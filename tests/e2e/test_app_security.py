"""Security on a live server: only files inside the data directory are served (no traversal, no
absolute paths elsewhere, no symlinks out, no URLs); uploads over the limit are refused; with
--auth, no endpoint answers without a login."""

from __future__ import annotations

import http.client
import os
import re
from urllib.parse import quote

import gradio as gr
import pytest
from gradio.routes import App
from gradio_client import Client

from reasoner.store import DB_NAME
from tests.e2e.conftest import MAX_UPLOAD_MB, USERS
from tests.teach import PLAN, PROMPT
from ui.server import PUBLIC_EXACT, PUBLIC_PREFIXES

SETTINGS = {"random_seed": False, "cfg_scale": 5, "temperature": 1, "plan_temperature": 0, "engine": "hf"}


def raw(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    """One request sent as written (no client-side normalisation of `..` or `//`)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served_picture(live_studio):
    """A picture the studio really serves, and where it lies in the data directory."""
    gallery = live_studio.client().predict(PROMPT, "", None, 1, 0, **SETTINGS, api_name="/draw")[0]
    name = os.path.basename(gallery[0]["image"])
    [served] = list((live_studio.data_dir / "cache").rglob(name))
    return served


def test_a_picture_in_the_data_directory_is_served(live_studio, served_picture):
    status, body = raw(live_studio, "GET", "/gradio_api/file=" + quote(str(served_picture)))
    assert status == 200 and body == served_picture.read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/etc/../etc/passwd",
        "%2Fetc%2Fpasswd",
        "../../../../../../../../etc/passwd",
        "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "app.py",  # relative to the server's working directory: the repository
        "http://127.0.0.1:1/",
        "//example.org/x.png",
        "file:///etc/passwd",
    ],
)
def test_files_outside_the_data_directory_are_refused(live_studio, path):
    for route in ("/gradio_api/file=", "/gradio_api/file/"):
        status, body = raw(live_studio, "GET", route + path)
        assert status in (403, 404), (route + path, status, body[:200])
        assert b"root:" not in body and b"def main" not in body


def test_traversal_out_of_the_cache_is_refused(live_studio, served_picture):
    escape = str(served_picture.parent) + "/../../../../../../../../etc/passwd"
    assert raw(live_studio, "GET", "/gradio_api/file=" + escape)[0] == 403


def test_the_database_and_the_model_are_not_served(live_studio, served_picture):
    for path in (live_studio.data_dir / DB_NAME, str(served_picture.parent) + "/../../" + DB_NAME):
        status, body = raw(live_studio, "GET", f"/gradio_api/file={path}")
        assert status == 403 and b"SQLite" not in body


def test_symlinks_out_of_the_data_directory_are_refused(live_studio, served_picture):
    links = {
        "passwd.png": "/etc/passwd",
        "repo.png": os.path.abspath("app.py"),
        "db.png": str(live_studio.data_dir / DB_NAME),  # inside the data dir, but not a served file
    }
    for name, target in links.items():
        link = served_picture.parent / name
        link.symlink_to(target)
        try:
            status, body = raw(live_studio, "GET", f"/gradio_api/file={link}")
            assert status == 403, (name, status)
            assert b"root:" not in body and b"SQLite" not in body
        finally:
            link.unlink()


def test_the_proxy_route_is_refused(live_studio):
    assert raw(live_studio, "GET", "/gradio_api/proxy=http://127.0.0.1:1/")[0] == 403


def multipart(size: int) -> tuple[bytes, dict]:
    boundary = "studio-test-boundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode() + b"\x89PNG" + b"0" * (size - 4) + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_uploads_over_the_limit_are_refused(live_studio):
    limit = MAX_UPLOAD_MB * 1024 * 1024
    small, headers = multipart(100_000)
    status, body = raw(live_studio, "POST", "/gradio_api/upload", small, headers)
    assert status == 200, body[:200]
    uploaded = re.findall(r'"([^"]+big\.png)"', body.decode())
    assert uploaded and all(p.startswith(str(live_studio.data_dir)) for p in uploaded)
    big, headers = multipart(limit + 1)
    status, _ = raw(live_studio, "POST", "/gradio_api/upload", big, headers)
    assert status == 413
    # without a length up front (chunked), Gradio's own limit stops it while it streams
    status, _ = raw(live_studio, "POST", "/gradio_api/upload", iter([big]), {**headers, "Transfer-Encoding": "chunked"})
    assert status in (413, 400)


def every_route() -> list[tuple[str, str]]:
    """(method, path) for every route a Gradio app of this version has, path parameters filled in."""
    with gr.Blocks() as demo:
        gr.Textbox().submit(lambda text: text, gr.Textbox(), gr.Textbox(), api_name="echo")
    routes = []

    def walk(members, prefix: str = "") -> None:
        for route in members:
            if hasattr(route, "original_router"):  # an included router (FastAPI's wrapper)
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif hasattr(route, "routes"):  # a mounted router
                walk(route.routes, prefix + getattr(route, "path", ""))
            path = re.sub(r"\{[^}:]+(:path)?\}", "x", prefix + (getattr(route, "path", "") or ""))
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD" and path:
                    routes.append((method, path))

    walk(App.create_app(demo).routes)
    return sorted(set(routes))


def test_with_auth_no_endpoint_answers_without_a_login(auth_studio):
    routes = every_route()
    assert len(routes) > 40 and ("POST", "/gradio_api/queue/join") in routes
    for method, path in routes:
        if path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES):
            continue
        status, body = raw(auth_studio, method, path, b"{}" if method == "POST" else None, {"Content-Type": "application/json"})
        assert status == 401, (method, path, status, body[:200])
    for path in ("/gradio_api/info", "/config", "/gradio_api/file=/etc/passwd", "/gradio_api/call/think"):
        assert raw(auth_studio, "GET", path)[0] == 401
    # the login page itself shows no component and no API
    status, body = raw(auth_studio, "GET", "/")
    assert status == 200 and b"api_name" not in body and b"Think" not in body  # the page asks /config, which says 401


def test_with_auth_a_login_runs_the_loop_and_records_the_user(auth_studio):
    with pytest.raises(Exception):  # noqa: B017 - a wrong password is refused at login
        Client(auth_studio.url, auth=("ann", "wrong"), verbose=False, analytics_enabled=False)
    client = auth_studio.client(auth=USERS[0])
    plan, _, turn_id, _ = client.predict(PROMPT, 0, False, 0, "hf", api_name="/think")
    assert plan == PLAN
    import sqlite3

    conn = sqlite3.connect(auth_studio.data_dir / DB_NAME)
    assert conn.execute("SELECT who FROM turns WHERE id = ?", (turn_id,)).fetchone() == ("ann",)
    conn.close()
