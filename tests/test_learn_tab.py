"""The studio's Learn tab (issue 18.4): the job's status, the model that draws, base against tuned."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from tests.test_adapter_loading import write_adapter
from tests.test_ui_handlers import SETTINGS, last, make_studio
from ui.learn_handlers import BASE, Learning
from ui.learning import PROVENANCE, LearnJobs

PROMPT = "a red circle left of a blue square"


@pytest.fixture
def learning(tiny_model_dir, tiny_backend, tmp_path):
    studio = make_studio(tiny_model_dir, tmp_path / "data")
    jobs = LearnJobs(tmp_path / "data", str(tiny_model_dir))
    adapter = jobs.adapters_dir / "learn-test"
    write_adapter(tiny_backend.model, adapter)
    (adapter / PROVENANCE).write_text(json.dumps({"figures": {"grpo_steps": 3, "minutes": 0.5}}))
    return Learning(studio, jobs)


def test_a_finished_adapter_is_a_model_choice_and_draws_are_stored_with_its_hash(learning):
    assert learning.model_choices() == [BASE, "learn-test"]
    info, line = learning.use_model("learn-test")
    assert "learn-test@" in info and "learn-test@" in line
    _, (_, draw_id, *_rest) = last(learning.studio.draw(PROMPT, "", None, **SETTINGS, request=None))
    with learning.studio.store.read_connection() as conn:
        model = conn.execute("SELECT model FROM draws WHERE id = ?", (draw_id,)).fetchone()[0]
    digest = model.rsplit("@", 1)[1]
    assert model.startswith("tiny + learn-test@") and len(digest) == 12
    learning.use_model(BASE)
    assert learning.studio.models.label == "tiny"
    with pytest.raises(Exception, match="adapter 'nope' does not exist"):
        learning.use_model("nope")


def test_compare_draws_base_and_tuned_with_the_same_seeds_and_keeps_the_pick(learning):
    base, tuned, comparison, status = learning.compare(PROMPT, "learn-test", 3, 7)
    assert len(base) == len(tuned) == 3 and "Which is better" in status
    assert [caption.split(" · ")[1] for _, caption in base] == ["seed 7", "seed 8", "seed 9"]
    assert [caption.split(" · ")[1] for _, caption in tuned] == ["seed 7", "seed 8", "seed 9"]
    assert "base" in learning.decide(comparison, "base")
    with learning.studio.store.read_connection() as conn:
        row = conn.execute(
            "SELECT c.winner, b.model, t.model FROM comparisons c JOIN draws b ON b.id = c.base_draw_id"
            " JOIN draws t ON t.id = c.tuned_draw_id WHERE c.id = ?",
            (comparison,),
        ).fetchone()
    assert row[0] == "base" and row[1] == "tiny" and row[2].startswith("tiny + learn-test@")
    with pytest.raises(Exception, match="winner 'both'"):
        learning.decide(comparison, "both")
    with pytest.raises(Exception, match="comparison 999 does not exist"):
        learning.decide(999, "tuned")
    with pytest.raises(Exception, match="choose a learnt adapter"):
        learning.compare(PROMPT, BASE, 3, 7)


def test_the_job_status_tells_none_failed_and_done(learning, tmp_path):
    jobs = learning.jobs
    assert learning.learn_status()[0].startswith("No learn job yet")
    with pytest.raises(Exception, match="preferences"):
        learning.learn(5)  # an empty store: one line, no process started
    assert not jobs.job_file.exists()
    # a job that died before writing its adapter: the studio says so and goes on
    jobs.jobs_dir.mkdir(parents=True)
    log = jobs.jobs_dir / "learn-dead.log"
    log.write_text("[learn] reward model...\nerror: the disk is full\n")
    jobs.job_file.write_text(json.dumps({"name": "learn-dead", "pid": 2**22 + 12345, "log": str(log), "started": "x"}))
    line = learning.learn_status()[0]
    assert line.startswith("Failed: learn-dead") and "the disk is full" in line and "goes on with tiny" in line
    # the finished one
    jobs.job_file.write_text(json.dumps({"name": "learn-test", "pid": 2**22 + 12345, "log": str(log), "started": "x"}))
    assert learning.learn_status()[0].startswith("Done: adapter learn-test (3 GRPO steps")
    with pytest.raises(Exception, match="minutes=0 is out of range"):
        learning.learn(0)


def test_one_job_at_a_time(learning, monkeypatch):
    jobs = learning.jobs
    jobs.jobs_dir.mkdir(parents=True)
    import subprocess

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        jobs.job_file.write_text(
            json.dumps({"name": "learn-busy", "pid": sleeper.pid, "log": "/nonexistent", "started": "x"})
        )
        assert learning.learn_status()[0].startswith("Learning (learn-busy)")
        with pytest.raises(Exception, match="already running"):
            learning.learn(5)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_on_a_base_plus_adapter_entry_learning_continues_its_adapter_and_draws_on_its_base(
    tiny_model_dir, tiny_backend, tmp_path
):
    """The studio's default is such an entry (shapes-grpo): the learn job is told the base and the
    adapter to continue, and the learnt adapter (which holds the continued one) goes on the base."""
    from reasoner.models.catalog import CATALOG, add_adapted
    from reasoner.store import Store
    from ui.config import StudioConfig
    from ui.handlers import Studio
    from ui.learning import model_flags
    from ui.models import ModelChoice, Models

    first = tmp_path / "grpo"
    write_adapter(tiny_backend.model, first, seed=1)
    name = add_adapted(str(tiny_model_dir), first)
    try:
        assert model_flags(name) == ["--model", str(tiny_model_dir), "--adapter", str(first)]
        assert model_flags(str(tiny_model_dir)) == ["--model", str(tiny_model_dir)]
        data = tmp_path / "data"
        config = StudioConfig(model=name, data_dir=data, engine=SETTINGS["engine"])
        studio = Studio(Models(ModelChoice(name, "tiny+grpo"), "cpu", SETTINGS["engine"]), Store.open(data), config)
        jobs = LearnJobs(data, name)
        learnt = jobs.adapters_dir / "learn-continued"
        merged = write_adapter(tiny_backend.model, learnt, seed=2)
        (learnt / PROVENANCE).write_text(json.dumps({"figures": {"grpo_steps": 1, "minutes": 0.1}}))
        learning = Learning(studio, jobs)
        learning.use_model("learn-continued")
        tuned = studio.models.pipeline(SETTINGS["engine"])
        # base + the learnt adapter alone: the same weights as the tiny model with it merged
        assert torch.equal(tuned.backend.model.lm_head.weight, merged.lm_head.weight)
        projection = "model.language_model.layers.0.self_attn.q_proj.weight"
        assert torch.allclose(tuned.backend.model.state_dict()[projection], merged.state_dict()[projection], atol=1e-6)
        _, (_, draw_id, *_rest) = last(studio.draw(PROMPT, "", None, **SETTINGS, request=None))
        with studio.store.read_connection() as conn:
            model = conn.execute("SELECT model FROM draws WHERE id = ?", (draw_id,)).fetchone()[0]
        assert model.startswith("tiny+grpo + learn-continued@")
    finally:
        CATALOG.pop(name, None)


def test_a_job_that_wrote_its_adapter_is_waited_for_not_called_running(tmp_path):
    """The status says done once the adapter is in place; the process may take a moment more to
    exit (seen on a loaded CI machine), and a new job must not be refused for it."""
    import subprocess

    jobs = LearnJobs(tmp_path / "data", "shapes")
    jobs.jobs_dir.mkdir(parents=True)

    def job(name: str, seconds: float) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
        jobs.job_file.write_text(json.dumps({"name": name, "pid": process.pid, "log": "", "started": ""}))
        jobs._process = process
        return process

    exiting = job("learn-done", 1.0)
    (jobs.adapters_dir / "learn-done").mkdir(parents=True)
    (jobs.adapters_dir / "learn-done" / PROVENANCE).write_text("{}")
    assert jobs.running() and jobs.exited_after_done() and exiting.poll() is not None
    busy = job("learn-busy", 30.0)  # no adapter yet: running, and not waited for
    try:
        assert jobs.running() and not jobs.exited_after_done(seconds=0.5)
        with pytest.raises(Exception, match="already running"):
            jobs.start(1)
    finally:
        busy.kill()
        busy.wait()
