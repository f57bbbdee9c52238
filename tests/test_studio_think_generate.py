"""The studio on a think-then-generate model (issue 20.1): think, edit, draw and pick run through the
same handlers as on Janus; the page says the model does not reflect, and Reflect says so in one line."""

from __future__ import annotations

import pytest

from reasoner.models.random_think_generate import save_random_think_generate
from tests.test_ui_handlers import SETTINGS, last, make_studio

PROMPT = "a red circle in the top-left corner"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_think_generate(tmp_path_factory.mktemp("think-generate"), seed=0)


def test_the_loop_runs_and_reflect_is_refused_in_one_line(model_dir, tmp_path):
    studio = make_studio(model_dir, tmp_path / "data")
    assert "Reflection:** this model does not look at its pictures" in studio.models.info_markdown()
    plan, _, turn_id, seed = studio.think(PROMPT, 4, False, 0, SETTINGS["engine"], request=None)
    assert seed == 4 and isinstance(plan, str)
    edited = "Plan: red circle @ top-left"  # the person's plan is drawn as written
    _, (gallery, draw_id, turn, *_rest) = last(studio.draw(PROMPT, edited, turn_id, **SETTINGS, request=None))
    assert turn == turn_id and len(gallery) == SETTINGS["n"]
    assert "#" in studio.prefer(draw_id, "best", 2, "", request=None)
    with studio.store.read_connection() as conn:
        (stored_plan,) = conn.execute(
            "SELECT p.text FROM draws d JOIN plans p ON p.id = d.plan_id WHERE d.id = ?", (draw_id,)
        ).fetchone()
    assert stored_plan == edited
    with pytest.raises(Exception, match="does not reflect|no reflection|cannot reflect") as caught:
        studio.reflect(draw_id, 1, 0, SETTINGS["engine"], request=None)
    assert "\n" not in str(caught.value)
