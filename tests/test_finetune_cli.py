"""`python -m finetune grpo` and `python -m finetune merge` as a user runs them, on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel

from finetune.__main__ import main
from reasoner.backends.janus import JanusBackend

REDNESS = "tests.finetune_rewards:redness"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("cli") / "run"
    flags = ["--model", str(tiny_model_dir), "--out", str(out), "--steps", "2", "--prompts_per_step", "2"]
    flags += ["--group_size", "2", "--rewards", REDNESS, "--reward_weights", "1", "--learning_rate", "0.05"]
    flags += ["--lora_rank", "4", "--no_progress", "--rollout", "both"]
    assert main(["grpo", *flags]) == 0
    return out


def test_a_run_from_the_command_line_writes_what_it_says(trained_run):
    lines = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]
    assert {"exact/think", "exact/direct"} <= set(lines[0]) or {f"reward/{REDNESS}"} <= set(lines[0])
    saved = json.loads((trained_run / "config.json").read_text())
    assert saved["group_size"] == 2 and saved["rewards"] == [REDNESS]
    assert (trained_run / "adapter" / "adapter_config.json").is_file()


def test_bad_flags_exit_2_with_the_field_named(tmp_path, capsys):
    assert main(["grpo", "--out", str(tmp_path), "--group_size", "1"]) == 2
    assert "group_size=1" in capsys.readouterr().err
    assert main(["grpo", "--out", str(tmp_path), "--model", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_merge_bakes_the_adapter_into_a_model_that_draws_as_the_adapted_one(trained_run, tiny_model_dir, tmp_path):
    merged_dir = tmp_path / "merged"
    assert main(["merge", str(trained_run / "adapter"), "--out", str(merged_dir), "--base", str(tiny_model_dir)]) == 0
    merged = JanusBackend.from_pretrained(merged_dir, engine="hf")
    adapted = JanusBackend.from_pretrained(tiny_model_dir, engine="hf")
    PeftModel.from_pretrained(adapted.model, trained_run / "adapter")  # LoRA layers injected in place
    base = JanusBackend.from_pretrained(tiny_model_dir, engine="hf")
    context = merged.draw_context_ids("three red circles", None)
    drawn = [b.generate_image_tokens(context, [0, 1], 1.0, 0.0, 0) for b in (merged, adapted, base)]
    assert torch.equal(drawn[0], drawn[1])
    assert not torch.equal(drawn[0], drawn[2])  # the adapter changed what is drawn
    assert main(["merge", str(trained_run / "adapter"), "--out", str(merged_dir)]) == 2  # not over a model
