"""Load: 20 concurrent gradio_client clients on loopback, 5 full loops each (think, draw, prefer,
reflect, redraw) against a studio whose queue holds 4. Every request is answered or told the queue
is full; every row a client was told about is in SQLite, and no more; the server's memory stays
bounded."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, field

from gradio_client.utils import QueueError

from reasoner.store import DB_NAME
from tests.teach import PROMPT

CLIENTS = 20
LOOPS = 5
SETTINGS = {"random_seed": False, "cfg_scale": 5, "temperature": 1, "plan_temperature": 0, "engine": "hf"}
MEMORY_GROWTH_LIMIT_MB = 400  # the server after the load, against the server warmed up by one loop


@dataclass
class Tally:
    who: str = ""
    answered: Counter = field(default_factory=Counter)
    queue_full: int = 0
    errors: list = field(default_factory=list)
    preferences: set = field(default_factory=set)
    draws: set = field(default_factory=set)


def one_loop(client, tally: Tally, seed: int) -> None:
    """One full loop; a step told the queue is full ends this loop (the next one starts afresh)."""
    plan, _, turn_id, _ = client.predict(PROMPT, seed, False, 0, "hf", api_name="/think")
    tally.answered["think"] += 1
    draw_id = client.predict(PROMPT, plan, turn_id, 1, seed, **SETTINGS, api_name="/draw")[1]
    tally.answered["draw"] += 1
    tally.draws.add(draw_id)
    saved = client.predict(draw_id, "best", 1, "", api_name="/prefer")
    tally.answered["prefer"] += 1
    tally.preferences.add(int(re.search(r"#(\d+)", saved)[1]))
    reflection, revised, reflection_id, _ = client.predict(draw_id, 1, 0, "hf", api_name="/reflect")
    tally.answered["reflect"] += 1
    redraw_id = client.predict(reflection_id, reflection, revised, 1, seed, **SETTINGS, api_name="/redraw")[1]
    tally.answered["redraw"] += 1
    tally.draws.add(redraw_id)


def run_client(server, tally: Tally, number: int, loops: int = LOOPS) -> None:
    try:
        client = server.client()
    except Exception as error:  # noqa: BLE001 - reported by the test
        tally.errors.append(f"connect: {error!r}")
        return
    tally.who = "anon-" + hashlib.sha256(client.session_hash.encode()).hexdigest()[:12]
    for loop in range(loops):
        try:
            one_loop(client, tally, seed=number * 10 + loop)
        except QueueError:
            tally.queue_full += 1
        except Exception as error:  # noqa: BLE001 - anything else is a failure the test reports
            tally.errors.append(repr(error))


def test_twenty_clients_five_loops_each(live_studio):
    warm = Tally()
    run_client(live_studio, warm, 99, loops=1)  # one client alone first: the model and caches are warm
    assert warm.errors == [] and warm.answered["redraw"] == 1
    rss_warm = live_studio.rss_mb()

    tallies = [Tally() for _ in range(CLIENTS)]
    threads = [threading.Thread(target=run_client, args=(live_studio, tally, k)) for k, tally in enumerate(tallies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rss_after = live_studio.rss_mb()

    assert [t.errors for t in tallies if t.errors] == []
    done = sum(t.answered["redraw"] for t in tallies)
    assert done + sum(t.queue_full for t in tallies) == CLIENTS * LOOPS  # every loop finished or was told "full"
    assert done >= 1
    print(
        f"\nload: {done} loops done, {sum(t.queue_full for t in tallies)} told the queue is full, "
        f"server RSS {rss_warm:.0f} MB warm -> {rss_after:.0f} MB after"
    )
    conn = sqlite3.connect(live_studio.data_dir / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for tally in tallies:
            preferences = {row[0] for row in conn.execute("SELECT id FROM preferences WHERE who = ?", (tally.who,))}
            draws = {row[0] for row in conn.execute("SELECT id FROM draws WHERE who = ?", (tally.who,))}
            turns = conn.execute("SELECT COUNT(*) FROM turns WHERE who = ?", (tally.who,)).fetchone()[0]
            assert preferences == tally.preferences  # no row lost, none made up
            assert draws == tally.draws
            assert turns == tally.answered["think"]
    finally:
        conn.close()
    assert rss_after - rss_warm < MEMORY_GROWTH_LIMIT_MB, (rss_warm, rss_after)
    assert live_studio.client().predict(PROMPT, 0, False, 0, "hf", api_name="/think")  # still serving
