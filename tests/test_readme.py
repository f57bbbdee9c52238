"""The README's Python example runs as written on the bundled model, so it cannot rot."""

import re
from pathlib import Path

import pytest
from PIL import Image

from reasoner.records import Candidate, DrawSettings, Plan, Reflection

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def pipeline_example() -> str:
    """The README's example of the library (its other block drives a running studio)."""
    examples = [block for block in python_blocks(README.read_text()) if "ReasonerPipeline" in block]
    assert len(examples) == 1, f"expected one ```python block using ReasonerPipeline, found {len(examples)}"
    return examples[0]


@pytest.mark.slow  # loads the bundled model
def test_the_readme_python_example_runs_on_the_bundled_model():
    names: dict = {}
    exec(compile(pipeline_example(), str(README), "exec"), names)
    assert isinstance(names["plan"], Plan) and names["plan"].source == "model"
    assert names["pipe"].plan_problem(names["plan"]) is None  # the bundled model writes valid plans
    candidates = names["candidates"]
    assert len(candidates) == 4 and all(
        isinstance(c, Candidate) and isinstance(c.image, Image.Image) for c in candidates
    )
    assert isinstance(names["reflection"], Reflection)
    assert len(names["refined"]) == 1
    # Drawn at the model's own guidance scale (DrawSettings' default): the pictures are right.
    # At scale 5 the same seeds give 0 of 4 (measured), which is why the example names none.
    assert DrawSettings().cfg_scale is None
    scores = [names["pipe"].world.score_picture("a circle the color of the sky", c.image) for c in candidates]
    assert scores.count(1.0) >= 3, scores
