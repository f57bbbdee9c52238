"""The world interface (reasoner/worlds.py): what the pipeline asks a model's world, whatever it is."""

import copy
import dataclasses

import pytest

from reasoner.backends.janus_template import WORLDS
from reasoner.errors import PlanError
from reasoner.pipeline import ReasonerPipeline
from reasoner.records import Plan
from reasoner.shapes import render_plan
from reasoner.shapes.plan import split_plan_text as shapes_split_plan_text
from reasoner.worlds import WORLD_NAMES, OpenWorld, split_plan_text, world_named

BARE = "red circle @ top-left; blue square @ middle-center"


def test_the_open_world_accepts_free_text_reads_it_as_written_and_scores_nothing():
    world = world_named("open")
    assert isinstance(world, OpenWorld)
    text = "A calm lake at dawn, two herons in the reeds. Plan: herons left, sun low on the right"
    assert world.check_plan(text) is None
    assert world.check_plan(BARE + "; green blob @ nowhere") is None  # no grammar to break
    assert world.model_text(text) == text
    assert world.score_picture("a red circle", render_plan("red circle @ top-left")) is None


def test_the_shapes_world_refuses_an_invalid_plan_with_its_message():
    world = world_named("shapes")
    assert world.check_plan(BARE) is None
    assert world.check_plan("the sky is blue. Plan: blue circle @ middle-center") is None
    assert "squre" in world.check_plan("blue squre @ top-left")
    assert "top-left" in world.check_plan("red circle @ top-left; blue square @ top-left")  # one cell, two objects


def test_the_shapes_world_gives_a_bare_plan_its_reasoning_and_keeps_a_reasoned_one():
    world = world_named("shapes")
    implied = "needed: 1 red circle at top-left and 1 blue square at middle-center, nothing else. Plan: " + BARE
    assert world.model_text(BARE) == implied
    assert world.model_text("Plan: " + BARE) == implied
    reasoned = "the sky is blue. Plan: blue circle @ middle-center"
    assert world.model_text(reasoned) == reasoned
    assert world.model_text("xx yy") == "xx yy"  # a plan that does not parse is read as written


def test_the_shapes_world_scores_a_picture_against_its_prompt():
    world = world_named("shapes")
    picture = render_plan("blue circle @ middle-center")
    assert world.score_picture("a circle the color of the sky", picture) == 1.0
    assert world.score_picture("two red squares", picture) == 0.0
    assert world.score_picture("a dragon over the hills", picture) is None  # words the world does not know


def test_an_open_world_model_draws_any_plan_a_person_writes(tiny_backend):
    backend = copy.copy(tiny_backend)
    backend.info = dataclasses.replace(tiny_backend.info, world="open")
    pipeline = ReasonerPipeline(backend)
    assert pipeline.world.name == "open"
    free = Plan("a blue circle, large, in the middle", source="person")
    assert pipeline.plan_problem(free) is None and pipeline.model_text(free) == free.text
    with pytest.raises(PlanError, match="empty"):
        pipeline.check_plan("Plan:   ")


def test_a_shapes_model_checks_plans_through_its_world(tiny_pipeline):
    assert tiny_pipeline.world.name == "shapes"
    assert tiny_pipeline.plan_problem("blue squre @ top-left") == world_named("shapes").check_plan(
        "blue squre @ top-left"
    )


def test_every_world_a_model_directory_may_name_has_an_object():
    assert WORLDS == WORLD_NAMES  # janus_template.py checks reasoner.json against its own list
    with pytest.raises(KeyError, match="painting"):
        world_named("painting")


@pytest.mark.parametrize(
    "text", ["", "  red circle @ top-left ", "I think. Plan: a", "plan: x Plan : y", "planet: z", "PLAN:"]
)
def test_the_plan_marker_rule_is_the_same_for_every_world(text):
    """shapes/plan.py keeps its own copy of the rule; the two must not drift."""
    assert split_plan_text(text) == shapes_split_plan_text(text)
