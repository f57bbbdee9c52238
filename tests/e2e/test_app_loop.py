"""gradio_client drives the whole loop on a live `python app.py`: think -> draw -> prefer -> reflect
-> redraw, and the rows are in SQLite; downloads carry their recipe; a SIGKILLed server keeps every
preference it acknowledged."""

from __future__ import annotations

import hashlib
import random
import re
import sqlite3
import threading

import pytest
from gradio_client.exceptions import AppError

from reasoner.pngmeta import read_recipe
from reasoner.store import DB_NAME
from tests.e2e.server import start
from tests.teach import PLAN, PROMPT, REFLECTION

SETTINGS = {"random_seed": False, "cfg_scale": 5, "temperature": 1, "plan_temperature": 0, "engine": "hf"}


def who_of(client) -> str:
    return "anon-" + hashlib.sha256(client.session_hash.encode()).hexdigest()[:12]


def rows(server, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(server.data_dir / DB_NAME)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_the_api_lists_the_five_steps_and_the_learn_tabs(live_studio):
    api = live_studio.client().view_api(print_info=False, return_format="dict")
    loop = {"/think", "/draw", "/prefer", "/reflect", "/redraw"}
    learning = {"/learn", "/learn_status", "/use_model", "/compare", "/decide"}
    assert set(api["named_endpoints"]) == loop | learning
    draw = [p["parameter_name"] for p in api["named_endpoints"]["/draw"]["parameters"]]
    assert draw[-1] == "vary_plans" and api["named_endpoints"]["/draw"]["parameters"][-1]["parameter_default"] is False
    assert api["unnamed_endpoints"] == {}


def test_gradio_client_runs_the_whole_loop(live_studio):
    client = live_studio.client()
    plan, status, turn_id, seed = client.predict(PROMPT, 5, False, 0, "hf", api_name="/think")
    assert plan == PLAN and status.startswith("**Valid plan") and seed == 5

    edited = "the sky is blue. Plan: blue circle @ top-center"  # the person moves the circle
    gallery, draw_id, turn, _, message, _ = client.predict(
        prompt=PROMPT, plan=edited, turn_id=turn_id, n=3, seed=5, **SETTINGS, api_name="/draw"
    )
    assert turn == turn_id and len(gallery) == 3 and "draw #" in message
    saved = client.predict(draw_id=draw_id, verdict="best", best=2, ranking="", api_name="/prefer")
    preference_id = int(re.search(r"#(\d+)", saved)[1])

    reflection, revised, reflection_id, _ = client.predict(
        draw_id=draw_id, candidate=2, plan_temperature=0, engine="hf", api_name="/reflect"
    )
    assert reflection and revised  # what the model says about a plan it was not taught on; the revision is editable
    person_revised = "Plan: blue circle @ bottom-right"
    regallery, redraw_id, *_ = client.predict(
        reflection_id=reflection_id,
        reflection_text=reflection,
        revised_plan=person_revised,
        n=2,
        seed=5,
        **SETTINGS,
        api_name="/redraw",
    )
    assert len(regallery) == 2 and redraw_id != draw_id
    assert read_recipe(regallery[0]["image"])["plan"] == person_revised

    who = who_of(client)
    assert rows(live_studio, "SELECT draw_id, kind, ranking, who FROM preferences WHERE id = ?", preference_id) == [
        (draw_id, "pick", "[1]", who)
    ]
    model_plan, person_plan = rows(
        live_studio,
        "SELECT id, text, source, edited_from FROM plans WHERE turn_id = ? AND reflection_id IS NULL ORDER BY id",
        turn_id,
    )
    assert model_plan[1:] == (PLAN, "model", None) and person_plan[1:] == (edited, "person", model_plan[0])
    assert rows(live_studio, "SELECT plan_id FROM draws WHERE id = ?", draw_id) == [(person_plan[0],)]
    assert rows(
        live_studio,
        "SELECT p.text, p.source, d.reflection_id FROM draws d JOIN plans p ON p.id = d.plan_id WHERE d.id = ?",
        redraw_id,
    ) == [(person_revised, "person", reflection_id)]
    assert rows(live_studio, "SELECT seed FROM candidates WHERE draw_id = ? ORDER BY idx", draw_id) == [
        (5,),
        (6,),
        (7,),
    ]

    # the downloaded picture carries its recipe
    recipe = read_recipe(gallery[1]["image"])
    assert (recipe["prompt"], recipe["plan"], recipe["seed"], recipe["engine"]) == (PROMPT, edited, 6, "hf")


def test_reflect_on_the_models_own_plan_revises_it(live_studio):
    client = live_studio.client()
    plan, _, turn_id, _ = client.predict(PROMPT, 0, False, 0, "hf", api_name="/think")
    draw_id = client.predict(PROMPT, plan, turn_id, 1, 0, **SETTINGS, api_name="/draw")[1]
    reflection, revised, reflection_id, status = client.predict(draw_id, 1, 0, "hf", api_name="/reflect")
    # the revision is shown under the reasoning of the plan it revises, as it will be drawn
    assert (reflection, revised) == (
        REFLECTION,
        "the sky is blue. Plan: blue circle @ middle-center",
    ) and "revised" in status
    redraw_id = client.predict(reflection_id, reflection, revised, 1, 0, **SETTINGS, api_name="/redraw")[1]
    assert rows(
        live_studio,
        "SELECT p.source, p.reflection_id FROM draws d JOIN plans p ON p.id = d.plan_id WHERE d.id = ?",
        redraw_id,
    ) == [("model", reflection_id)]


def test_bad_input_is_a_message_and_the_server_stays_up(live_studio):
    client = live_studio.client()
    for call, message in [
        (lambda: client.predict("", 0, False, 0, "hf", api_name="/think"), "the prompt is empty"),
        (lambda: client.predict("x" * 400, 0, False, 0, "hf", api_name="/think"), "the limit is 300"),
        (
            lambda: client.predict(PROMPT, "blue blob @ top-left", None, 2, 0, **SETTINGS, api_name="/draw"),
            "unknown shape",
        ),
        (lambda: client.predict(PROMPT, "", None, 17, 0, **SETTINGS, api_name="/draw"), "16"),
        (lambda: client.predict(None, "best", 1, "", api_name="/prefer"), "draw first"),
        (lambda: client.predict(12345, 1, 0, "hf", api_name="/reflect"), "draw 12345 does not exist"),
    ]:
        with pytest.raises(AppError, match=message):
            call()
    assert client.predict(PROMPT, 0, False, 0, "hf", api_name="/think")[0] == PLAN  # still serving


def test_sigkill_of_the_server_during_preference_writes_keeps_every_acknowledged_one(taught_model_dir, tmp_path):
    """tests/test_store_crash.py kills a writer running the store code 200 times; here the real server, once."""
    data_dir = tmp_path / "data"
    server = start(taught_model_dir, data_dir)
    client = server.client()
    draw_id = client.predict(PROMPT, "", None, 2, 0, **SETTINGS, api_name="/draw")[1]
    acknowledged: set[int] = set()
    stop = threading.Event()

    def prefer_until_stopped():
        while not stop.is_set():
            try:
                saved = client.predict(draw_id, "best", random.choice([1, 2]), "", api_name="/prefer")
            except Exception:  # noqa: BLE001 - the server is being killed; unanswered calls are not acknowledged
                return
            acknowledged.add(int(re.search(r"#(\d+)", saved)[1]))

    writer = threading.Thread(target=prefer_until_stopped)
    writer.start()
    while len(acknowledged) < 5:
        writer.join(0.05)
        assert writer.is_alive(), server.output()
    server.kill()  # SIGKILL while the writer is mid-request
    stop.set()
    writer.join(60)
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute("SELECT id FROM preferences")}
    finally:
        conn.close()
    assert acknowledged <= stored
