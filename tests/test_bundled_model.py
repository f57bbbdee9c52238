"""The shipped shapes model loads, writes valid plans, and its pictures satisfy held-out prompts."""

import random

import pytest

from reasoner.batched import draw_pictures, write_plans, write_reflections
from reasoner.pipeline import ReasonerPipeline, revised_plan_in
from reasoner.records import DrawSettings
from reasoner.shapes import detect, format_plan, make_suite, random_scene, reading_in, scene_reading, score_image

pytestmark = pytest.mark.slow  # the shipped model on the CPU: minutes for the file


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
    # think passes all 16 here (0.988 on 1,200 held-out prompts); drawing the same prompts at the same seeds
    # with no plan passes 13 (0.76 on 1,200), so a bar of 15 tells thinking from not thinking
    assert sum(passed) >= 15, list(zip(prompts, plans, passed))


def test_reasoning_is_resolved_in_the_plan(bundled):
    plan = bundled.think("a square the color of the sky")
    assert "blue" in plan.body and "square" in plan.body
    assert bundled.info.world == "shapes" and bundled.backend.template.default_cfg_scale == 1.0


def test_a_persons_plan_is_followed_whatever_the_prompt(bundled):
    """Random valid plans (1-4 objects), typed as bare clauses under unrelated prompts."""
    rng = random.Random(3)
    suite = make_suite("dev", 12, seed=5)
    scenes = [random_scene(rng, 1, 4) for _ in suite]
    drawn = [
        bundled.draw(p.prompt, format_plan(scene), DrawSettings(n=1, seed=k, cfg_scale=1.0))[0]
        for k, (p, scene) in enumerate(zip(suite, scenes))
    ]
    followed = [detect(c.image).scene == scene for c, scene in zip(drawn, scenes)]
    # measured 0.98 on 48; read as bare clauses (no reasoning) the same model followed 0.27
    assert sum(followed) >= 10, followed


def test_reflection_reads_the_picture_and_passes_right_ones(bundled):
    """The reflection adapter reads the model's own pictures out ("I see <scene>") and lets right ones be."""
    suite = make_suite("dev", 16, seed=1)
    prompts, seeds = [p.prompt for p in suite], list(range(16))
    plans = write_plans(bundled.backend, prompts, seeds, temperature=0.0)
    pictures = draw_pictures(bundled.backend, prompts, plans, seeds, cfg_scale=1.0, temperature=1.0)
    reflections = write_reflections(bundled.backend, prompts, plans, pictures, seeds, temperature=0.0)
    read = [reading_in(text) == scene_reading(detect(picture).scene) for text, picture in zip(reflections, pictures)]
    # measured 0.978 on 400 held-out prompts; without its adapter the model reads none of 16
    assert sum(read) >= 13, list(zip(reflections, read))
    passed = [score_image(picture, p).passed for picture, p in zip(pictures, suite)]
    left_alone = [revised_plan_in(text) is None for text, ok in zip(reflections, passed) if ok]
    assert sum(left_alone) >= len(left_alone) - 3, reflections
