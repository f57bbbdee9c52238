"""The shapes world behind the pipeline's `World` interface (reasoner/worlds.py).

Plans must follow the clause grammar (`parse_plan`); a plan with no reasoning is read by the model
with the reasoning it implies; pictures are scored by the reference detector against the prompt.
The rules themselves are in docs/shapes-world.md.
"""

from __future__ import annotations

from PIL import Image

from reasoner.errors import PlanError
from reasoner.shapes.plan import parse_plan
from reasoner.shapes.requirements import plan_with_reasoning
from reasoner.shapes.score import score_image
from reasoner.worlds import plan_body, plan_reasoning


class ShapesWorld:
    name = "shapes"
    description = "plans are checked against the shapes world's grammar (docs/shapes-world.md)"

    def check_plan(self, plan_text: str) -> str | None:
        try:
            parse_plan(plan_body(plan_text))
        except PlanError as error:
            return str(error)
        return None

    def model_text(self, plan_text: str) -> str:
        """A plan with no reasoning before `Plan:` (a bare list of clauses, as people write them,
        or a reflection's revision) gets the reasoning it implies, in the form the model writes:
        it learned to read plans that way and follows a bare list far less well (random plans:
        0.27 of 48 bare, 0.92 of 400 so). Anything else, and a plan that does not parse, is read
        as written."""
        if plan_reasoning(plan_text):
            return plan_text
        try:
            return plan_with_reasoning(parse_plan(plan_body(plan_text)))
        except PlanError:
            return plan_text

    def score_picture(self, prompt: str, image: Image.Image) -> float | None:
        """1.0 when the detected scene meets every requirement of the prompt and holds nothing
        else, 0.0 when it does not, None when the prompt uses words the world does not know."""
        passed = score_image(image, prompt).passed
        return None if passed is None else float(passed)
