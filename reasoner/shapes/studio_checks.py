"""What the studio tells a person about a shapes plan or reflection, from the project's checker.

The grammar check (`ShapesWorld.check_plan`) says whether a plan can be drawn; these say whether it
is what the prompt asks for (`prompts.parse_prompt` and its requirements), and whether a
reflection that calls a picture right agrees with the detector. Both are None when there is
nothing to say: the prompt is one the checker cannot judge, or the plan does not parse.
"""

from __future__ import annotations

from PIL import Image

from reasoner.errors import PlanError
from reasoner.shapes.plan import parse_plan
from reasoner.shapes.prompts import parse_prompt
from reasoner.shapes.reflection import IMAGE_IS_RIGHT
from reasoner.shapes.score import score_image
from reasoner.worlds import plan_body


def plan_misses_prompt(prompt: str, plan_text: str) -> str | None:
    """Why a valid plan does not meet `prompt` ("found 1 red square ...; the prompt asks for
    2 red squares ..."), or None when it does or the checker cannot tell."""
    spec = parse_prompt(prompt)
    if not spec.scorable:
        return None
    try:
        scene = parse_plan(plan_body(plan_text))
    except PlanError:
        return None
    return spec.explain_failure(scene)


def says_right(reflection_text: str) -> bool:
    return reflection_text.rstrip().endswith(IMAGE_IS_RIGHT)


def reflection_disputed(prompt: str, image: Image.Image, reflection_text: str) -> str | None:
    """When the reflection calls the picture right but the detector finds it does not meet the
    prompt: the checker's one line; None otherwise."""
    if not says_right(reflection_text):
        return None
    score = score_image(image, prompt)
    return score.reason if score.passed is False else None
