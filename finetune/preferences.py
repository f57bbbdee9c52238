"""The pairs a reward model learns from: read from a studio data directory's preference store.

Each verdict gives (chosen, rejected) pairs of its draw's pictures by `reasoner.store.preference_pairs`,
the rule the store's export uses: a pick beats every other candidate of its draw; in a ranking each
candidate beats the ones ranked after it and every one left unranked. A pair keeps only what the
reward model may learn from: the prompt and the two pictures (by content hash). Candidate indices,
seeds, ids, settings, who gave the verdict and when are not read, so none of them can leak in.

"All bad" gives no pair among its own candidates (the person said none is better). With
`all_bad_negatives` each of its pictures also loses to the best picture of every pick or ranking of
the same prompt. That reading assumes a picked picture is acceptable, which a pick (the best of a
few) does not promise, so it is off by default.

Several verdicts on one draw (a person changing their mind, or two people) all count, conflicting
or not. A pair of two identical pictures (the same PNG bytes) cannot be learned and is dropped.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from reasoner.errors import ReasonerError
from reasoner.store import DB_NAME, Store, StoreError, preference_pairs


class RewardModelError(ReasonerError):
    """The preferences cannot train a reward model, or a reward model directory cannot be read or written."""


MIN_PAIRS = 10  # fewer pairs than this teach nothing a held-out check could show
MIN_PROMPTS = 2  # pairs of one prompt train, those of another are held out


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str  # image hash
    rejected: str  # image hash
    all_bad: bool = False  # made from an "all bad" verdict (all_bad_negatives), not within one draw


@dataclass
class Preferences:
    pairs: list[Pair]
    images: dict[str, Path]  # image hash -> its file
    verdicts: dict[str, int] = field(default_factory=dict)  # verdicts read, by kind
    dropped_identical: int = 0  # pairs of two identical pictures, left out

    @property
    def prompts(self) -> list[str]:
        return sorted({pair.prompt for pair in self.pairs})


def read_preferences(data_dir: str | Path, all_bad_negatives: bool = False) -> Preferences:
    """Every pair the verdicts in `data_dir`'s store imply; RewardModelError when there are too few."""
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise RewardModelError(f"data directory {data_dir} does not exist")
    if not (data_dir / DB_NAME).is_file():
        raise RewardModelError(f"{data_dir} holds no preference store ({DB_NAME}); give the studio's --data-dir")
    store = Store(data_dir.resolve())  # not Store.open: reading must not create or upgrade anything
    try:
        with store.read_connection() as conn:
            verdicts, candidates = _read(conn)
    except (sqlite3.Error, StoreError) as error:
        raise RewardModelError(
            f"the store in {data_dir} cannot be read ({' '.join(str(error).split())[:200]})"
        ) from None
    counts = {kind: sum(v["kind"] == kind for v in verdicts) for kind in ("pick", "rank", "all_bad")}
    if not verdicts:
        raise RewardModelError(f"the store in {data_dir} holds no preferences yet: give verdicts in the studio first")
    images: dict[str, Path] = {}
    pairs: list[Pair] = []
    dropped = 0
    best_of_prompt: dict[str, set[str]] = {}
    bad_of_prompt: dict[str, list[str]] = {}
    for verdict in verdicts:
        hashes = candidates.get(verdict["draw_id"], {})
        if len(hashes) < 2:
            continue
        for image_hash, path in hashes.values():
            images[image_hash] = store.image_file(path)
        ranking = json.loads(verdict["ranking"])
        prompt = verdict["prompt"]
        if verdict["kind"] == "all_bad":
            bad_of_prompt.setdefault(prompt, []).extend(h for h, _ in hashes.values())
            continue
        best_of_prompt.setdefault(prompt, set()).add(hashes[ranking[0]][0])
        for chosen, rejected in preference_pairs(verdict["kind"], ranking, len(hashes)):
            pair = Pair(prompt, hashes[chosen][0], hashes[rejected][0])
            if pair.chosen == pair.rejected:
                dropped += 1
            else:
                pairs.append(pair)
    if all_bad_negatives:
        for prompt, bad in bad_of_prompt.items():
            for best in sorted(best_of_prompt.get(prompt, ())):
                pairs += [Pair(prompt, best, worse, all_bad=True) for worse in bad if worse != best]
    missing = sorted(h for h in {h for p in pairs for h in (p.chosen, p.rejected)} if not images[h].is_file())
    if missing:
        raise RewardModelError(
            f"picture {images[missing[0]]} is missing ({len(missing)} pictures named by verdicts are)"
        )
    preferences = Preferences(pairs, images, counts, dropped)
    if len(pairs) < MIN_PAIRS:
        raise RewardModelError(
            f"the store in {data_dir} gives {len(pairs)} preference pair{'s' * (len(pairs) != 1)};"
            f" need at least {MIN_PAIRS} pairs (pick or rank more draws)"
        )
    if len(preferences.prompts) < MIN_PROMPTS:
        raise RewardModelError(
            f"all {len(pairs)} pairs are of one prompt; need pairs of at least {MIN_PROMPTS} prompts"
            " (some are held out to measure the reward model)"
        )
    return preferences


def split_by_prompt(pairs: list[Pair], heldout_share: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, held out): every pair of a prompt on one side; about `heldout_share` of the prompts
    held out (at least one, and at least one left to train on), chosen by `seed`."""
    prompts = sorted({pair.prompt for pair in pairs})
    random.Random(f"reward-model-split:{seed}").shuffle(prompts)
    count = min(len(prompts) - 1, max(1, round(heldout_share * len(prompts))))
    heldout = set(prompts[:count])
    return [p for p in pairs if p.prompt not in heldout], [p for p in pairs if p.prompt in heldout]


def _read(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], dict[int, dict[int, tuple[str, str]]]]:
    conn.row_factory = sqlite3.Row
    verdicts = conn.execute(
        "SELECT f.kind, f.ranking, f.draw_id, p.text AS prompt FROM preferences f JOIN draws d ON d.id = f.draw_id"
        " JOIN turns t ON t.id = d.turn_id JOIN prompts p ON p.id = t.prompt_id ORDER BY f.id"
    ).fetchall()
    candidates: dict[int, dict[int, tuple[str, str]]] = {}
    for row in conn.execute(
        "SELECT c.draw_id, c.idx, c.image_hash, i.path FROM candidates c JOIN images i ON i.hash = c.image_hash"
        " WHERE c.draw_id IN (SELECT draw_id FROM preferences)"
    ):
        candidates.setdefault(row["draw_id"], {})[row["idx"]] = (row["image_hash"], row["path"])
    return verdicts, candidates
