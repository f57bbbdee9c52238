"""The typed records that flow from the pipeline to the command line, the UI and the store."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image

from .errors import InvalidSettingError
from .shapes.plan import extract_plan_text  # SHAPES.md's rule, which every world follows

MAX_CANDIDATES = 16
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Plan:
    """A semantic plan: free text, perhaps with reasoning before a final `Plan:` part."""

    text: str
    source: str = "model"  # "model" when the model wrote it, "person" when someone edited it

    @property
    def body(self) -> str:
        return extract_plan_text(self.text)


@dataclass(frozen=True)
class Reflection:
    """What the model said about one of its pictures, and the plan it would draw instead."""

    text: str
    revised_plan: Plan | None  # None: the model found nothing to change
    source: str = "model"

    @property
    def needs_revision(self) -> bool:
        return self.revised_plan is not None


@dataclass(frozen=True)
class DrawSettings:
    """How candidates are drawn. Candidate k gets seed `seed + k`, so each one reproduces alone;
    a whole turn's redraw of candidate k uses `seed + k + MAX_CANDIDATES`."""

    n: int = 4
    seed: int = 0
    cfg_scale: float = 5.0
    temperature: float = 1.0  # image tokens; 0 draws greedily
    top_k: int = 0  # 0 keeps every token
    plan_temperature: float = 0.0  # plans and reflections; 0 writes greedily

    def __post_init__(self):
        checks = [
            (1 <= self.n <= MAX_CANDIDATES, f"n={self.n} is out of range: draw 1 to {MAX_CANDIDATES} candidates"),
            (0 <= self.seed <= MAX_SEED - 2 * MAX_CANDIDATES, f"seed={self.seed} is out of range 0..{MAX_SEED - 2 * MAX_CANDIDATES}"),
            (1.0 <= self.cfg_scale <= 20.0, f"cfg_scale={self.cfg_scale} is out of range 1..20"),
            (0.0 <= self.temperature <= 5.0, f"temperature={self.temperature} is out of range 0..5"),
            (0.0 <= self.plan_temperature <= 5.0, f"plan_temperature={self.plan_temperature} is out of range 0..5"),
            (self.top_k >= 0, f"top_k={self.top_k} must be 0 (off) or positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidSettingError(message)

    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.n)]


@dataclass
class Candidate:
    """One drawn picture and how it was made."""

    index: int
    seed: int
    image: Image.Image
    image_tokens: torch.Tensor | None = None


@dataclass
class Turn:
    """One prompt's way through think -> draw -> reflect -> redraw."""

    prompt: str
    settings: DrawSettings
    plan: Plan | None = None
    candidates: list[Candidate] = field(default_factory=list)
    reflections: list[Reflection | None] = field(default_factory=list)  # one per candidate
    refined: list[Candidate | None] = field(default_factory=list)  # redrawn where a reflection revised
