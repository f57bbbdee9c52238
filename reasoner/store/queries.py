"""Reads of the preference store, as records. Each takes an open connection."""

from __future__ import annotations

import json
import sqlite3

from .errors import PreferenceError
from .records import CandidateRef, DrawInfo, ReflectionInfo, TurnState, TurnSummary


def candidates_of(conn: sqlite3.Connection, draw_id: int) -> tuple[CandidateRef, ...]:
    rows = conn.execute(
        "SELECT c.id, c.idx, c.seed, c.image_hash, i.path, pl.text, pl.source FROM candidates c"
        " JOIN images i ON i.hash = c.image_hash JOIN draws d ON d.id = c.draw_id"
        " LEFT JOIN plans pl ON pl.id = COALESCE(c.plan_id, d.plan_id) WHERE c.draw_id = ? ORDER BY c.idx",
        (draw_id,),
    ).fetchall()
    return tuple(CandidateRef(*row) for row in rows)


def owned(who: str, owner: str | None) -> bool:
    """Whether a row of `who`'s turn is `owner`'s to see and act on (owner None: anyone's)."""
    return owner is None or who == owner


def draw_info(conn: sqlite3.Connection, draw_id: int, owner: str | None = None) -> DrawInfo:
    row = conn.execute(
        "SELECT d.turn_id, p.text, pl.text, pl.source, d.settings, t.who FROM draws d"
        " JOIN turns t ON t.id = d.turn_id JOIN prompts p ON p.id = t.prompt_id"
        " LEFT JOIN plans pl ON pl.id = d.plan_id WHERE d.id = ?",
        (draw_id,),
    ).fetchone()
    if row is None or not owned(row[5], owner):
        raise PreferenceError(f"draw {draw_id} does not exist")
    turn_id, prompt, plan, source, settings, _ = row
    return DrawInfo(turn_id, draw_id, prompt, plan, source, json.loads(settings), candidates_of(conn, draw_id))


def root_reflection_id(conn: sqlite3.Connection, reflection_id: int) -> int:
    """The model's reflection that a chain of a person's edits started from."""
    while True:
        row = conn.execute("SELECT edited_from FROM reflections WHERE id = ?", (reflection_id,)).fetchone()
        if row is None or row[0] is None:
            return reflection_id
        reflection_id = row[0]


def revised_plan_id(conn: sqlite3.Connection, reflection_id: int) -> int | None:
    """The model's revised plan proposed by a reflection (or by the one it was edited from)."""
    row = conn.execute(
        "SELECT id FROM plans WHERE reflection_id = ? AND source = 'model' ORDER BY id LIMIT 1",
        (root_reflection_id(conn, reflection_id),),
    ).fetchone()
    return None if row is None else row[0]


def plan_text(conn: sqlite3.Connection, plan_id: int | None) -> str | None:
    """The text of plan `plan_id` (None for None)."""
    return None if plan_id is None else conn.execute("SELECT text FROM plans WHERE id = ?", (plan_id,)).fetchone()[0]


def latest_plan_id(conn: sqlite3.Connection, turn_id: int) -> int | None:
    row = conn.execute("SELECT id FROM plans WHERE turn_id = ? ORDER BY id DESC LIMIT 1", (turn_id,)).fetchone()
    return None if row is None else row[0]


def reflection_info(conn: sqlite3.Connection, reflection_id: int, owner: str | None = None) -> ReflectionInfo:
    row = conn.execute(
        "SELECT r.turn_id, c.draw_id, p.text, r.text, t.who, c.idx FROM reflections r"
        " JOIN candidates c ON c.id = r.candidate_id JOIN turns t ON t.id = r.turn_id"
        " JOIN prompts p ON p.id = t.prompt_id WHERE r.id = ?",
        (reflection_id,),
    ).fetchone()
    if row is None or not owned(row[4], owner):
        raise PreferenceError(f"reflection {reflection_id} does not exist")
    turn_id, draw_id, prompt, text, _, index = row
    revised = plan_text(conn, revised_plan_id(conn, reflection_id))
    drawn = draw_info(conn, draw_id).candidates[index]  # the picture's own plan (a varied draw's differ)
    return ReflectionInfo(turn_id, reflection_id, draw_id, prompt, text, revised, drawn.plan, drawn.plan_source)


def recent_turns(conn: sqlite3.Connection, limit: int, who: str | None) -> list[TurnSummary]:
    where, args = ("WHERE t.who = ?", (who,)) if who is not None else ("", ())
    rows = conn.execute(
        "SELECT t.id, t.created_at, t.who, t.model, p.text,"
        " (SELECT text FROM plans WHERE turn_id = t.id ORDER BY id DESC LIMIT 1),"
        " (SELECT COUNT(*) FROM draws WHERE turn_id = t.id),"
        " (SELECT COUNT(*) FROM preferences f JOIN draws d ON d.id = f.draw_id WHERE d.turn_id = t.id)"
        f" FROM turns t JOIN prompts p ON p.id = t.prompt_id {where} ORDER BY t.id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [TurnSummary(*row) for row in rows]


def turn_state(conn: sqlite3.Connection, turn_id: int, who: str | None) -> TurnState:
    row = conn.execute(
        "SELECT p.text, t.who FROM turns t JOIN prompts p ON p.id = t.prompt_id WHERE t.id = ?", (turn_id,)
    ).fetchone()
    if row is None or not owned(row[1], who):
        raise PreferenceError(f"turn {turn_id} does not exist")
    plan = plan_text(conn, latest_plan_id(conn, turn_id))
    draw = conn.execute("SELECT id FROM draws WHERE turn_id = ? ORDER BY id DESC LIMIT 1", (turn_id,)).fetchone()
    reflection = conn.execute(
        "SELECT id FROM reflections WHERE turn_id = ? ORDER BY id DESC LIMIT 1", (turn_id,)
    ).fetchone()
    verdicts = [
        f"draw {draw_id}: {kind} {json.loads(ranking)}"
        for draw_id, kind, ranking in conn.execute(
            "SELECT f.draw_id, f.kind, f.ranking FROM preferences f JOIN draws d ON d.id = f.draw_id"
            " WHERE d.turn_id = ? ORDER BY f.id",
            (turn_id,),
        )
    ]
    return TurnState(
        turn_id=turn_id,
        prompt=row[0],
        plan=plan,
        last_draw=None if draw is None else draw_info(conn, draw[0]),
        last_reflection=None if reflection is None else reflection_info(conn, reflection[0]),
        verdicts=verdicts,
    )


def turn_prompt(conn: sqlite3.Connection, turn_id: int, owner: str | None = None) -> str:
    row = conn.execute(
        "SELECT p.text, t.who FROM turns t JOIN prompts p ON p.id = t.prompt_id WHERE t.id = ?", (turn_id,)
    ).fetchone()
    if row is None or not owned(row[1], owner):
        raise PreferenceError(f"turn {turn_id} does not exist")
    return row[0]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    tables = ("prompts", "turns", "plans", "reflections", "draws", "images", "candidates", "preferences", "comparisons")
    return {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in tables}
