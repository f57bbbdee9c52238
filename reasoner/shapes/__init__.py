"""The shapes world (docs/shapes-world.md, v1): plans, rendering, detection, prompts, scoring and suites."""

from reasoner.shapes.detect import DetectedObject, Detection, detect, detect_scene
from reasoner.shapes.plan import (
    Scene,
    ShapeObject,
    extract_plan_text,
    format_plan,
    parse_plan,
    random_scene,
)
from reasoner.shapes.prompts import (
    PromptSpec,
    Unscorable,
    parse_prompt,
    resolve_prompt,
    sample_scene_for,
)
from reasoner.shapes.reflection import IMAGE_IS_RIGHT, reading_in, reflection_text, scene_reading
from reasoner.shapes.render import draw_object, render_plan, render_scene
from reasoner.shapes.requirements import ObjectGroup, Requirements, plan_with_reasoning
from reasoner.shapes.score import ImageScore, accuracy_by_category, score_image, score_scene
from reasoner.shapes.suites import CATEGORIES, SPLITS, SuitePrompt, make_suite, prompt_split

__all__ = [
    "CATEGORIES",
    "IMAGE_IS_RIGHT",
    "SPLITS",
    "DetectedObject",
    "Detection",
    "ImageScore",
    "ObjectGroup",
    "PromptSpec",
    "Requirements",
    "Scene",
    "ShapeObject",
    "SuitePrompt",
    "Unscorable",
    "accuracy_by_category",
    "detect",
    "detect_scene",
    "draw_object",
    "extract_plan_text",
    "format_plan",
    "make_suite",
    "parse_plan",
    "plan_with_reasoning",
    "parse_prompt",
    "prompt_split",
    "random_scene",
    "reading_in",
    "reflection_text",
    "render_plan",
    "render_scene",
    "resolve_prompt",
    "sample_scene_for",
    "scene_reading",
    "score_image",
    "score_scene",
]
