"""The world knowledge a prompt may lean on (docs/shapes-world.md, "Prompts"; the full list).

The prompt parser and the suite generator both read these tables, so a reference is either known
to both or to neither.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasoner.shapes.world import CELLS, COLUMNS, ROWS


@dataclass(frozen=True)
class ColorReference:
    """A thing whose color everyone knows: `the sky` is blue."""

    name: str  # as written in prompts: `egg yolk`, `fire truck`
    phrase: str  # with its natural determiner: `the sky`, `an egg yolk`, `blood`
    color: str

    @property
    def token(self) -> str:
        """One-word form the parser reads (`egg-yolk`): multi-word names are joined by `-`."""
        return self.name.replace(" ", "-")


COLOR_REFERENCES: tuple[ColorReference, ...] = (
    ColorReference("sky", "the sky", "blue"),
    ColorReference("sea", "the sea", "blue"),
    ColorReference("ocean", "the ocean", "blue"),
    ColorReference("blueberry", "a blueberry", "blue"),
    ColorReference("grass", "grass", "green"),
    ColorReference("leaf", "a leaf", "green"),
    ColorReference("frog", "a frog", "green"),
    ColorReference("lime", "a lime", "green"),
    ColorReference("sun", "the sun", "yellow"),
    ColorReference("banana", "a banana", "yellow"),
    ColorReference("lemon", "a lemon", "yellow"),
    ColorReference("egg yolk", "an egg yolk", "yellow"),
    ColorReference("blood", "blood", "red"),
    ColorReference("strawberry", "a strawberry", "red"),
    ColorReference("tomato", "a tomato", "red"),
    ColorReference("fire truck", "a fire truck", "red"),
)
COLOR_REFERENCE_BY_TOKEN = {ref.token: ref for ref in COLOR_REFERENCES}
MULTIWORD_REFERENCE_NAMES = tuple(ref.name for ref in COLOR_REFERENCES if " " in ref.name)

# The three ways a prompt may name a color by reference, as templates over a ColorReference.
COLOR_REFERENCE_FORMS = ("the color of {phrase}", "colored like {phrase}", "{name}-colored")


@dataclass(frozen=True)
class ShapeReference:
    """`a shape with no corners` is a circle."""

    feature: str  # what follows `a shape with`
    shape: str


SHAPE_REFERENCES: tuple[ShapeReference, ...] = (
    ShapeReference("no corners", "circle"),
    ShapeReference("three corners", "triangle"),
    ShapeReference("three sides", "triangle"),
    ShapeReference("four equal sides", "square"),
    ShapeReference("four corners", "square"),
)
SHAPE_REFERENCE_BY_FEATURE = {ref.feature: ref for ref in SHAPE_REFERENCES}


@dataclass(frozen=True)
class NumberReference:
    """`as many X as a triangle has corners` is 3."""

    phrase: str  # what follows `as many X as`
    count: int
    explanation: str  # how a plan states the resolution


NUMBER_REFERENCES: tuple[NumberReference, ...] = (
    NumberReference("a triangle has corners", 3, "a triangle has 3 corners"),
    NumberReference("a square has sides", 4, "a square has 4 sides"),
    NumberReference("a pair of shoes", 2, "a pair of shoes is 2"),
)
NUMBER_REFERENCE_BY_PHRASE = {ref.phrase: ref for ref in NUMBER_REFERENCES}

# Plain number words. `a pair of` is three words; the parser reads it before `a`.
NUMBER_WORDS = {"one": 1, "a": 1, "an": 1, "two": 2, "a pair of": 2, "three": 3, "four": 4}


@dataclass(frozen=True)
class Layout:
    """Where a prompt's objects go together: the set of their cells must be one alternative."""

    phrase: str  # as written in prompts
    alternatives: tuple[frozenset[tuple[int, int]], ...]

    @property
    def size(self) -> int:
        return len(self.alternatives[0])


def _row_layout(row: int) -> Layout:
    cells = frozenset((r, c) for r, c in CELLS if r == row)
    return Layout(f"in a row across the {ROWS[row]}", (cells,))


def _column_layout(col: int) -> Layout:
    cells = frozenset((r, c) for r, c in CELLS if c == col)
    return Layout(f"down the {COLUMNS[col]} side", (cells,))


LAYOUTS: tuple[Layout, ...] = (
    *(_row_layout(row) for row in range(len(ROWS))),
    *(_column_layout(col) for col in range(len(COLUMNS))),
    Layout("in opposite corners", (frozenset({(0, 0), (2, 2)}), frozenset({(0, 2), (2, 0)}))),
)
LAYOUT_BY_PHRASE = {layout.phrase: layout for layout in LAYOUTS}
