"""A studio server in its own process, as `python app.py` runs it, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gradio_client import Client

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300  # a loaded 2-core machine may take a while to import torch and gradio


@dataclass
class Server:
    url: str
    port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen

    def client(self, **kwargs) -> Client:
        downloads = self.data_dir.parent / "client-downloads"
        return Client(self.url, verbose=False, analytics_enabled=False, download_files=str(downloads), **kwargs)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(model_dir: Path, data_dir: Path, *extra: str) -> Server:
    """Start `python app.py` on a free loopback port and wait until it answers."""
    port = free_port()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"server-{port}.log"
    command = [
        sys.executable,
        str(REPO / "app.py"),
        "--model",
        str(model_dir),
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--engine",
        "hf",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}/", port, data_dir, log, process)
    wait_until_up(server)
    return server


def wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the studio exited with {server.process.returncode}:\n{server.output()}")
        try:
            with urllib.request.urlopen(server.url, timeout=5) as response:
                # the page is served while the model loads in the background (issue 15.12): wait for it too
                if response.status == 200 and "the studio is ready" in server.output():
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"the studio did not answer within {START_TIMEOUT_S} s:\n{server.output()}")
