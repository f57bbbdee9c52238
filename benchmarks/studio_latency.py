"""How long the studio's steps take as a script (or a person) feels them: wall time of each API call.

    python benchmarks/studio_latency.py          # starts `python app.py` twice on a temporary data directory
    python benchmarks/studio_latency.py --url http://127.0.0.1:7860/ --engine fast
    python benchmarks/studio_latency.py --model shapes --starts 1 --repeats 3 --json /tmp/latency.json

Each repeat is one turn driven through gradio_client: think; draw n = 1, 4 and 16 from the model's
plan; draw with varied plans (n = 4, each candidate its own plan); reflect on the first of the 4; redraw
from the reflection (n = 4). The report gives each step's median and worst over the repeats, after one
turn not counted (first calls import and allocate). Pictures are not downloaded (download_files=False).

Started here (no --url), the studio runs the bundled model on a temporary data directory, started
`--starts` times on the same directory (default 2): each start's time to the page, to the model, and
until the fast engine's compiled-ahead steps are loaded, and whether it compiled anything (the second
should not: the packages are in the data directory's cache/fast). The steps are timed on the last
start, once its compiled steps are loaded. Writes JSON (benchmarks/studio_latency_cpu.json) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a red circle left of a blue square"
STEPS = ("think", "draw 1", "draw 4", "draw 16", "draw 4 varied plans", "reflect", "redraw 4")
TARGETS_S = {"think": 0.3, "draw 4": 1.0, "draw 16": 2.5}  # issue 19, the bundled model on the 2-core CPU
PREPARING = "fast engine: loading its compiled-ahead steps"  # reasoner/engine/fast_aot.py's log lines
READY = "fast engine: compiled-ahead steps ready"
COMPILING = "fast engine: compiling the"


# -- one turn, timed --------------------------------------------------------------------------------


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def one_turn(client, prompt: str, engine: str, seed: int, cfg_scale: float) -> dict[str, float]:
    """Wall seconds of each step of one turn, in STEPS order."""
    times = {}
    common = dict(random_seed=False, cfg_scale=cfg_scale, temperature=1, plan_temperature=0, engine=engine)
    times["think"], (plan, _, turn_id, _) = timed(
        lambda: client.predict(prompt, seed, False, 0, engine, api_name="/think")
    )
    draw_id = None
    for n in (1, 4, 16):
        seconds, drawn = timed(
            lambda n=n: client.predict(
                prompt=prompt, plan=plan, turn_id=turn_id, n=n, seed=seed, vary_plans=False, **common, api_name="/draw"
            )
        )
        times[f"draw {n}"] = seconds
        if n == 4:
            draw_id = drawn[1]
    times["draw 4 varied plans"], _ = timed(
        lambda: client.predict(
            prompt=prompt, plan=plan, turn_id=turn_id, n=4, seed=seed, vary_plans=True, **common, api_name="/draw"
        )
    )
    times["reflect"], (reflection, revised, reflection_id, _) = timed(
        lambda: client.predict(draw_id=draw_id, candidate=1, plan_temperature=0, engine=engine, api_name="/reflect")
    )
    times["redraw 4"], _ = timed(
        lambda: client.predict(
            reflection_id=reflection_id,
            reflection_text=reflection,
            revised_plan=revised,
            n=4,
            seed=seed,
            **common,
            api_name="/redraw",
        )
    )
    return times


def measure(client, repeats: int, engine: str = "fast", prompt: str = PROMPT, cfg_scale: float = 1) -> dict:
    """Median and worst wall time of each step over `repeats` turns (after one turn not counted)."""
    one_turn(client, prompt, engine, 0, cfg_scale)
    runs: dict[str, list[float]] = {step: [] for step in STEPS}
    for repeat in range(repeats):
        for step, seconds in one_turn(client, prompt, engine, 100 + repeat, cfg_scale).items():
            runs[step].append(round(seconds, 4))
    return {
        step: {"median_s": round(statistics.median(r), 4), "worst_s": max(r), "runs": r} for step, r in runs.items()
    }


# -- a studio of our own ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Studio:
    """`python app.py` in a child process, its output in a log file."""

    def __init__(self, model: str, data_dir: Path, engine: str, timeout_s: float):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = data_dir.parent / f"studio-{self.port}.log"
        command = [sys.executable, str(REPO / "app.py"), "--model", model, "--data-dir", str(data_dir)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--engine", engine]
        env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
        self.started = time.perf_counter()
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.page_s = self.wait(self.page_up, timeout_s, "the page")
        self.model_s = self.wait(lambda: "the studio is ready" in self.output(), timeout_s, "the model")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def page_up(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def wait(self, ready, timeout_s: float, what: str) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the studio exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            if ready():
                return round(time.perf_counter() - self.started, 2)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{what} was not ready within {timeout_s:.0f} s:\n{self.output()[-3000:]}")

    def compiled_steps_ready(self) -> bool:
        """Every engine that loads compiled-ahead steps has said they are ready (or failed)."""
        text = self.output()
        preparing = text.count(PREPARING)
        settled = text.count(READY) + len(re.findall(r"fast engine: no compiled (text|image) step", text)) // 2
        return preparing > 0 and settled >= preparing

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(20)


# -- report -----------------------------------------------------------------------------------------


def table(steps: dict) -> str:
    lines = ["| step | median s | worst s | target |", "| --- | --- | --- | --- |"]
    for step, row in steps.items():
        target = TARGETS_S.get(step)
        verdict = "" if target is None else f"<= {target} s: {'met' if row['median_s'] <= target else 'not met'}"
        lines.append(f"| {step} | {row['median_s']:.3f} | {row['worst_s']:.3f} | {verdict} |")
    return "\n".join(lines)


def environment() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running studio (else one is started here)")
    parser.add_argument("--model", default="shapes", help="the model a studio started here runs")
    parser.add_argument("--engine", default="fast", help="the engine every step asks for")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--cfg", type=float, default=1, help="guidance scale (1: the bundled model's own)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--starts", type=int, default=2, help="starts of a studio started here, on one data dir")
    parser.add_argument(
        "--data-dir", type=Path, help="data directory of a studio started here (default: a temporary one)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for a start / compiled steps")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "studio_latency_cpu.json")
    args = parser.parse_args(argv)
    from gradio_client import Client

    report = {"engine": args.engine, "repeats": args.repeats, "prompt": args.prompt, "environment": environment()}
    studio = None
    with tempfile.TemporaryDirectory(prefix="studio-latency-") as scratch:
        try:
            if args.url:
                url = args.url
                report["url"] = url
            else:
                data_dir = args.data_dir or Path(scratch) / "data"
                report["model"], report["starts"] = args.model, []
                for start in range(args.starts):
                    if studio is not None:
                        studio.stop()
                    studio = Studio(args.model, data_dir, args.engine, args.timeout)
                    compiled_s = None
                    if PREPARING in studio.output():  # logged while the model loads, when the engine has them
                        compiled_s = studio.wait(studio.compiled_steps_ready, args.timeout, "the compiled steps")
                    output = studio.output()
                    report["starts"].append(
                        {
                            "start": start + 1,
                            "page_s": studio.page_s,
                            "model_ready_s": studio.model_s,
                            "compiled_steps_ready_s": compiled_s,
                            "compiled_anything": COMPILING in output,
                            "log": [line for line in output.splitlines() if line.startswith("fast engine:")],
                        }
                    )
                    print(f"start {start + 1}: {json.dumps(report['starts'][-1], indent=1)}", file=sys.stderr)
                url = studio.url
            client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
            report["steps"] = measure(client, args.repeats, args.engine, args.prompt, args.cfg)
        finally:
            if studio is not None:
                studio.stop()
    report["targets_s"] = TARGETS_S
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report["steps"]))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
