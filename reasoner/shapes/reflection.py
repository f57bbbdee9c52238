"""The form of a shapes model's reflection: what the picture shows, then the verdict.

`I see <scene>; the image is right.` or `I see <scene>; needed: <needs>. Plan: <plan>`. The recipe
writes reflections in this form (`reflection_text`) and the eval reads the reading back out of
the model's own (`reading_in`), so both live here.
"""

from __future__ import annotations

from reasoner.shapes.plan import Scene, format_plan
from reasoner.shapes.prompts import resolve_prompt

IMAGE_IS_RIGHT = "the image is right."
READING_START = "I see "
NEEDED = "; needed: "


def scene_reading(scene: Scene | None) -> str:
    """A scene as a reflection reads it out."""
    return format_plan(scene) if scene is not None and scene.objects else "nothing clear"


def reflection_text(prompt: str, seen: Scene | None, revised: Scene | None) -> str:
    """What the picture shows, then either that it is right (`revised` None) or what was needed
    and the plan to draw instead. Reading the picture out first lets the verdict compare two
    texts, the plan and the reading, instead of being decided at the first token."""
    if revised is None:
        return f"{READING_START}{scene_reading(seen)}; {IMAGE_IS_RIGHT}"
    needed = resolve_prompt(prompt).split("needed: ")[-1]
    return f"{READING_START}{scene_reading(seen)}{NEEDED}{needed}. Plan: {format_plan(revised)}"


def reading_in(reflection: str) -> str | None:
    """The reading a reflection in this form starts with; None for a reflection in another form."""
    if not reflection.startswith(READING_START):
        return None
    return reflection.removeprefix(READING_START).split(NEEDED)[0].removesuffix(f"; {IMAGE_IS_RIGHT}")
