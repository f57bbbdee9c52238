"""The reflection rounds, one loop for the pipeline and the eval.

Round r looks at every picture still in play (the first drawing, or round r-1's redraw); a
reflection that finds its picture right ends that picture's chain, one that revises it gets a
redraw (from the revision, with a seed of its own), which round r+1 looks at; at most `rounds`
looks. What a look and a redraw are is the caller's: the pipeline looks at one candidate's chain
through its own `reflect` and `draw`, the eval at every prompt's at once through the batched
token loops (`reasoner/batched.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .records import Reflection


@dataclass
class Look:
    """One look at a picture: the reflection, and what it redrew from which plan (None: right)."""

    reflection: Reflection
    redrawn: Any = None  # the caller's picture (a Candidate, an image)
    plan: Any = None  # the caller's plan (a Plan, a text)


# look(indices, plans, pictures, round_number) -> one Reflection per index, on plans[i] / pictures[i]
LookAt = Callable[[list[int], list, list, int], list[Reflection]]
# redraw(indices, reflections, plans, round_number) -> one (plan, picture) per index: what it drew
Redraw = Callable[[list[int], list[Reflection], list, int], list[tuple[Any, Any]]]


def run_reflection_rounds(
    plans: Sequence, pictures: Sequence, rounds: int, look: LookAt, redraw: Redraw
) -> list[list[Look]]:
    """Each picture's looks, in order, pictures[i] drawn from plans[i]."""
    plans, pictures = list(plans), list(pictures)
    looks: list[list[Look]] = [[] for _ in pictures]
    active = list(range(len(pictures)))
    for round_number in range(1, rounds + 1):
        if not active:
            break
        reflections = look(active, plans, pictures, round_number)
        redo = [(i, reflection) for i, reflection in zip(active, reflections) if reflection.needs_revision]
        for i, reflection in zip(active, reflections):
            if not reflection.needs_revision:
                looks[i].append(Look(reflection))
        if not redo:
            break
        drawn = redraw([i for i, _ in redo], [reflection for _, reflection in redo], plans, round_number)
        for (i, reflection), (plan, picture) in zip(redo, drawn):
            plans[i], pictures[i] = plan, picture
            looks[i].append(Look(reflection, picture, plan))
        active = [i for i, _ in redo]
    return looks


def last_picture(first, chain: list[Look]):
    """The picture a chain ends at: its last redraw, or `first` when nothing was redrawn."""
    return next((look.redrawn for look in reversed(chain) if look.redrawn is not None), first)
