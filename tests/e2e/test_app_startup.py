"""Start-up (issue 15.12): `python app.py` serves its page before the model is in, the page saying
it is loading, and prints what it does. On the bundled `shapes` model when weights/shapes/ is there.

The figure to meet is 10 s from the process start to the first page on the 2-core development
machine (benchmarks/RESULTS.md, "Studio start-up", has the measured runs); the test allows twice
that, since the machine is shared and a loaded moment is no regression, while the 40 s the issue
met would fail it."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.e2e.server import REPO, free_port
from ui.models import LOADING_INFO, bundled_model_present

LIMIT_S = 20
STEPS = ("Starting Reasoner Studio", "Reasoner Studio running on", "Loading the model", "the studio is ready")


def test_the_page_is_served_while_the_model_loads(request, tmp_path):
    model = "shapes" if bundled_model_present() else str(request.getfixturevalue("taught_model_dir"))
    port = free_port()
    log = tmp_path / "studio.log"
    command = [sys.executable, str(REPO / "app.py"), "--model", model, "--data-dir", str(tmp_path / "data")]
    started = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen([*command, "--port", str(port)], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        page = first_page(f"http://127.0.0.1:{port}/", process, started + 120)
        served_s = time.monotonic() - started
        print(f"\nfirst page {served_s:.1f} s after the start")
        assert served_s <= LIMIT_S
        assert LOADING_INFO in page  # the page as first served says the model is loading
        deadline = time.monotonic() + 300
        while "the studio is ready" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        lines = log.read_text().splitlines()
        said = [next(i for i, line in enumerate(lines) if text in line) for text in STEPS]
        assert said == sorted(said), lines  # what it does, in the order it does it
    finally:
        process.terminate()
        process.wait(30)


def first_page(url: str, process: subprocess.Popen, deadline: float) -> str:
    while time.monotonic() < deadline:
        assert process.poll() is None, "the studio exited"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.05)
    raise AssertionError("no page within the deadline")
