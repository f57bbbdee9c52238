"""Varied candidates (issue 18.1): each candidate thinks its own plan and draws from it, in one batch."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch

from reasoner.backends.janus import JanusBackend
from reasoner.errors import InvalidSettingError
from reasoner.pipeline import ReasonerPipeline
from reasoner.records import VARIED_PLAN_TEMPERATURE, DrawSettings, Plan
from tests.test_cli import generate, read_results

PROMPT = "a red circle left of a blue square"


@pytest.fixture(scope="module", params=["hf", "fast"])
def pipeline(request, tiny_model_dir):
    return ReasonerPipeline(JanusBackend.from_pretrained(tiny_model_dir, name="tiny", engine=request.param))


def test_each_candidate_reproduces_alone_from_its_seed(pipeline):
    settings = DrawSettings(n=4, seed=30, cfg_scale=3.0, vary_plans=True)
    assert settings.plan_temperature == VARIED_PLAN_TEMPERATURE  # greedy plans would all be one plan
    candidates = pipeline.draw(PROMPT, None, settings)
    assert [c.seed for c in candidates] == [30, 31, 32, 33]
    assert len({c.plan.text for c in candidates}) > 1  # the random model's sampled plans differ
    for candidate in candidates:
        plan = pipeline.think(PROMPT, candidate.seed, settings.plan_temperature)
        assert candidate.plan == plan and plan.source == "model"
        alone = pipeline.draw(PROMPT, plan, DrawSettings(n=1, seed=candidate.seed, cfg_scale=3.0))[0]
        assert torch.equal(candidate.image_tokens, alone.image_tokens)


def test_a_persons_plan_is_not_silently_replaced(pipeline):
    settings = DrawSettings(n=2, vary_plans=True)
    with pytest.raises(InvalidSettingError, match="vary_plans"):
        pipeline.draw(PROMPT, Plan("Plan: red circle @ middle-left", "person"), settings)
    with pytest.raises(InvalidSettingError, match="vary_plans"):
        pipeline(PROMPT, settings, think=False)
    # the model's own plan is not drawn: the candidates think their own
    model_plan = pipeline.think(PROMPT)
    drawn = pipeline.draw(PROMPT, model_plan, settings)
    assert [c.plan for c in drawn] == [pipeline.think(PROMPT, s, settings.plan_temperature) for s in (0, 1)]


def test_a_turn_reflects_on_each_candidates_own_plan(tiny_pipeline):
    turn = tiny_pipeline(PROMPT, DrawSettings(n=2, seed=5, vary_plans=True), reflect=True)
    assert turn.plan is None and all(c.plan is not None for c in turn.candidates)
    for candidate, rounds in zip(turn.candidates, turn.rounds):
        expected = tiny_pipeline.reflect(PROMPT, candidate.plan, candidate.image, candidate.seed, 1.0)
        assert rounds[0].reflection.text == expected.text


def test_the_bundled_model_gives_different_right_layouts():
    """Why the switch exists: one plan fixes a shapes picture, sampled plans give a choice."""
    bundled = ReasonerPipeline.from_pretrained("shapes", engine="fast")
    candidates = bundled.draw(PROMPT, None, DrawSettings(n=8, seed=0, vary_plans=True))
    plans = [c.plan.text for c in candidates]
    assert len(set(plans)) >= 3
    assert sum(bundled.plan_problem(p) is None for p in plans) >= 6


def test_generate_vary_plans_writes_each_candidates_plan(tiny_model_dir, tmp_path):
    out = tmp_path / "varied"
    assert (
        generate("--model", str(tiny_model_dir), "--prompt", PROMPT, "--n", "3", "--vary-plans", "--out", str(out)) == 0
    )
    rows = read_results(out)
    pipeline = ReasonerPipeline.from_pretrained(str(tiny_model_dir))
    assert [r["plan"] for r in rows] == [pipeline.think(PROMPT, s, VARIED_PLAN_TEMPERATURE).text for s in (0, 1, 2)]


def test_the_store_keeps_each_candidates_plan_and_reflects_on_it(tiny_pipeline, tmp_path):
    from reasoner.store import Actor, DrawRequest, NewCandidate, Store, export_dataset, png_bytes

    store, actor = Store.open(tmp_path / "data"), Actor("anon", "tiny", "hf")
    settings = DrawSettings(n=3, seed=0, vary_plans=True)
    drawn = tiny_pipeline.draw(PROMPT, None, settings)
    thought = store.think(actor, PROMPT, tiny_pipeline.think(PROMPT).text)
    candidates = [NewCandidate(c.seed, png_bytes(c.image, {"seed": c.seed}), c.plan.text) for c in drawn]
    ref = store.draw(actor, DrawRequest(PROMPT, None, settings.__dict__, candidates, turn_id=thought.turn_id))
    info = store.draw_info(ref.draw_id)
    assert info.plan is None and [c.plan for c in info.candidates] == [c.plan.text for c in drawn]
    assert {c.plan_source for c in info.candidates} == {"model"}
    reflected = store.reflect(actor, ref.draw_id, 2, "the circle is too small. Plan: red circle @ middle-left", None)
    assert store.reflection_info(reflected.reflection_id).drawn_plan == drawn[2].plan.text
    store.prefer(actor, ref.draw_id, "pick", [1])
    export_dataset(store, tmp_path / "export")
    rows = [json.loads(line) for line in (tmp_path / "export/pairs/metadata.jsonl").read_text().splitlines()]
    assert {(r["chosen_plan"], r["rejected_plan"]) for r in rows} == {
        (drawn[1].plan.text, drawn[0].plan.text),
        (drawn[1].plan.text, drawn[2].plan.text),
    }


def test_a_store_of_the_first_schema_opens_and_keeps_its_rows(tiny_pipeline, tmp_path):
    from reasoner.store import Actor, DrawRequest, NewCandidate, Store, png_bytes
    from reasoner.store.schema import SCHEMA, SCHEMA_VERSION

    data = tmp_path / "data"
    data.mkdir()
    old = sqlite3.connect(data / "studio.sqlite3")
    old.executescript(
        SCHEMA.replace("    plan_id INTEGER REFERENCES plans(id),                  -- a varied", "    -- a varied")
    )
    old.execute("PRAGMA user_version=1")
    old.execute("INSERT INTO prompts (text, created_at) VALUES ('x', 'now')")
    old.commit()
    old.close()
    store = Store.open(data)
    with store.read_connection() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert "plan_id" in {row[1] for row in conn.execute("PRAGMA table_info(candidates)")}
    assert store.counts()["prompts"] == 1
    drawn = tiny_pipeline.draw(PROMPT, None, DrawSettings(n=1, vary_plans=True))
    candidate = NewCandidate(0, png_bytes(drawn[0].image, {}), drawn[0].plan.text)
    ref = store.draw(Actor("a", "tiny", "hf"), DrawRequest(PROMPT, None, {}, [candidate]))
    assert store.draw_info(ref.draw_id).candidates[0].plan == drawn[0].plan.text


def test_the_studio_draws_varied_candidates_and_reflects_on_the_picked_ones_plan(tiny_model_dir, tmp_path):
    from tests.test_ui_handlers import SETTINGS, last, make_studio

    studio = make_studio(tiny_model_dir, tmp_path / "data")
    plan, _, turn_id, _ = studio.think(PROMPT, 0, False, 0, None, request=None)
    heard = []
    outputs, (gallery, draw_id, *_rest) = last(
        studio.draw(
            PROMPT, plan, turn_id, **{**SETTINGS, "n": 3}, vary_plans=True, request=None, progress=heard_steps(heard)
        )
    )
    assert "each from a plan of its own" in outputs[0][4]
    candidates = studio.store.draw_info(draw_id).candidates
    pipeline = studio.models.pipeline(None)
    own = [pipeline.think(PROMPT, SETTINGS["seed"] + k, VARIED_PLAN_TEMPERATURE).text for k in range(3)]
    assert [c.plan for c in candidates] == own
    assert [caption for _, caption in gallery] == [
        f"#{k + 1} · seed {3 + k} · {Plan(p).body}" for k, p in enumerate(own)
    ]
    # the bar follows the image tokens, at most 21 updates a call (hf runs one call per plan length)
    assert heard[-1] == (81, 81) and 2 <= len(heard) <= 21 * 3
    _, revised, reflection_id, _ = studio.reflect(draw_id, 2, 0, None, request=None)
    assert studio.store.reflection_info(reflection_id).drawn_plan == own[1]

    # a plan the person edited is drawn as written, whatever the switch says
    _, (_, edited_draw, *_rest) = last(
        studio.draw(PROMPT, "Plan: red circle @ middle-left", turn_id, **SETTINGS, vary_plans=True, request=None)
    )
    info = studio.store.draw_info(edited_draw)
    assert info.plan == "Plan: red circle @ middle-left" and {c.plan for c in info.candidates} == {info.plan}


def test_a_redraw_from_the_unchanged_plan_takes_fresh_seeds(tiny_model_dir, tmp_path):
    from tests.test_ui_handlers import SETTINGS, last, make_studio

    studio = make_studio(tiny_model_dir, tmp_path / "data")
    person_plan = "Plan: red circle @ middle-left"
    _, (_, draw_id, *_rest) = last(studio.draw(PROMPT, person_plan, None, **SETTINGS, request=None))
    reflection, _, reflection_id, _ = studio.reflect(draw_id, 1, 0, None, request=None)
    _, (_, redraw_id, _, seed, *_rest) = last(
        studio.redraw(reflection_id, reflection, person_plan, **SETTINGS, request=None)
    )
    assert seed == SETTINGS["seed"] + 16
    first, again = studio.store.draw_info(draw_id), studio.store.draw_info(redraw_id)
    assert [c.seed for c in again.candidates] == [s + 16 for s in (c.seed for c in first.candidates)]
    assert {c.image_hash for c in again.candidates}.isdisjoint(c.image_hash for c in first.candidates)


def heard_steps(heard):
    def progress(value, desc=None, unit=None):
        if isinstance(value, tuple):
            heard.append(value)

    return progress
