"""What the pipeline needs to know about the world a model draws in, behind one small interface.

A model's `reasoner.json` names its world (`ModelInfo.world`); `world_named` gives the object that
knows that world's rules. The pipeline asks it, and never compares world names:

- `check_plan(plan_text)`: what is wrong with a plan a person wrote (None: nothing);
- `model_text(plan_text)`: the text the model reads for a plan (the plan as written, or a form of
  it the model learned to read);
- `score_picture(prompt, image)`: how well a picture meets its prompt, from 0 to 1, or None where
  the world has no checker for it.

The `open` world (Janus-Pro, T2I-R1, any free-text model) accepts any plan and scores nothing.
The `shapes` world (`reasoner/shapes/shapes_world.py`, rules in docs/shapes-world.md) checks
plans against its grammar and scores pictures with its detector. A new backend or world adds an
object here, not a branch in the pipeline.

Every world shares one rule about a plan's text: the plan proper is what follows the last
`Plan:` marker, and anything before it is the model's reasoning (`split_plan_text`).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Protocol

from PIL import Image

_PLAN_MARKER = re.compile(r"\bplan\s*:", re.IGNORECASE)


def split_plan_text(text: str) -> tuple[str, str]:
    """(reasoning, plan) of a text: around the last `Plan:` marker, else ("", all of it)."""
    markers = list(_PLAN_MARKER.finditer(text))
    if not markers:
        return "", text.strip()
    return text[: markers[-1].start()].strip(), text[markers[-1].end() :].strip()


def plan_body(text: str) -> str:
    """The plan proper: what follows the last `Plan:` marker, else the whole text."""
    return split_plan_text(text)[1]


def plan_reasoning(text: str) -> str:
    """The reasoning before the last `Plan:` marker ("" when there is none or no marker)."""
    return split_plan_text(text)[0]


class World(Protocol):
    name: str
    description: str  # one line for people: how this world treats plans

    def check_plan(self, plan_text: str) -> str | None:
        """Why `plan_text` (a whole plan, reasoning included) is not a valid plan here, or None."""

    def model_text(self, plan_text: str) -> str:
        """The text the model reads for `plan_text`."""

    def score_picture(self, prompt: str, image: Image.Image) -> float | None:
        """How well `image` meets `prompt`, 0 to 1; None where this world cannot tell."""


class OpenWorld:
    """Free text: any non-empty plan is drawn as written, and no picture is scored."""

    name = "open"
    description = "free-text plans"

    def check_plan(self, plan_text: str) -> str | None:
        return None

    def model_text(self, plan_text: str) -> str:
        return plan_text

    def score_picture(self, prompt: str, image: Image.Image) -> float | None:
        return None


def _shapes_world() -> World:
    # Imported on first use: an open-world model never loads the shapes rules.
    from .shapes.shapes_world import ShapesWorld

    return ShapesWorld()


_WORLDS = {"open": OpenWorld, "shapes": _shapes_world}
WORLD_NAMES = tuple(_WORLDS)


@cache
def world_named(name: str) -> World:
    """The world object for a `reasoner.json` world name; KeyError names an unknown one."""
    if name not in _WORLDS:
        raise KeyError(f"world {name!r} is not one of {', '.join(WORLD_NAMES)}")
    return _WORLDS[name]()
