"""`python -m finetune learn` (issue 18.3): reward model, then GRPO on it and the checker, one adapter."""

from __future__ import annotations

import json

import pytest

import finetune.trainer as trainer_module
from finetune.__main__ import main
from finetune.learn import LearnConfig, learn
from reasoner.pipeline import ReasonerPipeline
from reasoner.records import DrawSettings
from tests.test_reward_model import build_store, lowest


def tiny_learn(data_dir, out, model_dir, **overrides) -> LearnConfig:
    settings = dict(
        data_dir=str(data_dir),
        out=str(out),
        model=str(model_dir),
        minutes=5,
        steps=2,
        prompts_per_step=2,
        group_size=2,
        rm_epochs=2,
        lora_rank=4,
        progress=False,
    )
    return LearnConfig(**(settings | overrides))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("learn") / "data"
    build_store(data, lowest, draws=24, prompts=8)
    return data


def test_learn_writes_a_loadable_adapter_with_its_provenance(store_dir, tiny_model_dir, tmp_path):
    out = learn(tiny_learn(store_dir, tmp_path / "adapters" / "mine", tiny_model_dir))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["figures"]["grpo_steps"] == 2 and provenance["preferences"]["pairs"] > 0
    assert len(provenance["base_weights_sha256"]) == 64 and len(provenance["adapter_sha256"]) == 64
    assert "heldout_accuracy" in provenance["figures"]["reward_model"]
    assert json.loads((out / "status.json").read_text())["phase"] == "done"
    assert (out / "reward_model").is_dir() and not list(out.parent.glob(".*learning"))
    metrics = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"reward/preference", "reward/checker"} <= set(metrics[0])
    tuned = ReasonerPipeline.from_pretrained(str(tiny_model_dir), adapter=out)
    assert len(tuned.draw("a red circle", None, DrawSettings(n=2, vary_plans=True))) == 2


def test_a_learn_that_dies_midway_leaves_no_adapter(store_dir, tiny_model_dir, tmp_path, monkeypatch):
    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.GRPOTrainer, "train", killed)
    out = tmp_path / "adapters" / "mine"
    with pytest.raises(KeyboardInterrupt):
        learn(tiny_learn(store_dir, out, tiny_model_dir))
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--data_dir", "/no/such/dir", "--out", "x"], "data_dir"),
        (["--data_dir", "{data}", "--out", "{data}"], "already exists"),
        (["--data_dir", "{empty}", "--out", "{out}"], "preferences"),
        (["--data_dir", "{data}", "--out", "{out}", "--minutes", "0"], "minutes"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(flags, fragment, store_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    from reasoner.store import Store

    Store.open(empty)
    names = {"data": str(store_dir), "empty": str(empty), "out": str(tmp_path / "new")}
    assert main(["learn", *[f.format(**names) for f in flags]]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error:") and fragment in error[0]
