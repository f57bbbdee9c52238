"""Learn from my choices through a live `python app.py` (issue 18.4): preferences made through the
API, `/learn` runs `python -m finetune learn` in the background, `/learn_status` follows it, the
adapter then loads and draws; a job killed midway leaves the studio drawing with what it drew with;
bad input (no preferences, too few, a job running) is a one-line message."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from gradio_client.exceptions import AppError

from tests.e2e.server import start
from tests.e2e.test_app_loop import SETTINGS, rows
from tests.teach import PROMPT

# a learn job small enough for the tiny model: the reward model for 2 epochs, 2 GRPO steps
LEARN = ["steps=2", "prompts_per_step=2", "group_size=2", "rm_epochs=2", "lora_rank=4", "train_split_prompts=2"]
OTHER_PROMPT = "a red square"
PLANS = ["Plan: blue circle @ top-left", "Plan: red square @ bottom-right", "Plan: green triangle @ middle-center"]


@pytest.fixture(scope="module")
def learn_studio(taught_model_dir, tmp_path_factory):
    server = start(
        taught_model_dir,
        tmp_path_factory.mktemp("learn") / "data",
        *[flag for setting in LEARN for flag in ("--learn-setting", setting)],
    )
    yield server
    server.stop()


def draw_and_pick(client, prompt: str, plan: str, n: int, seed: int) -> int:
    draw_id = client.predict(prompt, plan, None, n, seed, **SETTINGS, api_name="/draw")[1]
    client.predict(draw_id=draw_id, verdict="best", best=1, ranking="", api_name="/prefer")
    return draw_id


def wait_for_job(client, timeout_s: float = 240) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = client.predict(api_name="/learn_status")[0]
        if not line.startswith("Learning"):
            return line
        time.sleep(1)
    raise AssertionError(f"the learn job did not end within {timeout_s} s: {line}")


def test_learn_runs_in_the_background_and_its_adapter_draws(learn_studio):
    client = learn_studio.client()
    assert client.predict(api_name="/learn_status")[0].startswith("No learn job yet")
    with pytest.raises(AppError, match="holds no preferences yet") as caught:
        client.predict(5, api_name="/learn")
    assert "\n" not in str(caught.value)

    # one pick of two candidates: a single pair is too few, said in one line, and no job starts
    draw_and_pick(client, PROMPT, PLANS[0], 2, 1)
    with pytest.raises(AppError, match="gives 1 preference pair;") as caught:
        client.predict(5, api_name="/learn")
    assert "\n" not in str(caught.value) and not (learn_studio.data_dir / "learning" / "job.json").exists()

    for k in range(4):  # enough pairs, of two prompts (one is held out to measure the reward model)
        draw_and_pick(client, (PROMPT, OTHER_PROMPT)[k % 2], PLANS[k % 3], 4, 10 + 10 * k)
    started = client.predict(1, api_name="/learn")
    assert started.startswith("Learning (learn-"), started
    with pytest.raises(AppError, match="already running"):
        client.predict(1, api_name="/learn")
    line = wait_for_job(client)
    assert line.startswith("Done: adapter learn-") and "2 GRPO steps" in line, line
    name = line.split("adapter ", 1)[1].split(" ", 1)[0]
    provenance = json.loads((learn_studio.data_dir / "adapters" / name / "provenance.json").read_text())
    assert provenance["config"]["steps"] == 2 and provenance["preferences"]["pairs"] >= 10

    # the adapter is a model choice; it draws, and its draws are stored with its hash
    _, now = client.predict(name, api_name="/use_model")
    assert name in now
    draw_id = client.predict(PROMPT, PLANS[0], None, 2, 3, **SETTINGS, api_name="/draw")[1]
    (model,) = rows(learn_studio, "SELECT model FROM draws WHERE id = ?", draw_id)[0]
    assert f" + {name}@" in model, model

    # a second job, killed midway: the studio says it failed and draws on with the adapter
    started = client.predict(1, api_name="/learn")
    assert started.startswith("Learning (learn-"), started
    job = json.loads((learn_studio.data_dir / "learning" / "job.json").read_text())
    time.sleep(2)
    os.kill(job["pid"], signal.SIGKILL)
    line = wait_for_job(client, 30)
    assert line.startswith(f"Failed: {job['name']}") and f"goes on with {model}" in line, line
    assert not (learn_studio.data_dir / "adapters" / job["name"]).exists()
    draw_id = client.predict(PROMPT, PLANS[0], None, 2, 4, **SETTINGS, api_name="/draw")[1]
    assert rows(learn_studio, "SELECT model FROM draws WHERE id = ?", draw_id)[0][0] == model
