"""Scenes and plans: the semantic-level chain of thought of the shapes world.

A plan lists a scene's objects, one clause each, separated by `; `:

    red circle @ top-left; blue square @ middle-center

`parse_plan` reads a plan (tolerant of case and extra whitespace) and raises `PlanError` naming the
fault; `format_plan` writes the canonical form, objects in reading order.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from reasoner.errors import PlanError
from reasoner.shapes.world import (
    CELL_BY_NAME,
    CELLS,
    COLORS,
    COLUMNS,
    GRID_SIZE,
    MAX_OBJECTS,
    MIN_OBJECTS,
    ROWS,
    SHAPES,
    cell_name,
    or_list,
)
from reasoner.worlds import plan_body, plan_reasoning, split_plan_text  # noqa: F401 - re-exported


@dataclass(frozen=True)
class ShapeObject:
    """One filled shape in one cell."""

    color: str
    shape: str
    row: int
    col: int

    def __post_init__(self) -> None:
        # Code builds these from checked input; a bad value here is a bug, not a user fault.
        if self.color not in COLORS:
            raise ValueError(f"unknown color {self.color!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}")
        if not (0 <= self.row < GRID_SIZE and 0 <= self.col < GRID_SIZE):
            raise ValueError(f"cell ({self.row}, {self.col}) is outside the grid")

    @property
    def cell(self) -> str:
        return cell_name(self.row, self.col)

    @property
    def position(self) -> tuple[int, int]:
        return (self.row, self.col)

    def clause(self) -> str:
        """This object as a plan clause: `red circle @ top-left`."""
        return f"{self.color} {self.shape} @ {self.cell}"


def _reading_order(obj: ShapeObject) -> tuple:
    return (obj.row, obj.col, obj.color, obj.shape)


@dataclass(frozen=True)
class Scene:
    """The objects of one image, kept in reading order so that equal scenes compare equal.

    A scene holds at most one object per cell and at most MAX_OBJECTS objects. It may be empty:
    that is what a blank image shows (a plan, though, must name at least one object).
    """

    objects: tuple[ShapeObject, ...] = ()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.objects, key=_reading_order))
        object.__setattr__(self, "objects", ordered)
        if len(ordered) > MAX_OBJECTS:
            raise PlanError(f"{len(ordered)} objects; a scene holds at most {MAX_OBJECTS}")
        for first, second in zip(ordered, ordered[1:]):
            if first.position == second.position:
                raise PlanError(f"two objects in cell {first.cell}")

    @classmethod
    def from_objects(cls, objects: Iterable[ShapeObject]) -> Scene:
        return cls(tuple(objects))

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self):
        return iter(self.objects)

    def object_at(self, row: int, col: int) -> ShapeObject | None:
        return next((o for o in self.objects if o.position == (row, col)), None)


# --- reading plans -----------------------------------------------------------------------------

_CLAUSE = re.compile(r"^(?P<color>[^\s@]+) (?P<shape>[^\s@]+) ?@ ?(?P<cell>[^\s@]+)$")
_CLAUSE_FORM = "COLOR SHAPE @ ROW-COLUMN"

# The `Plan:` marker rule is every world's (reasoner/worlds.py); the shapes world reads plans by it.
extract_plan_text = plan_body


def _normalise_clause(clause: str) -> str:
    clause = " ".join(clause.lower().split())
    return re.sub(r" ?- ?", "-", clause)  # `top - left` reads as `top-left`


def _parse_clause(number: int, clause: str) -> ShapeObject:
    where = f'clause {number} "{clause}"'
    match = _CLAUSE.match(_normalise_clause(clause))
    if match is None:
        raise PlanError(f'{where}: expected "{_CLAUSE_FORM}"')
    color, shape, cell = match["color"], match["shape"], match["cell"]
    if color not in COLORS:
        raise PlanError(f'{where}: unknown color "{color}" (expected {or_list(COLORS)})')
    if shape not in SHAPES:
        raise PlanError(f'{where}: unknown shape "{shape}" (expected {or_list(SHAPES)})')
    if cell not in CELL_BY_NAME:
        raise PlanError(
            f'{where}: unknown cell "{cell}" (expected ROW-COLUMN with ROW {or_list(ROWS)} '
            f"and COLUMN {or_list(COLUMNS)})"
        )
    row, col = CELL_BY_NAME[cell]
    return ShapeObject(color, shape, row, col)


def parse_plan(text: str) -> Scene:
    """The scene a plan describes; `PlanError` names the first fault.

    Accepts any case, extra whitespace, a trailing `;` or `.`, and free text before a `Plan:`
    marker. Faults: empty plan, a clause not of the form COLOR SHAPE @ ROW-COLUMN, an unknown
    color, shape or cell, more than MAX_OBJECTS objects, two objects in one cell.
    """
    body = extract_plan_text(text).rstrip(".").strip()
    if body.endswith(";"):  # a trailing separator is harmless
        body = body[:-1]
    if not body.strip():
        raise PlanError("empty plan")
    clauses = [clause.strip() for clause in body.split(";")]
    objects = []
    for number, clause in enumerate(clauses, start=1):
        if not clause:
            raise PlanError(f"clause {number} is empty")
        objects.append(_parse_clause(number, clause))
    if len(objects) > MAX_OBJECTS:
        raise PlanError(f"{len(objects)} objects; a plan holds at most {MAX_OBJECTS}")
    first_clause_at: dict[tuple[int, int], int] = {}
    for number, obj in enumerate(objects, start=1):
        if obj.position in first_clause_at:
            earlier = first_clause_at[obj.position]
            raise PlanError(f"two objects in cell {obj.cell} (clauses {earlier} and {number})")
        first_clause_at[obj.position] = number
    return Scene.from_objects(objects)


def format_plan(scene: Scene) -> str:
    """The canonical plan of a scene: clauses in reading order joined by `; ` (`` if empty)."""
    return "; ".join(obj.clause() for obj in scene.objects)


def random_scene(rng: random.Random, min_objects: int = MIN_OBJECTS, max_objects: int = MAX_OBJECTS) -> Scene:
    """A uniformly drawn scene: object count, then distinct cells, then color and shape each."""
    if not 0 <= min_objects <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"need 0 <= min_objects <= max_objects <= {MAX_OBJECTS}")
    count = rng.randint(min_objects, max_objects)
    cells = rng.sample(CELLS, count)
    return Scene.from_objects(ShapeObject(rng.choice(list(COLORS)), rng.choice(SHAPES), row, col) for row, col in cells)
