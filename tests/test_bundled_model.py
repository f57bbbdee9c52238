"""The shipped shapes model loads, writes valid plans, and its pictures satisfy held-out prompts."""

import pytest

from reasoner.batched import draw_pictures, write_plans
from reasoner.pipeline import ReasonerPipeline
from reasoner.shapes import make_suite, score_image


@pytest.fixture(scope="module")
def bundled():
    return ReasonerPipeline.from_pretrained("shapes")


def test_think_then_draw_passes_a_fixed_held_out_sample(bundled):
    suite = make_suite("dev", 16, seed=0)  # two prompts of each category, reasoning included
    prompts, seeds = [p.prompt for p in suite], list(range(16))
    plans = write_plans(bundled.backend, prompts, seeds, temperature=0.0)
    assert [bundled.plan_problem(plan) for plan in plans] == [None] * 16
    pictures = draw_pictures(bundled.backend, prompts, plans, seeds, cfg_scale=1.0, temperature=1.0)
    passed = [score_image(picture, p).passed for picture, p in zip(pictures, suite)]
    # measured 0.99 on 96 held-out prompts; a random or broken model passes about none
    assert sum(passed) >= 13, list(zip(prompts, plans, passed))


def test_reasoning_is_resolved_in_the_plan(bundled):
    plan = bundled.think("a square the color of the sky")
    assert "blue" in plan.body and "square" in plan.body
    assert bundled.info.world == "shapes" and bundled.backend.template.default_cfg_scale == 1.0
