"""What a new user met (issue 15, items 7-12), on the real small models, without a server: the
plan box says when a valid plan misses the prompt, a reflection the checker disputes is flagged,
page errors go to the status line, and the model loads in the background."""

from __future__ import annotations

import threading

import gradio as gr
import pytest
from PIL import Image

from reasoner.engine import check_engine
from reasoner.shapes.render import render_plan
from reasoner.shapes.studio_checks import plan_misses_prompt, reflection_disputed
from reasoner.store import Store
from tests.teach import PLAN, PROMPT
from ui.config import StudioConfig
from ui.handlers import Studio
from ui.models import ModelChoice, Models, ModelStillLoading, bundled_model_present
from ui.page_errors import on_page

ENGINE = "hf"
FIRST_EXAMPLE = "a red circle left of a blue square"
SETTINGS = {
    "n": 1,
    "seed": 0,
    "random_seed": False,
    "cfg_scale": 5,
    "temperature": 1,
    "plan_temperature": 0,
    "engine": ENGINE,
}


def make_studio(source: str, data_dir, models: Models | None = None) -> Studio:
    config = StudioConfig(model=source, data_dir=data_dir, engine=ENGINE)
    return Studio(models or Models(ModelChoice(source, "test"), "cpu", ENGINE), Store.open(data_dir), config)


def test_the_checker_names_what_a_valid_plan_misses():
    assert "asks for 3" in plan_misses_prompt(
        "two red squares above a blue triangle", "red square @ top-left; blue triangle @ bottom-left"
    )
    assert "not left of" in plan_misses_prompt(FIRST_EXAMPLE, "blue square @ middle-left; red circle @ middle-right")
    assert plan_misses_prompt(FIRST_EXAMPLE, "x. Plan: red circle @ middle-left; blue square @ middle-right") is None
    assert plan_misses_prompt("a dragon", "red circle @ top-left") is None  # a prompt the checker cannot judge


def test_a_page_error_is_a_status_line_and_outputs_are_left_alone(taught_model_dir, tmp_path):
    studio = make_studio(str(taught_model_dir), tmp_path / "data")
    think = on_page(studio.think, 4)
    *outputs, status = think("", 0, False, 0, ENGINE, request=None)
    assert status.startswith("**Error:**") and "prompt" in status and all(o == gr.skip() for o in outputs)
    *_, status = think(PROMPT, -5, False, 0, ENGINE, request=None)  # refused by name, no traceback
    assert status.startswith("**Error:**") and "seed" in status
    *outputs, status = think(PROMPT, 7, False, 0, ENGINE, request=None)
    assert outputs[0] == PLAN and status == ""
    for n in (0, 17):
        *_, status = list(on_page(studio.draw, 6)(PROMPT, PLAN, None, **{**SETTINGS, "n": n}, request=None))[-1]
        assert f"n={n} is out of range" in status


@pytest.mark.skipif(not bundled_model_present(), reason="needs the bundled shapes model (weights/shapes/)")
def test_the_first_example_is_said_to_miss_its_prompt_and_a_disputed_reflection_is_flagged(tmp_path):
    """The bundled model plans the first example with the square on the left (seeds 0-4 at least);
    the studio says so, and flags a reflection that calls such a picture right."""
    studio = make_studio("shapes", tmp_path / "data")
    plan, status, turn_id, _ = studio.think(FIRST_EXAMPLE, 0, False, 0, ENGINE, request=None)
    assert "does not meet the prompt" in status and "not left of" in status
    draw_id = list(studio.draw(FIRST_EXAMPLE, plan, turn_id, **SETTINGS, request=None))[-1][1]
    reflection, _, _, note = studio.reflect(draw_id, 1, 0, ENGINE, request=None)
    picture = Image.open(studio.store.image_file(studio.store.draw_info(draw_id, None).candidates[0].path))
    assert ("checker disagrees" in note) == (reflection_disputed(FIRST_EXAMPLE, picture, reflection) is not None)


def test_a_reflection_that_calls_a_wrong_picture_right_is_disputed():
    wrong = render_plan("blue square @ middle-left; red circle @ middle-right")
    said_right = "I see blue square @ middle-left; red circle @ middle-right; the image is right."
    assert "not left of" in reflection_disputed(FIRST_EXAMPLE, wrong, said_right)
    assert reflection_disputed(FIRST_EXAMPLE, wrong, "I see ...; needed: ... Plan: red circle @ middle-left") is None
    right = render_plan("red circle @ middle-left; blue square @ middle-right")
    assert reflection_disputed(FIRST_EXAMPLE, right, said_right) is None


class GatedModels(Models):
    """Models whose background load waits for a gate, so the loading state can be seen."""

    gate = threading.Event()

    def _load(self):
        self.gate.wait(60)
        return super()._load()


