"""The studio's edge: every argument checked as a client sent it (one line naming it, no coercion),
plan and reflection lengths bounded, ids acted on only by their owner, and a plan is the model's
only when it is that turn's model text for that prompt."""

from __future__ import annotations

import json
import struct
import zlib

import gradio as gr
import pytest
from PIL import Image

from reasoner.errors import PlanError
from reasoner.records import MAX_PLAN_CHARS, DrawSettings, Plan
from reasoner.store import png_bytes
from tests.teach import PROMPT
from tests.test_ui_handlers import ENGINE, SETTINGS, draw, last, make_studio

PLAN = "red circle @ top-left"
LONG_PLAN = "Let me think. " * 2571 + "Plan: red circle @ top-left"  # 36,021 characters


class Request:  # what gr.Request carries when auth is on
    def __init__(self, username):
        self.username, self.session_hash = username, "s"


@pytest.fixture
def studio(tiny_model_dir, tmp_path):
    return make_studio(tiny_model_dir, tmp_path / "data")


def one_line_error(call, match: str) -> str:
    with pytest.raises(gr.Error, match=match) as caught:
        call()
    message = caught.value.message
    assert "\n" not in message and "upstream" not in message
    return message


# -- 1. lengths -------------------------------------------------------------------------------------


def test_a_36000_character_plan_is_refused_at_once_everywhere(studio, tiny_pipeline):
    assert len(LONG_PLAN) > 36_000
    message = one_line_error(
        lambda: draw(studio, LONG_PLAN), f"the plan is {len(LONG_PLAN)} characters long; the limit is {MAX_PLAN_CHARS}"
    )
    assert message.startswith("the plan")
    with pytest.raises(PlanError, match="the limit is"):
        tiny_pipeline.draw(PROMPT, LONG_PLAN, DrawSettings(n=1))
    with pytest.raises(PlanError, match="the limit is"):
        Plan(LONG_PLAN, source="model")  # not even as the model's own
    assert "the limit is" in studio.check_plan(LONG_PLAN)
    _, (_, draw_id, *_) = draw(studio, PLAN, n=1)
    _, _, reflection_id, _ = studio.reflect(draw_id, 1, 0, ENGINE, request=None)
    one_line_error(
        lambda: last(studio.redraw(reflection_id, "too small", LONG_PLAN, **SETTINGS, request=None)), "the limit is"
    )
    assert studio.store.counts()["draws"] == 1


def test_the_page_limits_the_plan_and_reflection_boxes(studio):
    from reasoner.records import MAX_REFLECTION_CHARS
    from ui.layout import build_page

    demo = build_page(studio, None, "")
    limits = {block.elem_id: block.max_length for block in demo.blocks.values() if isinstance(block, gr.Textbox)}
    assert (limits["plan"], limits["revised"], limits["reflection"]) == (
        MAX_PLAN_CHARS,
        MAX_PLAN_CHARS,
        MAX_REFLECTION_CHARS,
    )


# -- 4. arguments as sent -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prompt": 123}, "prompt must be text, not int"),
        ({"prompt": None}, "prompt must be text, not nothing"),
        ({"prompt": "a red \ud800 circle"}, "prompt holds a character that is not valid text"),
        ({"plan": "red circle \udc00 @ top-left"}, "plan holds a character that is not valid text"),
        ({"plan": 5}, "plan must be text, not int"),
        ({"n": None}, "candidates is empty"),
        ({"n": "4"}, "candidates='4' is not a number"),
        ({"n": True}, "candidates must be a whole number"),
        ({"seed": 1.5}, r"seed=1.5 is not a whole number"),
        ({"seed": "7"}, "seed='7' is not a number"),
        ({"seed": 2**70}, "seed=1180591620717411303424 is out of range"),
        ({"seed": float("nan")}, "seed=nan is not a whole number"),
        ({"random_seed": "yes"}, "random seed must be true or false"),
        ({"cfg_scale": "abc"}, "CFG scale='abc' is not a number"),
        ({"cfg_scale": float("inf")}, "CFG scale=inf is not a finite number"),
        ({"temperature": [1]}, "image temperature must be a number, not a list"),
        ({"turn_id": 1.5}, r"turn id=1.5 is not a whole number"),
        ({"turn_id": 2**70}, "turn a number of about 21 digits does not exist"),
        ({"turn_id": "1"}, "turn id='1' is not a number"),
    ],
)
def test_a_wrong_argument_is_one_line_naming_it(studio, overrides, message):
    studio.think(PROMPT, 0, False, 0, ENGINE, request=None)  # turn 1 exists: "1" must not become it
    prompt, plan, turn_id = (
        overrides.pop(key, default) for key, default in (("prompt", PROMPT), ("plan", PLAN), ("turn_id", None))
    )
    one_line_error(lambda: draw(studio, plan, turn_id, prompt=prompt, **overrides), message)
    assert studio.store.counts()["draws"] == 0


