"""The typed records that flow from the pipeline to the command line, the UI and the store."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image

from .errors import InvalidSettingError, PlanError
from .worlds import plan_body  # the `Plan:` marker rule, which every world follows

MAX_CANDIDATES = 16
MAX_SEED = 2**31 - 1
MAX_REFLECT_ROUNDS = 4
# The highest first seed: candidate k of a turn draws with `seed + k` and its redraw in reflection
# round r with `seed + k + r * MAX_CANDIDATES` (`redraw_seed`), all within MAX_SEED.
LAST_SEED = MAX_SEED - (1 + MAX_REFLECT_ROUNDS) * MAX_CANDIDATES
# Whole texts, reasoning included: the model reads all of a plan, so an endless one would hold the
# only model slot for minutes. Models write far less (max_plan_tokens, max_reflection_tokens).
MAX_PLAN_CHARS = 2000
MAX_REFLECTION_CHARS = 4000
# Varied candidates sample their plans; greedy plans (temperature 0) would all be one plan, so a
# varied draw at plan temperature 0 samples at this one (T2I-R1's group samples at 1).
VARIED_PLAN_TEMPERATURE = 1.0


def check_text_length(text: str, what: str, limit: int) -> None:
    if len(text) > limit:
        raise PlanError(f"the {what} is {len(text)} characters long; the limit is {limit}")


def check_reflect_rounds(rounds: int) -> int:
    if not 1 <= rounds <= MAX_REFLECT_ROUNDS:
        raise InvalidSettingError(f"reflect_rounds={rounds} is out of range 1..{MAX_REFLECT_ROUNDS}")
    return rounds


def redraw_seed(candidate_seed: int, round_number: int) -> int:
    """The seed of a candidate's redraw in reflection round `round_number` (1, 2, ...): past every
    first-draw seed of its turn and every earlier round's, so a redraw of an unchanged plan differs.
    Round 0 is the first draw: the candidate's own seed."""
    return candidate_seed + round_number * MAX_CANDIDATES


@dataclass(frozen=True)
class Plan:
    """A semantic plan: free text, perhaps with reasoning before a final `Plan:` part."""

    text: str
    source: str = "model"  # "model" when the model wrote it, "person" when someone edited it

    def __post_init__(self):
        check_text_length(self.text, "plan", MAX_PLAN_CHARS)

    @property
    def body(self) -> str:
        return plan_body(self.text)


@dataclass(frozen=True)
class Reflection:
    """What the model said about one of its pictures, and the plan it would draw instead."""

    text: str
    revised_plan: Plan | None  # None: the model found nothing to change
    source: str = "model"

    def __post_init__(self):
        check_text_length(self.text, "reflection", MAX_REFLECTION_CHARS)

    @property
    def needs_revision(self) -> bool:
        return self.revised_plan is not None


@dataclass(frozen=True)
class DrawSettings:
    """How candidates are drawn. Candidate k gets seed `seed + k`, so each one reproduces alone;
    its redraw in a turn's reflection round r uses `redraw_seed(seed + k, r)`. `cfg_scale` None
    means the model's own guidance scale, which the pipeline fills in before drawing (the scale
    that suits one model can ruin another's pictures: 5 does the bundled shapes model's)."""

    n: int = 4
    seed: int = 0
    cfg_scale: float | None = None  # None: the model's own (`ModelInfo.default_cfg_scale`)
    temperature: float = 1.0  # image tokens; 0 draws greedily
    top_k: int = 0  # 0 keeps every token
    plan_temperature: float = 0.0  # plans and reflections; 0 writes greedily
    vary_plans: bool = False  # each candidate thinks its own plan (seed: its own) and draws from it

    def __post_init__(self):
        if self.vary_plans and self.plan_temperature == 0:
            object.__setattr__(self, "plan_temperature", VARIED_PLAN_TEMPERATURE)
        checks = [
            (1 <= self.n <= MAX_CANDIDATES, f"n={self.n} is out of range: draw 1 to {MAX_CANDIDATES} candidates"),
            (0 <= self.seed <= LAST_SEED, f"seed={self.seed} is out of range 0..{LAST_SEED}"),
            (
                self.cfg_scale is None or 1.0 <= self.cfg_scale <= 20.0,
                f"cfg_scale={self.cfg_scale} is out of range 1..20",
            ),
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
    plan: Plan | None = None  # a varied candidate's own plan; None: the draw's plan (or none)


@dataclass
class ReflectionRound:
    """One look at a picture: what the model said, and what it drew again and from which plan
    (both None: it found the picture right, which ends a candidate's rounds)."""

    reflection: Reflection
    redrawn: Candidate | None
    plan: Plan | None  # the plan `redrawn` was drawn from (`ReasonerPipeline.plan_to_redraw`)


@dataclass
class Turn:
    """One prompt's way through think -> draw -> reflect -> redraw (-> reflect -> redraw ...)."""

    prompt: str
    settings: DrawSettings
    plan: Plan | None = None
    candidates: list[Candidate] = field(default_factory=list)
    rounds: list[list[ReflectionRound]] = field(
        default_factory=list
    )  # per candidate, in order; empty unless the turn reflected

    def final_round(self, k: int) -> ReflectionRound:
        """The round behind candidate k's final picture: the last one that redrew it, or the first
        look when every look found the picture right."""
        rounds = self.rounds[k]
        return next((r for r in reversed(rounds) if r.redrawn is not None), rounds[0])

    @property
    def reflections(self) -> list[Reflection]:
        """Per candidate, the reflection behind its final picture (`final_round`)."""
        return [self.final_round(k).reflection for k in range(len(self.rounds))]

    @property
    def refined(self) -> list[Candidate | None]:
        """Per candidate, its final redrawn picture; None where no reflection revised the plan."""
        return [self.final_round(k).redrawn for k in range(len(self.rounds))]
