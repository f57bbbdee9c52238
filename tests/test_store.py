"""The preference store: one transaction per action, edits kept beside the model's text, pictures
stored once by content hash, verdicts checked, export loadable by `datasets`."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import threading

import pytest
from PIL import Image

from reasoner.pngmeta import read_recipe
from reasoner.records import DrawSettings
from reasoner.store import (
    Actor,
    DrawRequest,
    NewCandidate,
    PreferenceError,
    Store,
    export_dataset,
    png_bytes,
    preference_pairs,
)
from reasoner.store.schema import SCHEMA_VERSION

ACTOR = Actor("anon-test", "tiny", "hf")
PROMPT = "a circle the color of the sky"
MODEL_PLAN = "the sky is blue. Plan: blue circle @ top-left"


def pictures(tiny_pipeline, n: int, seed: int = 0, plan: str | None = "blue circle @ top-left") -> list[NewCandidate]:
    """Real candidates from the tiny model, as PNGs carrying their recipe."""
    drawn = tiny_pipeline.draw(PROMPT, plan, DrawSettings(n=n, seed=seed))
    return [NewCandidate(c.seed, png_bytes(c.image, {"prompt": PROMPT, "plan": plan, "seed": c.seed})) for c in drawn]


def settings(n: int = 3) -> dict:
    return DrawSettings(n=n).__dict__


@pytest.fixture
def store(tmp_path):
    return Store.open(tmp_path / "data")


def test_open_sets_wal_and_schema(store):
    with store.read_connection() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert Store.open(store.data_dir).counts()["turns"] == 0  # opening again keeps everything


def test_the_loop_keeps_model_text_and_person_edits(store, tiny_pipeline):
    thought = store.think(ACTOR, PROMPT, MODEL_PLAN)
    # the person edits the plan before drawing: a new row, pointing at the model's
    drawn = store.draw(
        ACTOR,
        DrawRequest(
            PROMPT, "blue circle @ middle-center", settings(), pictures(tiny_pipeline, 3), turn_id=thought.turn_id
        ),
    )
    assert drawn.turn_id == thought.turn_id and len(drawn.candidates) == 3
    store.prefer(ACTOR, drawn.draw_id, "pick", [1])
    reflected = store.reflect(
        ACTOR, drawn.draw_id, 1, "wrong cell. Plan: blue circle @ bottom-right", "Plan: blue circle @ bottom-right"
    )
    # the person edits both the reflection and the revised plan before redrawing
    redrawn = store.draw(
        ACTOR,
        DrawRequest(
            PROMPT,
            "blue circle @ bottom-left",
            settings(2),
            pictures(tiny_pipeline, 2, seed=9),
            turn_id=thought.turn_id,
            reflection_id=reflected.reflection_id,
            reflection_text="the circle belongs bottom left",
        ),
    )
    with store.read_connection() as conn:
        plans = conn.execute("SELECT id, text, source, edited_from, reflection_id FROM plans ORDER BY id").fetchall()
        reflections = conn.execute("SELECT id, text, source, edited_from FROM reflections ORDER BY id").fetchall()
        draws = conn.execute("SELECT plan_id, reflection_id FROM draws ORDER BY id").fetchall()
    model_plan, person_plan, model_revised, person_revised = plans
    assert model_plan[1:4] == (MODEL_PLAN, "model", None)
    assert person_plan[1:4] == ("blue circle @ middle-center", "person", model_plan[0])
    assert model_revised[1:] == ("Plan: blue circle @ bottom-right", "model", None, reflected.reflection_id)
    assert person_revised[1:] == ("blue circle @ bottom-left", "person", model_revised[0], reflected.reflection_id)
    assert reflections[0][2] == "model" and reflections[1][1:] == (
        "the circle belongs bottom left",
        "person",
        reflections[0][0],
    )
    assert draws == [(person_plan[0], None), (person_revised[0], reflections[1][0])]
    assert redrawn.reflection_id == reflections[1][0]


def test_same_text_reuses_the_plan_and_a_new_prompt_starts_a_new_turn(store, tiny_pipeline):
    thought = store.think(ACTOR, PROMPT, MODEL_PLAN)
    same = store.draw(
        ACTOR, DrawRequest(PROMPT, MODEL_PLAN, settings(1), pictures(tiny_pipeline, 1), turn_id=thought.turn_id)
    )
    assert same.plan_id == thought.plan_id and store.plan_source(thought.turn_id, MODEL_PLAN, PROMPT) == "model"
    # the model's text is the model's only in its own turn, for its own prompt, and for its owner
    assert store.plan_source(thought.turn_id, MODEL_PLAN, "two yellow triangles") == "person"
    assert store.plan_source(thought.turn_id, MODEL_PLAN, PROMPT, owner="someone-else") == "person"
    assert store.plan_source(thought.turn_id, MODEL_PLAN + " ", PROMPT) == "person"
    other = store.draw(
        ACTOR,
        DrawRequest("two yellow triangles", None, settings(1), pictures(tiny_pipeline, 1), turn_id=thought.turn_id),
    )
    assert other.turn_id != thought.turn_id and other.plan_id is None


def test_images_are_stored_once_by_content_hash_with_their_recipe(store, tiny_pipeline):
    candidates = pictures(tiny_pipeline, 2)
    first = store.draw(ACTOR, DrawRequest(PROMPT, None, settings(2), candidates))
    again = store.draw(ACTOR, DrawRequest(PROMPT, None, settings(2), candidates))  # same pictures again
    assert [c.image_hash for c in first.candidates] == [c.image_hash for c in again.candidates]
    assert store.counts()["images"] == 2 and store.counts()["candidates"] == 4
    files = sorted((store.data_dir / "images").rglob("*.png"))
    assert len(files) == 2
    for candidate in first.candidates:
        path = store.image_file(candidate.path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == candidate.image_hash
        assert read_recipe(path)["seed"] == candidate.seed


@pytest.mark.parametrize(
    ("kind", "ranking", "message"),
    [
        ("pick", [], "exactly one"),
        ("pick", [5], "candidate 6 does not exist"),
        ("rank", [0], "at least two"),
        ("rank", [0, 0], "at most once"),
        ("all_bad", [1], "names no candidate"),
        ("love", [0], "not one of"),
    ],
)
def test_bad_verdicts_are_refused_and_store_nothing(store, tiny_pipeline, kind, ranking, message):
    drawn = store.draw(ACTOR, DrawRequest(PROMPT, None, settings(3), pictures(tiny_pipeline, 3)))
    with pytest.raises(PreferenceError, match=message):
        store.prefer(ACTOR, drawn.draw_id, kind, ranking)
    with pytest.raises(PreferenceError, match="draw 999 does not exist"):
        store.prefer(ACTOR, 999, "pick", [0])
    assert store.counts()["preferences"] == 0


def test_preference_pairs_follow_pick_a_pic():
    assert preference_pairs("pick", [2], 4) == [(2, 0), (2, 1), (2, 3)]
    assert preference_pairs("rank", [1, 0], 3) == [(1, 0), (1, 2), (0, 2)]
    assert preference_pairs("all_bad", [], 3) == []


def test_concurrent_writers_lose_nothing(store, tiny_pipeline):
    drawn = store.draw(ACTOR, DrawRequest(PROMPT, None, settings(2), pictures(tiny_pipeline, 2)))
    ids, errors = [], []

    def write(k: int):
        try:
            for _ in range(10):
                ids.append(store.prefer(Actor(f"writer-{k}", "tiny", "hf"), drawn.draw_id, "pick", [k % 2]))
        except Exception as error:  # noqa: BLE001 - the test reports any failure
            errors.append(error)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(ids)) == 80 and store.counts()["preferences"] == 80


def test_history_and_reopen(store, tiny_pipeline):
    thought = store.think(ACTOR, PROMPT, MODEL_PLAN)
    drawn = store.draw(
        ACTOR, DrawRequest(PROMPT, MODEL_PLAN, settings(2), pictures(tiny_pipeline, 2), turn_id=thought.turn_id)
    )
    store.prefer(ACTOR, drawn.draw_id, "rank", [1, 0])
    store.reflect(ACTOR, drawn.draw_id, 0, "fine as it is", None)
    [summary] = store.recent_turns()
    assert (summary.prompt, summary.plan, summary.draws, summary.preferences) == (PROMPT, MODEL_PLAN, 1, 1)
    assert store.recent_turns(who="someone-else") == []
    state = store.turn_state(thought.turn_id)
    assert state.last_draw.draw_id == drawn.draw_id and state.last_reflection.text == "fine as it is"
    assert state.last_reflection.revised_plan is None and state.last_reflection.drawn_plan == MODEL_PLAN
    with pytest.raises(PreferenceError):
        store.turn_state(thought.turn_id, who="someone-else")


def test_export_loads_with_datasets(store, tiny_pipeline, tmp_path):
    datasets = pytest.importorskip("datasets")
    thought = store.think(ACTOR, PROMPT, MODEL_PLAN)
    drawn = store.draw(
        ACTOR,
        DrawRequest(
            PROMPT, "blue circle @ middle-center", settings(3), pictures(tiny_pipeline, 3), turn_id=thought.turn_id
        ),
    )
    store.prefer(ACTOR, drawn.draw_id, "pick", [2])
    store.prefer(Actor("alice", "tiny", "hf"), drawn.draw_id, "rank", [0, 1])
    bad = store.draw(ACTOR, DrawRequest(PROMPT, None, settings(2), pictures(tiny_pipeline, 2, seed=5)))
    store.prefer(ACTOR, bad.draw_id, "all_bad", [])

    summary = export_dataset(store, tmp_path / "export")
    assert (summary.pairs, summary.all_bad, summary.edits) == (2 + 3, 2, 1)
    pairs = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "export" / "pairs"), split="train")
    assert {"chosen", "rejected", "caption", "plan", "model_plan", "user_id"} <= set(pairs.column_names)
    first = pairs[0]
    assert (
        first["caption"] == PROMPT
        and first["plan"] == "blue circle @ middle-center"
        and first["model_plan"] == MODEL_PLAN
    )
    assert first["chosen"].size == (72, 72) and (first["chosen_index"], first["rejected_index"]) == (3, 1)
    assert sorted(pairs["user_id"]) == ["alice"] * 3 + ["anon-test"] * 2  # rank [1, 2] of 3: 3 pairs; pick: 2
    all_bad = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "export" / "all_bad"), split="train")
    assert len(all_bad) == 2 and all_bad[0]["image"].size == (72, 72)
    edits = datasets.load_dataset("json", data_files=str(tmp_path / "export" / "edits.jsonl"), split="train")
    assert edits[0]["model_text"] == MODEL_PLAN and edits[0]["person_text"] == "blue circle @ middle-center"


def test_export_command_line(store, tiny_pipeline, tmp_path):
    from reasoner.store.__main__ import main

    drawn = store.draw(ACTOR, DrawRequest(PROMPT, None, settings(2), pictures(tiny_pipeline, 2)))
    store.prefer(ACTOR, drawn.draw_id, "pick", [0])
    assert main(["export", "--data-dir", str(store.data_dir), "--out", str(tmp_path / "out")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "pairs" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and (tmp_path / "out" / "pairs" / rows[0]["chosen_file_name"]).is_file()


def test_export_with_no_all_bad_verdicts_writes_no_unloadable_split(store, tiny_pipeline, tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    from reasoner.store.__main__ import main

    drawn = store.draw(ACTOR, DrawRequest(PROMPT, None, settings(2), pictures(tiny_pipeline, 2)))
    store.prefer(ACTOR, drawn.draw_id, "pick", [0])
    assert main(["export", "--data-dir", str(store.data_dir), "--out", str(tmp_path / "out")]) == 0
    assert "all_bad/ not written: no all-bad verdicts" in capsys.readouterr().out
    assert not (tmp_path / "out" / "all_bad").exists()
    assert len(datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "out" / "pairs"), split="train")) == 1


def test_export_of_a_missing_data_dir_is_one_line_and_creates_nothing(tmp_path, capsys):
    from reasoner.store.__main__ import main

    missing, out = tmp_path / "no-such-dir", tmp_path / "out"
    assert main(["export", "--data-dir", str(missing), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "does not exist" in error and str(missing) in error
    assert not missing.exists() and not out.exists()
    (tmp_path / "empty").mkdir()
    assert main(["export", "--data-dir", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "holds no studio database" in capsys.readouterr().err and list((tmp_path / "empty").iterdir()) == []


def test_a_failed_action_rolls_back_completely(store, tiny_pipeline):
    thought = store.think(ACTOR, PROMPT, MODEL_PLAN)
    before = store.counts()
    with pytest.raises(PreferenceError, match="reflection 42 does not exist"):
        store.draw(
            ACTOR,
            DrawRequest(
                PROMPT,
                "red square @ top-left",
                settings(1),
                pictures(tiny_pipeline, 1),
                turn_id=thought.turn_id,
                reflection_id=42,
            ),
        )
    after = store.counts()
    assert {k: v for k, v in after.items() if k != "images"} == {k: v for k, v in before.items() if k != "images"}
    assert after["images"] == before["images"]  # no row; the picture file may stay, unreferenced


def test_the_database_is_a_plain_sqlite_file(store):
    store.think(ACTOR, PROMPT, MODEL_PLAN)
    conn = sqlite3.connect(store.db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT text FROM prompts").fetchall() == [(PROMPT,)]
    conn.close()


def test_png_bytes_are_reproducible():
    image = Image.new("RGB", (8, 8), (1, 2, 3))
    assert png_bytes(image, {"seed": 1}) == png_bytes(image, {"seed": 1})
    assert read_recipe(io.BytesIO(png_bytes(image, {"seed": 1}))) == {"seed": 1}
