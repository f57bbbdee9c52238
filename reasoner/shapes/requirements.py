"""What a prompt asks of a scene, and how to check it or draw a scene that meets it.

A prompt becomes groups of objects ("2 red circles", "1 square of any color"), optionally a
relation between the first two groups ("left of") or a layout for all objects together ("in a row
across the top"). A scene satisfies the requirements when its objects can be shared out among
the groups, each group getting exactly its count of matching objects, so that the relation and
layout hold, and no object is left over.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache

from reasoner.shapes.plan import Scene, ShapeObject, format_plan
from reasoner.shapes.references import Layout
from reasoner.shapes.world import CELLS, COLORS, SHAPES, cell_name

# `a R b`: how object a must sit relative to object b (rows grow downwards).
RELATIONS = {
    "left of": lambda a, b: a.col < b.col,
    "right of": lambda a, b: a.col > b.col,
    "above": lambda a, b: a.row < b.row,
    "below": lambda a, b: a.row > b.row,
}


def cells_text(cells) -> str:
    names = [cell_name(r, c) for r, c in sorted(cells)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class ObjectGroup:
    """`count` objects of this color and shape (None: any), in `cells` when given."""

    count: int
    color: str | None = None
    shape: str | None = None
    cells: frozenset[tuple[int, int]] | None = None

    def matches(self, obj: ShapeObject) -> bool:
        return (
            (self.color is None or obj.color == self.color)
            and (self.shape is None or obj.shape == self.shape)
            and (self.cells is None or obj.position in self.cells)
        )

    def describe(self) -> str:
        noun = (self.shape or "shape") + ("s" if self.count > 1 else "")
        text = " ".join(word for word in (str(self.count), self.color, noun) if word)
        free = [word for word, value in (("color", self.color), ("shape", self.shape)) if value is None]
        if free:
            text += " of any " + " and ".join(free)
        if self.cells is not None:
            text += f" at {cells_text(self.cells)}"
        return text


@dataclass(frozen=True)
class Requirements:
    groups: tuple[ObjectGroup, ...]
    relation: str | None = None  # holds from every object of groups[0] to every one of groups[1]
    layout: Layout | None = None

    @property
    def total(self) -> int:
        return sum(group.count for group in self.groups)

    def describe(self) -> str:
        """`1 red circle left of 1 blue square, nothing else`."""
        joiner = f" {self.relation} " if self.relation else " and "
        text = joiner.join(group.describe() for group in self.groups)
        if self.layout is not None:
            options = ", or ".join(cells_text(cells) for cells in self.layout.alternatives)
            text += f", together at {options}"
        return text + ", nothing else"

    # --- checking ----------------------------------------------------------------------------

    def _attribute_matches(self, objects: tuple[ShapeObject, ...]):
        """Every way to hand the objects to groups so that each group gets its count of matches."""
        for owners in itertools.product(range(len(self.groups)), repeat=len(objects)):
            shares = [[] for _ in self.groups]
            for obj, owner in zip(objects, owners):
                shares[owner].append(obj)
            if all(
                len(share) == group.count and all(group.matches(o) for o in share)
                for group, share in zip(self.groups, shares)
            ):
                yield shares

    def _relation_holds(self, shares) -> bool:
        if self.relation is None:
            return True
        holds = RELATIONS[self.relation]
        return all(holds(a, b) for a in shares[0] for b in shares[1])

    def explain_failure(self, scene: Scene) -> str | None:
        """Why the scene fails these requirements, in one line; None when it satisfies them."""
        objects = scene.objects
        if len(objects) != self.total:
            return f"{len(objects)} objects found; the prompt asks for {self.total}"
        if self.layout is not None:
            cells = frozenset(obj.position for obj in objects)
            if cells not in self.layout.alternatives:
                return f"objects at {cells_text(cells)}, not {self.layout.phrase}"
        shares_found = list(self._attribute_matches(objects))
        found = ", ".join(f"{o.color} {o.shape} @ {o.cell}" for o in objects) or "nothing"
        if not shares_found:
            wanted = " and ".join(group.describe() for group in self.groups)
            return f"found {found}; the prompt asks for {wanted}"
        if not any(self._relation_holds(shares) for shares in shares_found):
            return f"found {found}; not {self.relation} as asked"
        return None

    def is_satisfied_by(self, scene: Scene) -> bool:
        return self.explain_failure(scene) is None

    # --- sampling ----------------------------------------------------------------------------

    @property
    def constrains_cells(self) -> bool:
        return (
            self.relation is not None
            or self.layout is not None
            or any(group.cells is not None for group in self.groups)
        )

    def is_feasible(self) -> bool:
        """Whether any scene satisfies these requirements (at most MAX_OBJECTS is checked apart)."""
        if self.layout is not None and self.layout.size != self.total:
            return False
        return not self.constrains_cells or bool(_placements(self))

    def _share_out(self, cells: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """Consecutive runs of `cells`, one run of its count per group."""
        starts = list(itertools.accumulate((group.count for group in self.groups), initial=0))
        return [cells[start:end] for start, end in zip(starts, starts[1:])]

    def sample_scene(self, rng: random.Random) -> Scene:
        """A random scene that satisfies these requirements: free attributes and cells are drawn."""
        if self.layout is not None:  # the layout's cells, shared out among the groups at random
            cells = rng.sample(sorted(rng.choice(self.layout.alternatives)), self.total)
            placement = self._share_out(cells)
        elif self.constrains_cells:
            placement = rng.choice(_placements(self))
        else:
            placement = self._share_out(rng.sample(CELLS, self.total))
        objects = []
        for group, group_cells in zip(self.groups, placement):
            for row, col in group_cells:
                color = group.color or rng.choice(list(COLORS))
                shape = group.shape or rng.choice(SHAPES)
                objects.append(ShapeObject(color, shape, row, col))
        return Scene.from_objects(objects)


@lru_cache(maxsize=4096)
def _placements(requirements: Requirements) -> tuple[tuple[tuple[tuple[int, int], ...], ...], ...]:
    """Every choice of cells (one tuple of cells per group) meeting the cell constraints.

    Small by construction: at most 4 objects on 9 cells, groups choosing combinations.
    """
    results = []

    def extend(chosen, used, index):
        if index == len(requirements.groups):
            if requirements.relation is not None:
                holds = RELATIONS[requirements.relation]
                if not all(holds(_At(*a), _At(*b)) for a in chosen[0] for b in chosen[1]):
                    return
            results.append(tuple(chosen))
            return
        group = requirements.groups[index]
        free = [cell for cell in CELLS if cell not in used and (group.cells is None or cell in group.cells)]
        for combo in itertools.combinations(free, group.count):
            extend(chosen + [combo], used | set(combo), index + 1)

    extend([], set(), 0)
    return tuple(results)


@dataclass(frozen=True)
class _At:
    """Just a cell, for checking a relation before any object exists."""

    row: int
    col: int


def plan_with_reasoning(scene: Scene) -> str:
    """`scene`'s plan in the form a shapes model writes, its reasoning stated from the plan itself:
    `needed: 1 red circle at top-left, nothing else. Plan: red circle @ top-left`. This is how a
    person's bare plan is given to the model, which learned to read plans in this form."""
    groups = tuple(ObjectGroup(1, obj.color, obj.shape, frozenset({obj.position})) for obj in scene.objects)
    return f"needed: {Requirements(groups).describe()}. Plan: {format_plan(scene)}"
