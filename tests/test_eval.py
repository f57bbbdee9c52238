"""Batched generation (eval, training data) gives what the pipeline gives prompt by prompt."""

import numpy as np
import torch

from reasoner.batched import calls, draw_pictures, write_plans, write_reflections
from reasoner.cli import main
from reasoner.eval import EvalSettings, evaluate, table
from reasoner.records import DrawSettings, Plan
from reasoner.shapes import make_suite

PROMPTS = ["a red circle", "a blue square", "two circles the color of the sky", "a green triangle"]
# with its reasoning, so the pipeline draws it as written (a bare plan gets the reasoning it implies)
PLAN = "needed: 1 red circle at top-left, nothing else. Plan: red circle @ top-left"


def test_batched_plans_and_pictures_match_the_pipeline(tiny_pipeline):
    backend = tiny_pipeline.backend
    seeds = [3, 4, 5, 6]
    plans = write_plans(backend, PROMPTS, seeds, temperature=1.0)
    assert plans == [tiny_pipeline.think(p, seed=s, temperature=1.0).text for p, s in zip(PROMPTS, seeds)]
    pictures = draw_pictures(backend, PROMPTS, [PLAN] * 4, seeds, cfg_scale=3.0, temperature=1.0)
    alone = [tiny_pipeline.draw(p, PLAN, DrawSettings(n=1, seed=s, cfg_scale=3.0))[0] for p, s in zip(PROMPTS, seeds)]
    # the same tokens, decoded in the batches draw_pictures makes (the VQ decoder's rounding depends on its batch)
    for rows in calls(backend, [backend.draw_context_ids(p, PLAN) for p in PROMPTS], 64):
        expected = backend.decode_images(torch.stack([alone[i].image_tokens for i in rows]))
        assert all(np.array_equal(np.asarray(pictures[i]), np.asarray(e)) for i, e in zip(rows, expected))
    reflections = write_reflections(backend, PROMPTS, plans, pictures, seeds, temperature=0.0)
    assert reflections[0] == tiny_pipeline.reflect(PROMPTS[0], Plan(plans[0]), pictures[0], seed=seeds[0]).text


def test_eval_reports_every_mode(tiny_backend):
    record = evaluate(tiny_backend, ["direct", "think", "reflect", "follow"], EvalSettings(prompts=8, batch_size=8))
    results = record.to_json()  # the JSON file's layout: a typed record written as the old dict
    modes = results["modes"]
    assert record.reflect.fixed == modes["reflect"]["fixed"] and record.accuracy["think"] == modes["think"]
    assert set(modes) == {"direct", "think", "reflect", "follow"}
    for figures in modes.values():
        assert 0.0 <= figures["overall"] <= 1.0
    reflect = modes["reflect"]
    assert reflect["fixed"] <= reflect["think_failures"] <= 8
    assert reflect["revised_wrong"] <= min(reflect["revised"], reflect["think_failures"])
    # the verdict is right where the revisions of wrong pictures and the silences on right ones add up
    right = reflect["revised_wrong"] + (8 - reflect["think_failures"]) - (reflect["revised"] - reflect["revised_wrong"])
    assert reflect["verdict_accuracy"] == right / 8
    cases = reflect["failure_cases"]
    assert len(cases) == reflect["think_failures"] and sum(c["fixed"] for c in cases) == reflect["fixed"]
    assert all(c["prompt"] in [p.prompt for p in make_suite("dev", 8, 0)] for c in cases)
    assert "think" in table(record) and "fixed" in table(record)


def test_unknown_eval_mode_is_one_line(tiny_model_dir, capsys, tmp_path):
    assert (
        main(["eval", "--model", str(tiny_model_dir), "--modes", "think,dream", "--json", str(tmp_path / "e.json")])
        == 2
    )
    assert "dream" in capsys.readouterr().err


def test_a_reflections_reading_is_compared_with_the_scene_in_the_picture():
    from reasoner.eval import reading_exact
    from reasoner.shapes import render_plan

    picture = render_plan("red circle @ top-left; blue square @ middle-center")
    texts = [
        "I see red circle @ top-left; blue square @ middle-center; the image is right.",  # read right
        "I see red circle @ top-left; needed: 1 red circle, nothing else. Plan: red circle @ top-left",  # missed one
        "the square is wrong. Plan: red circle @ top-left",  # not in the reading form: not read exactly
    ]
    assert reading_exact(texts, [picture] * 3) == 1 / 3
    assert reading_exact(["the image is right."], [picture]) is None


def test_split_train_evaluates_on_train_prompts_and_dev_stays_held_out(tiny_backend):
    from reasoner.shapes.suites import prompt_split

    for split in ("train", "dev"):
        record = evaluate(tiny_backend, ["think"], EvalSettings(prompts=8, batch_size=8, split=split))
        assert {prompt_split(e["prompt"]) for e in record.examples} == {split}
        assert record.to_json()["settings"]["split"] == split
