"""The words the shapes model learns to write: plans with their reasoning, and reflections.

A plan states what the prompt needs (resolving references such as "the color of the sky") and
then places each object: `the sky is blue; needed: 1 blue circle, nothing else. Plan: blue circle
@ top-left`. A reflection (its form: `reasoner/shapes/reflection.py`) says what the picture
shows, then that it is right or what was needed and the plan to draw instead.
"""

from __future__ import annotations

import random

from reasoner.shapes import (
    IMAGE_IS_RIGHT,
    Scene,
    format_plan,
    make_suite,
    random_scene,
    reflection_text,
    resolve_prompt,
    sample_scene_for,
)


def plan_text(prompt: str, scene: Scene) -> str:
    return f"{resolve_prompt(prompt)}. Plan: {format_plan(scene)}"


def tokenizer_corpus(seed: int = 0, size: int = 4000) -> list[str]:
    """Text in every form the model reads or writes, for training its byte-level BPE."""
    rng = random.Random(seed)
    lines = []
    for suite_prompt in make_suite("train", size, seed) + make_suite("dev", size // 4, seed):
        scene = sample_scene_for(suite_prompt.prompt, rng)
        other = random_scene(rng)
        lines.append(f"User: {suite_prompt.prompt}\nAssistant: {plan_text(suite_prompt.prompt, scene)}")
        lines.append(f"Reflect: {reflection_text(suite_prompt.prompt, other, scene)}")
    lines.append(f"Reflect: {IMAGE_IS_RIGHT}")
    return lines
