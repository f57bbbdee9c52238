"""The whole loop on a small real model: it plans, draws, sees its picture, revises, redraws."""

import json

import torch

from reasoner.backends.janus import JanusBackend
from reasoner.cli import main
from reasoner.pipeline import ReasonerPipeline
from reasoner.pngmeta import read_recipe
from reasoner.records import DrawSettings
from tests.teach import PLAN, PROMPT, REFLECTION


def test_think_draw_reflect_redraw(taught_model_dir):
    pipeline = ReasonerPipeline(JanusBackend.from_pretrained(taught_model_dir))
    settings = DrawSettings(n=2, seed=11, cfg_scale=2.0)
    turn = pipeline(PROMPT, settings, reflect=True)

    assert turn.plan.text == PLAN and turn.plan.body == "blue circle @ top-left"
    assert pipeline.plan_problem(turn.plan) is None
    for candidate, reflection, refined in zip(turn.candidates, turn.reflections, turn.refined):
        # the model looked at its own picture and wrote the revision it was taught
        assert reflection.text == REFLECTION
        assert reflection.revised_plan.body == "blue circle @ middle-center"
        # the refined picture is drawn from the revised plan with a fresh seed derived from the candidate's
        assert refined.seed == candidate.seed + 16 and refined.index == candidate.index
        again = pipeline.draw(PROMPT, reflection.revised_plan, DrawSettings(n=1, seed=refined.seed, cfg_scale=2.0))
        assert torch.equal(refined.image_tokens, again[0].image_tokens)


def test_cli_reflect_writes_first_and_refined_images(taught_model_dir, tmp_path):
    assert main(["generate", "--prompt", PROMPT, "--model", str(taught_model_dir), "--n", "2", "--reflect", "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["reflection"] == REFLECTION
        assert row["first_plan"] == PLAN and row["plan"] == "Plan: blue circle @ middle-center"
        assert row["seed"] == row["first_seed"] + 16
        assert row["image"].endswith("-refined.png") and row["first_image"] != row["image"]
        recipe = read_recipe(tmp_path / row["image"])
        assert recipe["plan"] == row["plan"] and recipe["reflection"] == REFLECTION and recipe["seed"] == row["seed"]
