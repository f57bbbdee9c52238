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
from gradio_client.exceptions import AppError

from reasoner.store import DB_NAME
from tests.e2e.conftest import MAX_UPLOAD_MB, USERS
from tests.teach import PLAN, PROMPT
from ui.server import PUBLIC_EXACT, PUBLIC_PREFIXES

SETTINGS = {"random_seed": False, "cfg_scale": 5, "temperature": 1, "plan_temperature": 0, "engine": "hf"}


def raw(
    server, method: str, path: str, body: bytes | None = None, headers: dict | None = None, chunked: bool = False
) -> tuple[int, bytes]:
    """One request sent as written (no client-side normalisation of `..` or `//`); `chunked` sends
    the body in 64 kB chunks with no Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        if chunked:
            parts = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
            conn.request(
                method,
                path,
                body=parts,
                headers={**(headers or {}), "Transfer-Encoding": "chunked"},
                encode_chunked=True,
            )
        else:
            conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except (BrokenPipeError, ConnectionResetError):  # the server answered and closed while we still sent
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


def multipart(size: int, files: int = 1) -> tuple[bytes, dict]:
    boundary = "studio-test-boundary"
    part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"\x89PNG"
        + b"0" * (size - 4)
        + b"\r\n"
    )
    return part * files + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


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
    # without a length up front (chunked), the bytes are counted as they arrive: several files,
    # each under Gradio's own per-file limit, are refused together
    before = len(list((live_studio.data_dir / "cache").rglob("big.png")))
    many, headers = multipart(limit * 9 // 10, files=4)
    status, body = raw(live_studio, "POST", "/gradio_api/upload", many, headers, chunked=True)
    assert status == 413 and b"Request too large" in body
    assert len(list((live_studio.data_dir / "cache").rglob("big.png"))) == before
    status, _ = raw(live_studio, "POST", "/gradio_api/upload", big, headers, chunked=True)
    assert status == 413  # one file over the limit: Gradio's own check or the count, either says 413
    status, _ = raw(live_studio, "POST", "/gradio_api/upload", small, headers, chunked=True)
    assert status == 200  # a chunked upload under the limit still goes through


def test_a_chunked_body_over_the_limit_is_refused_on_every_route(live_studio):
    limit = MAX_UPLOAD_MB * 1024 * 1024
    big_json = b'{"data": ["' + b"x" * (2 * limit) + b'"], "fn_index": 0, "session_hash": "s"}'
    for path in ("/gradio_api/queue/join", "/gradio_api/call/draw", "/gradio_api/run/think"):
        status, body = raw(live_studio, "POST", path, big_json, {"Content-Type": "application/json"}, chunked=True)
        assert status == 413, (path, status, body[:200])
    status, _ = raw(live_studio, "GET", "/gradio_api/info")
    assert status == 200  # the server goes on


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
        status, body = raw(
            auth_studio, method, path, b"{}" if method == "POST" else None, {"Content-Type": "application/json"}
        )
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


def test_with_auth_failed_logins_are_throttled(auth_studio):
    """Last in this file: it locks bob out on this client for a while."""
    user, password = USERS[1]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    statuses = [
        raw(auth_studio, "POST", "/login", f"username={user}&password=wrong-{k}".encode(), form)[0] for k in range(6)
    ]
    assert statuses[:3] == [400, 400, 400] and set(statuses[3:]) == {429}
    status, body = raw(auth_studio, "POST", "/login", f"username={user}&password={password}".encode(), form)
    assert status == 429 and b"Too many failed logins" in body  # locked: even the right password waits
    status, _ = raw(auth_studio, "POST", "/login", f"username={USERS[0][0]}&password={USERS[0][1]}".encode(), form)
    assert status == 200  # another user is not locked out


@pytest.mark.parametrize(
    ("api_name", "args", "message"),
    [
        ("/think", (123, 0, False, 0, "hf"), "prompt must be text, not int"),
        ("/think", (PROMPT, "7", False, 0, "hf"), "seed='7' is not a number"),
        ("/draw", (PROMPT, "", None, None, 0, False, 5, 1, 0, "hf"), "candidates is empty"),
        ("/draw", (PROMPT, "", 1.5, 1, 0, False, 5, 1, 0, "hf"), "turn id=1.5 is not a whole number"),
        ("/draw", (PROMPT, "", None, 1, 1.5, False, 5, 1, 0, "hf"), "seed=1.5 is not a whole number"),
        ("/prefer", (2**70, "best", 1, ""), "does not exist"),
        ("/reflect", ("1", 1, 0, "hf"), "draw id='1' is not a number"),
    ],
)
def test_wrong_types_through_the_api_get_one_line_naming_the_argument(live_studio, api_name, args, message):
    with pytest.raises(AppError) as caught:
        live_studio.client().predict(*args, api_name=api_name)
    said = str(caught.value)
    assert message in said and "upstream" not in said, said
