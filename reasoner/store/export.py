"""Export the store as JSONL + images in layouts that Hugging Face `datasets` loads.

    OUT/pairs/metadata.jsonl, OUT/pairs/images/*.png    load_dataset("imagefolder", data_dir="OUT/pairs")
    OUT/all_bad/metadata.jsonl, OUT/all_bad/images/*.png load_dataset("imagefolder", data_dir="OUT/all_bad")
    OUT/edits.jsonl                                      load_dataset("json", data_files="OUT/edits.jsonl")

`pairs` holds one row per (chosen, rejected) pair, as Pick-a-Pic does: a pick beats every other
candidate of its draw; in a ranking each candidate beats the ones ranked after it and every one
left unranked. `chosen_file_name` and `rejected_file_name` become the image columns `chosen` and
`rejected`. `all_bad` holds one row per picture of a draw marked all bad. `edits` pairs what the
model wrote with what a person changed it to (plans, revised plans, reflections).

A split with no rows is not written (`ExportSummary.skipped` names it): `datasets` cannot load an
imagefolder that holds no image.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .images import relative_path
from .store import Store


@dataclass(frozen=True)
class ExportSummary:
    pairs: int
    all_bad: int
    edits: int
    images: int
    skipped: tuple[str, ...] = ()  # splits left unwritten because they have no rows


def preference_pairs(kind: str, ranking: list[int], count: int) -> list[tuple[int, int]]:
    """(chosen, rejected) candidate indices a verdict implies."""
    if kind == "all_bad":
        return []
    unranked = [i for i in range(count) if i not in ranking]
    return [(better, worse) for k, better in enumerate(ranking) for worse in ranking[k + 1 :] + unranked]


def export_dataset(store: Store, out: str | Path) -> ExportSummary:
    out = Path(out)
    with store.read_connection() as conn:
        pair_rows, bad_rows = [], []
        for verdict in _verdicts(conn):
            candidates = {row["idx"]: row for row in _candidates(conn, verdict["draw_id"])}
            base = _row_base(verdict)
            if verdict["kind"] == "all_bad":
                bad_rows += [
                    {**base, "file_name": _image_name(c), "seed": c["seed"], "candidate_plan": c["plan"]}
                    for c in candidates.values()
                ]
                continue
            for chosen, rejected in preference_pairs(verdict["kind"], json.loads(verdict["ranking"]), len(candidates)):
                pair_rows.append(
                    {
                        **base,
                        "chosen_file_name": _image_name(candidates[chosen]),
                        "rejected_file_name": _image_name(candidates[rejected]),
                        "chosen_seed": candidates[chosen]["seed"],
                        "rejected_seed": candidates[rejected]["seed"],
                        "chosen_index": chosen + 1,
                        "rejected_index": rejected + 1,
                        "chosen_plan": candidates[chosen]["plan"],  # each its own in a varied draw
                        "rejected_plan": candidates[rejected]["plan"],
                    }
                )
        edits = _edits(conn)
        folders = {
            "pairs": (pair_rows, ("chosen_file_name", "rejected_file_name")),
            "all_bad": (bad_rows, ("file_name",)),
        }
        skipped = tuple(name for name, (rows, _) in folders.items() if not rows)
        images = sum(_write_folder(store, out / name, rows, keys) for name, (rows, keys) in folders.items() if rows)
    _write_jsonl(out / "edits.jsonl", edits)
    return ExportSummary(len(pair_rows), len(bad_rows), len(edits), images, skipped)


def _verdicts(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    conn.row_factory = sqlite3.Row
    return conn.execute(
        "SELECT f.id AS preference_id, f.kind, f.ranking, f.who, f.created_at, d.id AS draw_id, d.turn_id,"
        " d.settings, d.model, d.engine, p.text AS prompt, pl.text AS plan, pl.source AS plan_source,"
        " (SELECT text FROM plans WHERE turn_id = d.turn_id AND source = 'model' AND reflection_id IS NULL"
        "  ORDER BY id LIMIT 1) AS model_plan,"
        " r.text AS reflection FROM preferences f JOIN draws d ON d.id = f.draw_id JOIN turns t ON t.id = d.turn_id"
        " JOIN prompts p ON p.id = t.prompt_id LEFT JOIN plans pl ON pl.id = d.plan_id"
        " LEFT JOIN reflections r ON r.id = d.reflection_id ORDER BY f.id"
    ).fetchall()


def _candidates(conn: sqlite3.Connection, draw_id: int) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT c.idx, c.seed, c.image_hash, i.path, pl.text AS plan FROM candidates c"
        " JOIN images i ON i.hash = c.image_hash JOIN draws d ON d.id = c.draw_id"
        " LEFT JOIN plans pl ON pl.id = COALESCE(c.plan_id, d.plan_id) WHERE c.draw_id = ? ORDER BY c.idx",
        (draw_id,),
    ).fetchall()


def _row_base(verdict: sqlite3.Row) -> dict:
    return {
        "caption": verdict["prompt"],
        "plan": verdict["plan"],
        "plan_source": verdict["plan_source"],
        "model_plan": verdict["model_plan"],
        "reflection": verdict["reflection"],
        "settings": verdict["settings"],
        "model": verdict["model"],
        "engine": verdict["engine"],
        "user_id": verdict["who"],
        "kind": verdict["kind"],
        "preference_id": verdict["preference_id"],
        "draw_id": verdict["draw_id"],
        "turn_id": verdict["turn_id"],
        "created_at": verdict["created_at"],
    }


def _image_name(candidate: sqlite3.Row) -> str:
    return f"images/{candidate['image_hash']}.png"


def _edits(conn: sqlite3.Connection) -> list[dict]:
    rows = []
    for table in ("plans", "reflections"):
        extra = ", e.reflection_id IS NOT NULL" if table == "plans" else ", 0"
        for edit_id, turn_id, prompt, model_text, person_text, who, created_at, revised in conn.execute(
            f"SELECT e.id, e.turn_id, p.text, m.text, e.text, e.who, e.created_at{extra} FROM {table} e"
            f" JOIN {table} m ON m.id = e.edited_from JOIN turns t ON t.id = e.turn_id"
            " JOIN prompts p ON p.id = t.prompt_id WHERE e.source = 'person' ORDER BY e.id"
        ):
            kind = "reflection" if table == "reflections" else ("revised_plan" if revised else "plan")
            rows.append(
                {
                    "kind": kind,
                    "prompt": prompt,
                    "model_text": model_text,
                    "person_text": person_text,
                    "user_id": who,
                    "turn_id": turn_id,
                    "edit_id": edit_id,
                    "created_at": created_at,
                }
            )
    return rows


def _write_folder(store: Store, folder: Path, rows: list[dict], image_keys: tuple[str, ...]) -> int:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = {row[key] for row in rows for key in image_keys}
    for name in names:
        _link_or_copy(store.image_file(relative_path(Path(name).stem)), folder / name)
    _write_jsonl(folder / "metadata.jsonl", rows)
    return len(names)


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".jsonl.partial")
    with open(partial, "w", encoding="utf-8") as file:
        file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    partial.replace(path)