def test_the_model_loads_in_the_background_and_steps_say_so_until_then(taught_model_dir, tmp_path):
    models = GatedModels(ModelChoice(str(taught_model_dir), "taught"), "cpu", ENGINE, background=True)
    models.load_in_background()
    studio = make_studio(str(taught_model_dir), tmp_path / "data", models)
    assert not models.loaded and "loading" in models.info_markdown()
    with pytest.raises(ModelStillLoading):
        models.pipeline()
    *_, status = on_page(studio.think, 4)(PROMPT, 0, False, 0, ENGINE, request=None)
    assert "still loading" in status
    assert "once the model has loaded" in studio.check_plan(PLAN, PROMPT)
    GatedModels.gate.set()
    models._loaded.wait(120)
    assert models.ready and studio.think(PROMPT, 7, False, 0, ENGINE, request=None)[0] == PLAN


def test_the_onnx_export_is_announced_and_cached_under_the_data_dir(tmp_path, monkeypatch):
    """Issue 15.13: choosing onnx on the page starts it at once, the status line saying that it
    exports meanwhile; starting with --engine onnx says so while loading; the export is kept with
    the studio's data (tests/e2e/test_app_browser.py runs a real export through the page)."""
    import os

    from app import main

    class Started(Models):
        """Records the engines started instead of exporting anything."""

        def __init__(self):
            super().__init__(ModelChoice("unused", "test"), "cpu", ENGINE, background=True)
            self.load_in_background()

        def _load_in_background(self):
            self.started = []
            self._loaded.set()

        def pipeline(self, engine=None):
            self.started.append(check_engine(engine))

    monkeypatch.delenv("REASONER_ONNX_CACHE", raising=False)
    assert main(["--model", str(tmp_path / "no-model"), "--data-dir", str(tmp_path / "data"), "--device", "cpu"]) == 2
    assert os.environ["REASONER_ONNX_CACHE"] == str(tmp_path / "data" / "cache" / "onnx")

    monkeypatch.setattr("ui.models.resolve_model", lambda source: (tmp_path, None))
    models = Started()
    studio = make_studio("unused", tmp_path / "data", models)
    lines = list(studio.start_engine("onnx"))
    assert "exporting the model to ONNX (first use" in lines[0] and lines[-1] == "The onnx engine is ready."
    assert list(studio.start_engine("fast")) == [""] and models.started == ["onnx", "fast"]
    assert list(studio.start_engine("tpu"))[-1].startswith("**Error:** engine 'tpu'")
    assert "exporting" not in models.loading_line()
    models.default_engine = "onnx"  # as `--engine onnx` starts it: the export is part of the load
    assert "exporting the model to ONNX" in models.loading_line()


def test_reopen_offers_the_turns_numbers_picks_from_1_and_an_empty_choice_asks_for_a_turn(taught_model_dir, tmp_path):
    """Issue 15.11: the turn to reopen is chosen from the turns (the newest first, never a 0 that
    does not exist); reopening says the verdict as the studio numbers it; with none chosen the
    History tab's status line asks for a turn."""
    from ui.layout import history_with_choices, reopening

    studio = make_studio(str(taught_model_dir), tmp_path / "data")
    shown = history_with_choices(studio.history)
    rows, turns = shown(None, request=None)
    assert rows == [] and turns.value is None
    reopen = on_page(reopening(studio.reopen), 10)
    *outputs, status = reopen(None, request=None)
    assert "pick a turn first" in status and all(o == gr.skip() for o in outputs)

    turn_ids = []
    for seed in (0, 1):
        *_, (_, draw_id, turn_id, *_) = studio.draw(
            PROMPT, PLAN, None, **{**SETTINGS, "n": 2, "seed": seed}, request=None
        )
        turn_ids.append(turn_id)
    studio.prefer(draw_id, "best", 2, "", request=None)
    rows, turns = shown(None, request=None)
    assert [r[0] for r in rows] == turn_ids[::-1] and turns.value == turn_ids[1]
    assert turns.choices[0] == (f"#{turn_ids[1]} · {PROMPT}", turn_ids[1])
    assert shown(turn_ids[0], request=None)[1].value == turn_ids[0]  # a chosen turn stays chosen on refresh
    *outputs, tabs, status = reopen(turn_ids[1], request=None)
    assert f"draw #{draw_id}: best is #2" in outputs[-1] and tabs.selected == "studio" and status == ""


def test_a_pick_made_while_a_draw_runs_is_kept(taught_model_dir, tmp_path):
    """Issue 15.9: on the page, best is reset to 1 as the draw starts, never when it ends; the draw
    is one batch (issue 19.3): a status line first, then all the pictures."""
    from ui.layout import keeping_a_pick

    studio = make_studio(str(taught_model_dir), tmp_path / "data")
    outputs = list(keeping_a_pick(studio.draw)(PROMPT, PLAN, None, **{**SETTINGS, "n": 4}, request=None))
    assert [o[5] for o in outputs] == [1, gr.skip()]
    assert outputs[0][0] is None and "Drawing 4 candidates in one batch" in outputs[0][4]
    assert len(outputs[-1][0]) == 4 and "Drew 4 candidates" in outputs[-1][4]
    assert list(studio.draw(PROMPT, PLAN, None, **{**SETTINGS, "n": 4}, request=None))[-1][5] == 1  # the API's answer
