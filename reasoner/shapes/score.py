"""Score images (or scenes) against prompts, and sum scores up by category."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from reasoner.shapes.detect import Detection, detect
from reasoner.shapes.plan import Scene
from reasoner.shapes.prompts import Unscorable, parse_prompt
from reasoner.shapes.suites import CATEGORIES, SuitePrompt

OVERALL = "overall"


@dataclass(frozen=True)
class ImageScore:
    passed: bool | None  # None: the prompt is unscorable
    category: str  # the suite's category when known, else the prompt's structural one
    scene: Scene | None  # the scene detected (or given); None when the objects form no scene
    reason: str  # one line: why it passed, failed, or cannot be scored
    prompt: str = ""
    detection: Detection | None = None


def _text_and_category(prompt: str | SuitePrompt) -> tuple[str, str | None]:
    if isinstance(prompt, SuitePrompt):
        return prompt.prompt, prompt.category
    return prompt, None


def _score(scene: Scene | None, problem: str | None, prompt, detection=None) -> ImageScore:
    text, category = _text_and_category(prompt)
    spec = parse_prompt(text)
    category = category or spec.category
    if isinstance(spec, Unscorable):
        return ImageScore(None, category, scene, f"unscorable: {spec.reason}", text, detection)
    if scene is None:
        return ImageScore(False, category, None, problem or "no scene", text, detection)
    failure = spec.explain_failure(scene)
    reason = failure or f"satisfied: {spec.requirements.describe()}"
    return ImageScore(failure is None, category, scene, reason, text, detection)


def score_scene(scene: Scene, prompt: str | SuitePrompt) -> ImageScore:
    """Whether a known scene satisfies the prompt."""
    return _score(scene, None, prompt)


def score_image(image: Image.Image | np.ndarray, prompt: str | SuitePrompt) -> ImageScore:
    """Detect the image's scene with the reference detector and check it against the prompt."""
    detection = detect(image)
    return _score(detection.scene, detection.problem, prompt, detection)


def accuracy_by_category(scores: Iterable[ImageScore]) -> dict[str, float]:
    """Fraction passed per category, plus `overall`; unscorable scores are left out."""
    passed: dict[str, list[bool]] = {}
    for score in scores:
        if score.passed is not None:
            passed.setdefault(score.category, []).append(score.passed)
    order = [c for c in CATEGORIES if c in passed] + sorted(c for c in passed if c not in CATEGORIES)
    result = {category: sum(passed[category]) / len(passed[category]) for category in order}
    every = [p for category in order for p in passed[category]]
    if every:
        result[OVERALL] = sum(every) / len(every)
    return result
