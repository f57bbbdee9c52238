"""Scripted people: a taste a program holds, and a person who drives the studio with it.

The person does what someone collecting preferences does (issue 18.5), through `gradio_client`
and the studio's named endpoints only: /think the prompt, /draw 4 candidates with `vary_plans`
(each its own plan), look at the pictures, /prefer the one its taste likes best. A taste judges
pixels alone (where the drawing's ink sits), never plans, seeds or ids, so what a model learns
from these picks it learns from pictures. The code under test is not told the taste.

    person = ScriptedPerson(client, "low")
    person.session(prompts, seed=0)        # one verdict per prompt, in the studio's store

Tastes (each a score, higher is liked better; a draw where every candidate scores the same
gives the taste no room, and the person then saves no verdict):
- low: the drawing's ink sits low in the picture;
- compact: the objects sit close together;
- left: the ink sits to the left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

Taste = Callable[[Image.Image], float]
TIE = 0.02  # scores closer than this (a fiftieth of the picture) are the same to the person


def ink(picture: Image.Image) -> np.ndarray:
    """(y, x) in [0, 1] of every pixel that is not the background (the corners' colour)."""
    pixels = np.asarray(picture.convert("RGB"), dtype=np.int16)
    corners = np.stack([pixels[0, 0], pixels[0, -1], pixels[-1, 0], pixels[-1, -1]])
    background = np.median(corners, axis=0)
    drawn = np.abs(pixels - background).sum(axis=-1) > 96
    ys, xs = np.nonzero(drawn)
    height, width = drawn.shape
    return np.stack([ys / (height - 1), xs / (width - 1)], axis=1) if len(ys) else np.zeros((0, 2))


def low(picture: Image.Image) -> float:
    points = ink(picture)
    return float(points[:, 0].mean()) if len(points) else 0.0


def compact(picture: Image.Image) -> float:
    points = ink(picture)
    if len(points) == 0:
        return -1.0
    return -float(np.linalg.norm(points - points.mean(axis=0), axis=1).mean())


def left(picture: Image.Image) -> float:
    points = ink(picture)
    return -float(points[:, 1].mean()) if len(points) else -1.0


TASTES: dict[str, Taste] = {"low": low, "compact": compact, "left": left}


def has_room(scores: list[float]) -> bool:
    """Whether the taste can tell these candidates apart at all."""
    return max(scores) - min(scores) >= TIE


def favourite(scores: list[float]) -> int:
    """Index of the best-liked candidate (the first of equals)."""
    return max(range(len(scores)), key=lambda k: (scores[k], -k))


@dataclass
class ScriptedPerson:
    client: object  # a gradio_client.Client connected to a studio
    taste_name: str
    n: int = 4
    engine: str = "fast"
    log: list[dict] = field(default_factory=list)

    @property
    def taste(self) -> Taste:
        return TASTES[self.taste_name]

    def one_prompt(self, prompt: str, seed: int) -> dict:
        """Think, draw `n` varied candidates, pick the favourite; what happened, as a record."""
        plan, _, turn_id, _ = self.client.predict(prompt, seed, False, 0, self.engine, api_name="/think")
        gallery, draw_id, *_ = self.client.predict(
            prompt=prompt,
            plan=plan,
            turn_id=turn_id,
            n=self.n,
            seed=seed,
            random_seed=False,
            cfg_scale=1,
            temperature=1,
            plan_temperature=0,
            engine=self.engine,
            vary_plans=True,
            api_name="/draw",
        )
        scores = []
        for item in gallery:
            with Image.open(item["image"]) as picture:
                scores.append(self.taste(picture))
        record = {"prompt": prompt, "seed": seed, "draw_id": draw_id, "scores": scores, "verdict": None}
        if has_room(scores):
            best = favourite(scores) + 1
            self.client.predict(draw_id=draw_id, verdict="best", best=best, ranking="", api_name="/prefer")
            record["verdict"] = best
        self.log.append(record)
        return record

    def session(self, prompts: list[str], seed: int = 0) -> list[dict]:
        return [self.one_prompt(prompt, seed + 100 * k) for k, prompt in enumerate(prompts)]


def taste_win_rate(taste: Taste, base: list[list[Image.Image]], tuned: list[list[Image.Image]]) -> dict:
    """Per prompt, whose candidates the taste likes better (mean score of each model's candidates,
    drawn with the same seeds); prompts where the two are the same to the taste are left out."""
    wins = losses = ties = 0
    for base_pictures, tuned_pictures in zip(base, tuned):
        base_score = float(np.mean([taste(p) for p in base_pictures]))
        tuned_score = float(np.mean([taste(p) for p in tuned_pictures]))
        if abs(tuned_score - base_score) < TIE / 2:
            ties += 1
        elif tuned_score > base_score:
            wins += 1
        else:
            losses += 1
    decided = wins + losses
    return {"wins": wins, "losses": losses, "ties": ties, "win_rate": wins / decided if decided else None}