def test_ids_and_numbers_of_the_other_steps(studio):
    _, (_, draw_id, *_) = draw(studio, PLAN, n=2)
    one_line_error(
        lambda: studio.prefer(2**70, "best", 1, "", request=None), "draw a number of about 21 digits does not exist"
    )
    one_line_error(lambda: studio.prefer(float(draw_id) + 0.5, "best", 1, "", request=None), "not a whole number")
    one_line_error(lambda: studio.prefer(draw_id, "best", "1", "", request=None), "best candidate='1' is not a number")
    one_line_error(lambda: studio.prefer(draw_id, 3, 1, "", request=None), "verdict must be text")
    one_line_error(
        lambda: studio.prefer(draw_id, "ranking", 1, "1, 99999999999999999999", request=None), "is not a number"
    )
    one_line_error(lambda: studio.reflect(draw_id, 1.5, 0, ENGINE, request=None), "candidate=1.5 is not a whole number")
    one_line_error(
        lambda: studio.reflect(draw_id, 1, "cold", ENGINE, request=None), "plan temperature='cold' is not a number"
    )
    one_line_error(lambda: studio.think(PROMPT, 0, False, 0, 7, request=None), "engine 7 is not one of")
    one_line_error(lambda: last(studio.redraw(-3, "x", PLAN, **SETTINGS, request=None)), "reflection -3 does not exist")
    one_line_error(lambda: studio.reopen("1", request=None), "turn id='1' is not a number")
    assert studio.store.counts()["preferences"] == 0 and studio.store.counts()["reflections"] == 0


def png_with_header(path, width: int, height: int) -> None:
    """A PNG whose header claims `width` x `height` (and holds no pixels at all)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def recipe_png(path, **recipe) -> str:
    path.write_bytes(png_bytes(Image.new("RGB", (8, 8)), {"prompt": PROMPT, "plan": PLAN, "seed": 1, **recipe}))
    return str(path)


def test_a_decompression_bomb_is_named_and_not_opened(studio, tmp_path):
    bomb = tmp_path / "bomb.png"
    png_with_header(bomb, 100_000, 100_000)
    one_line_error(lambda: studio.open_recipe(str(bomb)), "decompression bomb")


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"seed": float("nan")}, "the recipe's seed=nan is not a whole number"),
        ({"seed": "abc"}, "the recipe's seed='abc' is not a number"),
        ({"seed": 10**40}, "the recipe's seed=a number of about 40 digits is out of range"),
        ({"cfg_scale": 1000}, r"the recipe's cfg_scale=1000.0 is out of range 1.0..20.0"),
        ({"temperature": -5}, r"the recipe's temperature=-5.0 is out of range 0.0..5.0"),
        ({"plan_temperature": "warm"}, "the recipe's plan_temperature='warm' is not a number"),
        ({"prompt": 5}, "the recipe's prompt must be text"),
        ({"plan": ["x"]}, "the recipe's plan must be text"),
    ],
)
def test_a_recipe_png_with_bad_values_is_refused_not_put_in_the_sliders(studio, tmp_path, recipe, message):
    path = recipe_png(tmp_path / "made.png", **recipe)
    assert json.loads(json.dumps(recipe, allow_nan=True)) is not None
    one_line_error(lambda: studio.open_recipe(path), message)


def test_a_good_recipe_png_fills_the_form(studio, tmp_path):
    path = recipe_png(tmp_path / "made.png", seed=12, cfg_scale=3, temperature=0.5, plan_temperature=0)
    assert studio.open_recipe(path)[:6] == (PROMPT, PLAN, 12, 3.0, 0.5, 0.0)


# -- 3. owners ----------------------------------------------------------------------------------------


def test_with_auth_another_persons_ids_read_as_missing(tiny_model_dir, tmp_path):
    studio = make_studio(tiny_model_dir, tmp_path / "data", auth=(("ann", "pw"), ("bob", "pw")))
    ann, bob = Request("ann"), Request("bob")
    _, _, turn_id, _ = studio.think(PROMPT, 0, False, 0, ENGINE, request=ann)
    _, (_, draw_id, *_) = last(studio.draw(PROMPT, PLAN, turn_id, **SETTINGS, request=ann))
    _, _, reflection_id, _ = studio.reflect(draw_id, 1, 0, ENGINE, request=ann)
    before = studio.store.counts()

    def same_as_missing(call_with_id, real_id: int, what: str) -> None:
        foreign = one_line_error(lambda: call_with_id(real_id), "does not exist")
        missing = one_line_error(lambda: call_with_id(real_id + 1000), "does not exist")
        assert foreign == f"{what} {real_id} does not exist" and missing == f"{what} {real_id + 1000} does not exist"

    same_as_missing(lambda i: studio.prefer(i, "best", 1, "", request=bob), draw_id, "draw")
    same_as_missing(lambda i: studio.reflect(i, 1, 0, ENGINE, request=bob), draw_id, "draw")
    same_as_missing(
        lambda i: last(studio.redraw(i, "text", PLAN, **SETTINGS, request=bob)), reflection_id, "reflection"
    )
    same_as_missing(lambda i: last(studio.draw(PROMPT, PLAN, i, **SETTINGS, request=bob)), turn_id, "turn")
    same_as_missing(lambda i: studio.reopen(i, request=bob), turn_id, "turn")
    assert studio.store.counts() == before
    # ann herself goes on as before
    assert "best is #1" in studio.prefer(draw_id, "best", 1, "", request=ann)
    _, (_, _, same_turn, *_) = last(studio.redraw(reflection_id, "text", PLAN, **SETTINGS, request=ann))
    assert same_turn == turn_id


# -- 5. whose plan ------------------------------------------------------------------------------------


def test_the_models_plan_under_another_prompt_is_a_persons_and_is_checked(studio):
    plan, status, turn_id, _ = studio.think("a red circle", 0, False, 0, ENGINE, request=None)
    assert status.startswith("**The model's plan is not valid")  # a random model writes no valid plan
    assert studio.models.current().plan_problem(plan).startswith("clause 1")
    one_line_error(lambda: draw(studio, plan, turn_id, prompt="two yellow triangles"), "clause 1")
    assert studio.store.counts()["draws"] == 0
    _, (_, draw_id, *_) = draw(studio, plan, turn_id, prompt="a red circle")  # its own prompt: drawn as written
    assert studio.store.draw_info(draw_id).plan_source == "model"
