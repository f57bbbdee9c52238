"""The whole loop on a small real model: it plans, draws, sees its picture, revises, redraws."""

import json

import numpy as np
import pytest
import torch

from reasoner.backends.janus import JanusBackend
from reasoner.cli import main
from reasoner.errors import InvalidSettingError
from reasoner.pipeline import ReasonerPipeline
from reasoner.pngmeta import read_recipe
from reasoner.records import DrawSettings, Plan
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
        # the refined picture is drawn from the revision, under the plan's own reasoning, with a
        # fresh seed derived from the candidate's
        assert refined.seed == candidate.seed + 16 and refined.index == candidate.index
        assert turn.rounds[0][0].plan.text == "the sky is blue. Plan: blue circle @ middle-center"
        again = pipeline.draw(PROMPT, turn.rounds[0][0].plan, DrawSettings(n=1, seed=refined.seed, cfg_scale=2.0))
        assert torch.equal(refined.image_tokens, again[0].image_tokens)


def test_cli_reflect_writes_first_and_refined_images(taught_model_dir, tmp_path):
    assert (
        main(
            [
                "generate",
                "--prompt",
                PROMPT,
                "--model",
                str(taught_model_dir),
                "--n",
                "2",
                "--reflect",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["reflection"] == REFLECTION and row["reflections"] == [REFLECTION]
        assert row["first_plan"] == PLAN and row["plan"] == "the sky is blue. Plan: blue circle @ middle-center"
        assert row["seed"] == row["first_seed"] + 16
        assert row["image"].endswith("-refined.png") and row["first_image"] != row["image"]
        recipe = read_recipe(tmp_path / row["image"])
        assert recipe["plan"] == row["plan"] and recipe["reflection"] == REFLECTION and recipe["seed"] == row["seed"]


def test_reflection_rounds_look_again_at_each_redraw(taught_model_dir):
    """Round r reflects on round r-1's redraw and plan, redraws with a seed of its own, and the chain
    ends at a picture judged right or after `reflect_rounds` looks."""
    pipeline = ReasonerPipeline(JanusBackend.from_pretrained(taught_model_dir))
    settings = DrawSettings(n=2, seed=5, cfg_scale=2.0)
    turn = pipeline(PROMPT, settings, reflect=True, reflect_rounds=3)
    assert len(turn.rounds) == 2
    for k, (candidate, rounds) in enumerate(zip(turn.candidates, turn.rounds)):
        assert 1 <= len(rounds) <= 3
        assert all(r.redrawn is not None for r in rounds[:-1])  # only the last look may find it right
        plan, picture = turn.plan, candidate
        for number, step in enumerate(rounds, start=1):
            assert step.reflection.text == pipeline.reflect(PROMPT, plan, picture.image, picture.seed).text
            if step.redrawn is None:
                break
            assert step.redrawn.seed == candidate.seed + 16 * number and step.redrawn.index == candidate.index
            assert step.plan == pipeline.plan_to_redraw(plan, step.reflection)
            again = pipeline.draw(PROMPT, step.plan, DrawSettings(n=1, seed=step.redrawn.seed, cfg_scale=2.0))
            assert torch.equal(step.redrawn.image_tokens, again[0].image_tokens)
            plan, picture = step.plan, step.redrawn
        last_redraw = [r for r in rounds if r.redrawn is not None][-1]
        assert turn.refined[k] is last_redraw.redrawn and turn.reflections[k] is last_redraw.reflection
    # the taught model revises every picture drawn from its plan, so each candidate is looked at again
    assert all(len(rounds) >= 2 for rounds in turn.rounds)


def test_reflection_rounds_out_of_range_are_refused(taught_model_dir, tmp_path, capsys):
    pipeline = ReasonerPipeline(JanusBackend.from_pretrained(taught_model_dir))
    with pytest.raises(InvalidSettingError, match="reflect_rounds=5"):
        pipeline(PROMPT, DrawSettings(n=1), reflect=True, reflect_rounds=5)
    assert (
        main(
            [
                "generate",
                "--prompt",
                PROMPT,
                "--model",
                str(taught_model_dir),
                "--reflect",
                "--reflect-rounds",
                "0",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "reflect_rounds=0" in capsys.readouterr().err


def test_eval_reflection_rounds_are_the_pipelines(taught_model_dir):
    """The eval's rounds give each prompt the final picture the pipeline's rounds give it. One prompt
    a batch: the taught model's second look is off its lesson, where batching's rounding can
    change a greedy token (batched equals alone is test_eval's, on lessons it knows)."""
    from reasoner.batched import draw_pictures, write_plans
    from reasoner.eval import EvalSettings, reflect_and_redraw

    pipeline = ReasonerPipeline(JanusBackend.from_pretrained(taught_model_dir))
    prompts, seeds = [PROMPT] * 3, [0, 1, 2]
    plans = [pipeline.model_text(Plan(text)) for text in write_plans(pipeline.backend, prompts, seeds, 0.0)]
    pictures = draw_pictures(pipeline.backend, prompts, plans, seeds, 2.0, 1.0)
    final, reflections, revised, redraws = reflect_and_redraw(
        pipeline, prompts, plans, pictures, seeds, EvalSettings(cfg_scale=2.0, reflect_rounds=2, batch_size=1)
    )
    assert reflections == [REFLECTION] * 3 and all(plan.body == "blue circle @ middle-center" for plan in revised)
    for seed, picture, count in zip(seeds, final, redraws):
        turn = pipeline(PROMPT, DrawSettings(n=1, seed=seed, cfg_scale=2.0), reflect=True, reflect_rounds=2)
        assert count == len([r for r in turn.rounds[0] if r.redrawn is not None]) >= 1
        assert np.array_equal(np.asarray(picture), np.asarray(turn.refined[0].image))
