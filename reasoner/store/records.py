"""What the store takes and gives back, as dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    """Who acts, with which model: every row written records these."""

    who: str  # an anonymous session id, or the user name when auth is on
    model: str
    engine: str


@dataclass(frozen=True)
class NewCandidate:
    seed: int
    png: bytes  # the PNG file, recipe included (images.png_bytes)
    plan: str | None = None  # a varied candidate's own plan (the model's); None: the draw's plan


@dataclass(frozen=True)
class DrawRequest:
    """One draw (or redraw) to record: the plan as drawn, the settings, the pictures."""

    prompt: str
    plan: str | None  # None: drawn from the prompt alone
    settings: dict
    candidates: list[NewCandidate]
    turn_id: int | None = None  # continue this turn (a new one starts if None or the prompt changed)
    reflection_id: int | None = None  # a redraw: the reflection it follows
    reflection_text: str | None = None  # a redraw: the reflection as the person left it (edited or not)


@dataclass(frozen=True)
class CandidateRef:
    id: int
    index: int  # 0-based; people see index + 1
    seed: int
    image_hash: str
    path: str  # relative to the data directory
    plan: str | None = None  # the plan it was drawn from: its own (a varied draw) or the draw's
    plan_source: str | None = None


@dataclass(frozen=True)
class ThinkRef:
    turn_id: int
    plan_id: int


@dataclass(frozen=True)
class DrawRef:
    turn_id: int
    draw_id: int
    plan_id: int | None
    reflection_id: int | None
    candidates: tuple[CandidateRef, ...]


@dataclass(frozen=True)
class ReflectionRef:
    turn_id: int
    reflection_id: int
    revised_plan_id: int | None


@dataclass(frozen=True)
class DrawInfo:
    """A stored draw, enough to reflect on one of its pictures or to show it again."""

    turn_id: int
    draw_id: int
    prompt: str
    plan: str | None
    plan_source: str | None  # "model" or "person"; None without a plan
    settings: dict
    candidates: tuple[CandidateRef, ...]


@dataclass(frozen=True)
class ReflectionInfo:
    turn_id: int
    reflection_id: int
    draw_id: int
    prompt: str
    text: str
    revised_plan: str | None  # the model's revised plan, None if it revised nothing
    drawn_plan: str | None  # the plan of the picture reflected on
    drawn_plan_source: str | None


@dataclass(frozen=True)
class TurnSummary:
    turn_id: int
    created_at: str
    who: str
    model: str
    prompt: str
    plan: str | None  # the latest plan of the turn
    draws: int
    preferences: int


@dataclass(frozen=True)
class TurnState:
    """A turn as it was left, to reopen it in the studio and continue."""

    turn_id: int
    prompt: str
    plan: str | None
    last_draw: DrawInfo | None
    last_reflection: ReflectionInfo | None
    verdicts: list[str] = field(default_factory=list)
