"""benchmarks/studio_latency.py's measuring function, one repeat against a live studio on the taught
tiny model: every step it times answers, and the report has each step's median and worst."""

from __future__ import annotations

import importlib.util

from gradio_client import Client

from tests.e2e.server import REPO, start
from tests.teach import PROMPT


def load_script():
    spec = importlib.util.spec_from_file_location("studio_latency", REPO / "benchmarks" / "studio_latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_latency_script_times_every_step(taught_model_dir, tmp_path):
    script = load_script()
    server = start(taught_model_dir, tmp_path / "data", "--engine", "fast")
    try:
        client = Client(server.url, verbose=False, analytics_enabled=False, download_files=False)
        report = script.measure(client, repeats=1, engine="fast", prompt=PROMPT, cfg_scale=5)
    finally:
        server.stop()
    assert list(report) == list(script.STEPS)
    for row in report.values():
        assert len(row["runs"]) == 1 and 0 < row["median_s"] == row["worst_s"]
    assert "| draw 16 |" in script.table(report)
