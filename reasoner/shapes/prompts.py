"""Read prompts of the shapes world into requirements a scene can be checked against.

The grammar (any case; commas and a final `.` ignored):

    prompt   := group REL group | group ("and" group)* [LAYOUT]
    group    := NUMBER body [PLACE] | "as many" body "as" NUMBER-REFERENCE [PLACE]
    body     := [COLOR | REF-colored] (SHAPE[s] | shape[s] [with FEATURE]) [the color of REF | colored like REF]
    REL      := left of | right of | to the left of | to the right of | above | below
    PLACE    := in the center | in the CORNER [corner]
    LAYOUT   := in a row across the ROW | down the COLUMN [side] | in opposite corners

`a red shape` leaves the shape free; a layout takes exactly as many objects as it names cells.
A prompt with a word outside this vocabulary, or that no scene could satisfy, is `Unscorable`
(a real model takes any text; the checker just cannot judge it), never an exception.

Categories: `parse_prompt` can only see structure, so it reports one of single, two, counting,
position, placement, reasoning. The `colors` and `attribution` prompts are written exactly like
`single` and `two` ones; which of the pair a prompt belongs to is decided by the suite generator
that wrote it and recorded in its `SuitePrompt` (see suites.py).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from reasoner.errors import InvalidPromptError
from reasoner.shapes.plan import Scene
from reasoner.shapes.references import (
    COLOR_REFERENCE_BY_TOKEN,
    LAYOUTS,
    MULTIWORD_REFERENCE_NAMES,
    NUMBER_REFERENCES,
    NUMBER_WORDS,
    SHAPE_REFERENCES,
    Layout,
)
from reasoner.shapes.requirements import ObjectGroup, Requirements, cells_text
from reasoner.shapes.world import CELL_BY_NAME, CENTER_CELL, COLORS, CORNER_CELLS, MAX_OBJECTS, SHAPES, cell_name

STRUCTURAL_CATEGORIES = ("single", "two", "counting", "position", "placement", "reasoning")

_RELATION_PHRASES = {"left of": "left of", "right of": "right of", "above": "above", "below": "below"}
_RELATION_PHRASES |= {"to the left of": "left of", "to the right of": "right of"}
# Column layouts read with or without the final `side`.
_LAYOUT_PHRASES = {layout.phrase: layout for layout in LAYOUTS} | {
    layout.phrase.removesuffix(" side"): layout for layout in LAYOUTS if layout.phrase.endswith(" side")
}
_CORNER_NAMES = {cell_name(*cell): cell for cell in CORNER_CELLS}
_DETERMINERS = ("the", "a", "an")


def _vocabulary() -> frozenset[str]:
    phrases = [
        *NUMBER_WORDS,
        *_RELATION_PHRASES,
        *_LAYOUT_PHRASES,
        *(ref.phrase for ref in NUMBER_REFERENCES),
        *(ref.feature for ref in SHAPE_REFERENCES),
        "and as many shape shapes with the color of colored like in center corner",
    ]
    words = {word for phrase in phrases for word in phrase.split()}
    words |= set(COLORS) | set(SHAPES) | {shape + "s" for shape in SHAPES} | set(CELL_BY_NAME)
    words |= set(COLOR_REFERENCE_BY_TOKEN)
    words |= {name + "-colored" for name in (*COLORS, *COLOR_REFERENCE_BY_TOKEN)}
    return frozenset(words)


VOCABULARY = _vocabulary()


@dataclass(frozen=True)
class PromptSpec:
    """A prompt understood: what a scene must hold to satisfy it."""

    text: str
    category: str  # structural: one of STRUCTURAL_CATEGORIES
    requirements: Requirements
    resolutions: tuple[str, ...]  # each reference resolved: `the sky is blue`

    scorable = True

    def is_satisfied_by(self, scene: Scene) -> bool:
        return self.requirements.is_satisfied_by(scene)

    def explain_failure(self, scene: Scene) -> str | None:
        return self.requirements.explain_failure(scene)


@dataclass(frozen=True)
class Unscorable:
    """A prompt the checker cannot judge, and why."""

    text: str
    reason: str

    scorable = False
    category = "unscorable"


class _NotUnderstood(Exception):
    """Internal: the words are known but do not make a prompt of this grammar."""


def _tokens(text: str) -> list[str]:
    text = re.sub(r"[.!?]+$", "", text.lower().replace(",", " ").strip())
    for name in MULTIWORD_REFERENCE_NAMES:  # `egg yolk` -> one token `egg-yolk`
        text = re.sub(r"\b" + r"[\s-]+".join(name.split()) + r"\b", name.replace(" ", "-"), text)
    text = re.sub(r"\b(top|middle|bottom)[\s-]+(left|center|right)\b", r"\1-\2", text)
    return text.split()


class _Parser:
    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.pos = 0
        self.resolutions: list[str] = []
        self.uses_reference = False  # any reasoning reference makes the category `reasoning`

    # --- token helpers -----------------------------------------------------------------------

    def take(self, phrase: str) -> bool:
        words = phrase.split()
        if self.tokens[self.pos : self.pos + len(words)] == words:
            self.pos += len(words)
            return True
        return False

    def take_any(self, phrases) -> str | None:
        # Longest first, so `a pair of` wins over `a`.
        return next((p for p in sorted(phrases, key=len, reverse=True) if self.take(p)), None)

    def next_word(self, wanted: str) -> str:
        if self.pos >= len(self.tokens):
            raise _NotUnderstood(f"ends where {wanted} should follow")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def resolved(self, text: str, reference: bool = True) -> None:
        self.uses_reference |= reference
        if text not in self.resolutions:
            self.resolutions.append(text)

    # --- grammar -----------------------------------------------------------------------------

    def prompt(self) -> tuple[tuple[ObjectGroup, ...], str | None, Layout | None]:
        groups, relation, layout = [self.group()], None, None
        phrase = self.take_any(_RELATION_PHRASES)
        if phrase:
            relation = _RELATION_PHRASES[phrase]
            groups.append(self.group())
        else:
            while self.take("and"):
                groups.append(self.group())
            phrase = self.take_any(_LAYOUT_PHRASES)
            if phrase:
                layout = _LAYOUT_PHRASES[phrase]
                options = ", or ".join(cells_text(cells) for cells in layout.alternatives)
                self.resolved(f"{layout.phrase} means {options}")
        if self.pos < len(self.tokens):
            raise _NotUnderstood(f'cannot read "{" ".join(self.tokens[self.pos :])}"')
        return tuple(groups), relation, layout

    def group(self) -> ObjectGroup:
        if self.take("as many"):
            color, shape = self.body()
            if not self.take("as"):
                raise _NotUnderstood('"as many ..." needs "as" and a number reference')
            count = self.number_reference()
        else:
            number = self.take_any(NUMBER_WORDS)
            if number is None:
                raise _NotUnderstood(f'expected a number (one, a, two, ...) at "{self._rest()}"')
            count = NUMBER_WORDS[number]
            color, shape = self.body()
        return ObjectGroup(count, color, shape, self.place())

    def body(self) -> tuple[str | None, str | None]:
        color = self.color_adjective()
        shape = self.noun()
        if self.take("the color of") or self.take("colored like"):
            self.take_any(_DETERMINERS)
            referred = self.color_reference(self.next_word("a thing with a color"))
            if color is not None and referred != color:
                raise _NotUnderstood(f"one object named both {color} and {referred}")
            color = referred
        return color, shape

    def color_adjective(self) -> str | None:
        word = self.tokens[self.pos] if self.pos < len(self.tokens) else ""
        if word in COLORS:
            self.pos += 1
            return word
        if word.endswith("-colored"):
            self.pos += 1
            name = word.removesuffix("-colored")
            return name if name in COLORS else self.color_reference(name)
        return None

    def color_reference(self, token: str) -> str:
        reference = COLOR_REFERENCE_BY_TOKEN.get(token)
        if reference is None:
            raise _NotUnderstood(f'"{token}" is no thing of known color')
        self.resolved(f"{reference.phrase} is {reference.color}")
        return reference.color

    def noun(self) -> str | None:
        word = self.next_word("a shape")
        if word in SHAPES or (word.endswith("s") and word[:-1] in SHAPES):
            return word.removesuffix("s")
        if word not in ("shape", "shapes"):
            raise _NotUnderstood(f'expected a shape, got "{word}"')
        if not self.take("with"):
            return None  # `a red shape`: any shape
        for reference in SHAPE_REFERENCES:
            if self.take(reference.feature):
                self.resolved(f"a shape with {reference.feature} is a {reference.shape}")
                return reference.shape
        raise _NotUnderstood(f'unknown shape feature "{self._rest()}"')

    def number_reference(self) -> int:
        for reference in NUMBER_REFERENCES:
            if self.take(reference.phrase):
                self.resolved(reference.explanation)
                return reference.count
        raise _NotUnderstood(f'unknown number reference "{self._rest()}"')

    def place(self) -> frozenset[tuple[int, int]] | None:
        if self.take("in the center"):
            self.resolved(f"the center is {cell_name(*CENTER_CELL)}", reference=False)
            return frozenset({CENTER_CELL})
        corner = next((n for n in _CORNER_NAMES if self.tokens[self.pos : self.pos + 3] == ["in", "the", n]), None)
        if corner is None:
            return None
        self.pos += 3
        self.take("corner")
        return frozenset({_CORNER_NAMES[corner]})

    def _rest(self) -> str:
        return " ".join(self.tokens[self.pos :])


def _structural_category(parser: _Parser, groups, relation) -> str:
    if parser.uses_reference:
        return "reasoning"
    if relation is not None:
        return "position"
    if any(group.cells is not None for group in groups):
        return "placement"
    if len(groups) >= 2:
        return "two"
    return "counting" if groups[0].count >= 2 else "single"


def parse_prompt(text: str) -> PromptSpec | Unscorable:
    """What a prompt asks for, or `Unscorable` (with a reason) when the checker cannot judge it.

    Raises `InvalidPromptError` only for an empty prompt.
    """
    tokens = _tokens(text)
    if not tokens:
        raise InvalidPromptError("empty prompt")
    unknown = next((token for token in tokens if token not in VOCABULARY), None)
    if unknown is not None:
        return Unscorable(text, f'unknown word "{unknown}"')
    parser = _Parser(tokens)
    try:
        groups, relation, layout = parser.prompt()
    except _NotUnderstood as fault:
        return Unscorable(text, str(fault))
    requirements = Requirements(groups, relation, layout)
    total = requirements.total
    if total > MAX_OBJECTS:
        return Unscorable(text, f"asks for {total} objects; a scene holds at most {MAX_OBJECTS}")
    if layout is not None and layout.size != total:
        return Unscorable(text, f'"{layout.phrase}" takes {layout.size} objects, not {total}')
    if not requirements.is_feasible():
        return Unscorable(text, "no scene can satisfy it")
    category = _structural_category(parser, groups, relation)
    return PromptSpec(text, category, requirements, tuple(parser.resolutions))


def resolve_prompt(text: str) -> str:
    """A plain statement of what the prompt means, as a plan's reasoning may state it.

    `a circle the color of the sky` -> `the sky is blue; needed: 1 blue circle, nothing else`.
    """
    spec = parse_prompt(text)
    if isinstance(spec, Unscorable):
        return f"unscorable: {spec.reason}"
    return "; ".join([*spec.resolutions, f"needed: {spec.requirements.describe()}"])


def sample_scene_for(spec: PromptSpec | str, rng: random.Random) -> Scene:
    """A random scene that satisfies the prompt (for training data)."""
    if isinstance(spec, str):
        spec = parse_prompt(spec)
    if isinstance(spec, Unscorable):
        raise ValueError(f"no scene for an unscorable prompt ({spec.reason}): {spec.text!r}")
    return spec.requirements.sample_scene(rng)
