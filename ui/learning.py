"""The studio's "Learn from my choices": `python -m finetune learn` as a background process.

One job at a time, started by `/learn` and watched by `/learn_status`. The job is a child process
of the server, not of a request: a closed page does not stop it, and the model keeps serving
draws while it trains (on the other cores). Its state lives in the data directory, so a studio
started again still knows a job it started before:

    DATA/learning/job.json        which job runs: adapter name, pid, log, when it started
    DATA/learning/NAME.log        the job's output (its last line tells why it failed)
    DATA/adapters/.NAME.learning  the job's work: status.json, run/metrics.jsonl (its progress)
    DATA/adapters/NAME            the adapter, once complete (renamed into place last)

A job that dies midway leaves no adapter: the studio serves what it served before and says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from reasoner.errors import ReasonerError

REPO = Path(__file__).resolve().parents[1]
PROVENANCE = "provenance.json"  # finetune/learn.py writes it last: an adapter with it is complete


class LearnError(ReasonerError):
    """A learn job cannot start (no preferences yet, one already running)."""


@dataclass(frozen=True)
class JobStatus:
    state: str  # "none", "running", "done" or "failed"
    line: str  # one line for the page and the API
    adapter: str | None = None  # the adapter's name, once done


def complete_adapters(adapters_dir: Path) -> list[str]:
    """Names of the finished adapters under `adapters_dir`, newest first."""
    if not adapters_dir.is_dir():
        return []
    done = [d for d in adapters_dir.iterdir() if not d.name.startswith(".") and (d / PROVENANCE).is_file()]
    return [d.name for d in sorted(done, key=lambda d: d.stat().st_mtime, reverse=True)]


def model_flags(model: str) -> list[str]:
    """finetune learn's flags for what the studio draws with: a base plus adapter catalog entry
    (`shapes-grpo`, or `--adapter`'s, which only this process's catalog holds) is its base
    directory and the adapter to continue (`base_and_adapter`)."""
    from reasoner.models.catalog import base_and_adapter

    base, adapter = base_and_adapter(model)
    return ["--model", base] + ([] if adapter is None else ["--adapter", str(adapter)])


def alive(pid: int) -> bool:
    """Whether `pid` is a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class LearnJobs:
    def __init__(
        self, data_dir: Path, model: str, minutes: float | None = None, settings: tuple[tuple[str, str], ...] = ()
    ):
        self.data_dir = Path(data_dir)
        self.model = model
        self.minutes = minutes  # None: finetune learn's own default budget
        self.settings = tuple(settings)  # more finetune learn settings, (name, value) (--learn-setting)
        self.adapters_dir = self.data_dir / "adapters"
        self.jobs_dir = self.data_dir / "learning"
        self.job_file = self.jobs_dir / "job.json"
        self._process: subprocess.Popen | None = None
        self.check_settings()

    def learn_flags(self, out: Path, minutes: float | None) -> list[str]:
        """The flags of `python -m finetune learn` for a job writing `out`."""
        flags = ["--data_dir", str(self.data_dir), "--out", str(out), *model_flags(self.model), "--progress", "false"]
        for name, value in self.settings:
            flags += [f"--{name}", value]
        budget = minutes if minutes is not None else self.minutes
        if budget is not None:
            flags += ["--minutes", str(budget)]
        return flags

    def check_settings(self) -> None:
        """Parse a job's settings now, so a bad --learn-setting stops the studio at start, not a job later."""
        if not self.settings:
            return
        from finetune.config import ConfigError
        from finetune.learn import parse_learn_config

        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            parse_learn_config(self.learn_flags(self.adapters_dir / ".settings-check", None))
        except (ConfigError, SystemExit) as error:
            raise LearnError(f"--learn-setting: {error}") from None

    def job(self) -> dict | None:
        try:
            return json.loads(self.job_file.read_text())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        job = self.job()
        if job is None:
            return False
        if self._process is not None and self._process.pid == job["pid"]:
            return self._process.poll() is None
        return alive(job["pid"])

    def exited_after_done(self, seconds: float = 60.0) -> bool:
        """Whether the job, whose adapter is written (the last thing it does), has exited, waiting
        up to `seconds` for it: the status says done as soon as the adapter is in place, while the
        process may take a few seconds more to exit on a loaded machine."""
        if (self.adapters_dir / self.job()["name"] / PROVENANCE).is_file():
            deadline = time.monotonic() + seconds
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.1)
        return not self.running()

    def start(self, minutes: float | None = None) -> JobStatus:
        """Start a job on the store's preferences; LearnError (one line) if it cannot start."""
        from finetune.preferences import read_preferences

        if self.running() and not self.exited_after_done():
            raise LearnError(f"a learn job is already running ({self.job()['name']}); wait for it to finish")
        read_preferences(self.data_dir)  # too few preferences: its one-line error, before any process
        name = "learn-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        log = self.jobs_dir / f"{name}.log"
        command = [sys.executable, "-m", "finetune", "learn", *self.learn_flags(self.adapters_dir / name, minutes)]
        with open(log, "wb") as output:
            self._process = subprocess.Popen(
                command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        job = {"name": name, "pid": self._process.pid, "log": str(log), "started": started}
        temporary = self.job_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(job))
        temporary.replace(self.job_file)
        return self.status()

    def status(self) -> JobStatus:
        job = self.job()
        if job is None:
            return JobStatus("none", "No learn job yet: pick the best of some draws, then Learn from my choices.")
        name = job["name"]
        adapter = self.adapters_dir / name
        if (adapter / PROVENANCE).is_file():
            figures = json.loads((adapter / PROVENANCE).read_text()).get("figures", {})
            accuracy = figures.get("reward_model", {}).get("heldout_accuracy")
            told = f"reward model held-out accuracy {accuracy:.2f}, " if isinstance(accuracy, float) else ""
            steps, minutes = figures.get("grpo_steps"), figures.get("minutes")
            return JobStatus("done", f"Done: adapter {name} ({told}{steps} GRPO steps in {minutes} min).", name)
        if self.running():
            return JobStatus("running", f"Learning ({name}): {self.progress(name)}")
        return JobStatus("failed", f"Failed: {name} stopped before its adapter was written ({self.reason(job)}).")

    def progress(self, name: str) -> str:
        work = self.adapters_dir / f".{name}.learning"
        try:
            status = json.loads((work / "status.json").read_text())
        except (OSError, ValueError):
            return "starting…"
        if status.get("phase") != "grpo":
            return f"{status.get('phase', 'starting')}…"
        try:
            lines = (work / "run" / "metrics.jsonl").read_text().splitlines()
        except OSError:
            lines = []
        if not lines:
            return f"GRPO: first step… (budget {status.get('minutes')} min)"
        last = json.loads(lines[-1])
        return f"GRPO step {last.get('step')}, reward {last.get('reward', 0):.3f} (budget {status.get('minutes')} min)"

    @staticmethod
    def reason(job: dict) -> str:
        """The job's last words: its `error:` line, else the last line of its log."""
        try:
            lines = [line.strip() for line in Path(job["log"]).read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "its log is gone"
        errors = [line for line in lines if line.startswith("error:")]
        if errors:
            return errors[-1].removeprefix("error:").strip()
        return lines[-1][-200:] if lines else "it printed nothing; it was killed"
