"""Reflection data: the model's own pictures, judged by the shapes checker, plus synthetic slips.

The model is sampled on training prompts exactly as the engine would sample it (plan, then
picture with guidance). Each picture is scored; every reflection says what the picture shows,
then a right one that "the image is right.", a wrong one what was needed and the plan to draw
instead (`reasoner/shapes/reflection.py`). Synthetic pictures (a correct scene with one object
changed, passed through the VQ so they look like decoded pictures) add mistakes of every kind.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
import torch

from reasoner.backends.janus import JanusBackend
from reasoner.batched import as_arrays, draw_pictures, write_plans
from reasoner.errors import PlanError
from reasoner.shapes import (
    Scene,
    extract_plan_text,
    make_suite,
    parse_plan,
    reflection_text,
    sample_scene_for,
    score_image,
    score_scene,
)
from reasoner.shapes.world import COLORS, SHAPES

from .sequences import Batch, collate, reflect
from .texts import plan_text
from .vq import encode_tokens, images_from_pixels, pixels_from_images


@dataclass
class ReflectExample:
    prompt: str
    plan: str
    picture: np.ndarray  # (H, W, 3) uint8
    reflection: str


def own_reflections(
    backend: JanusBackend, prompts: list[str], seed: int, cfg_scale: float, temperature: float, batch_size: int
) -> tuple[list[ReflectExample], float]:
    """The model's own think-then-draw outputs, each with the reflection the checker supports."""
    rng = random.Random(seed)
    seeds = [seed + i for i in range(len(prompts))]
    plans = write_plans(backend, prompts, seeds, 0.0, batch_size)
    pictures = as_arrays(draw_pictures(backend, prompts, plans, seeds, cfg_scale, temperature, batch_size))
    examples, passed = [], 0
    for prompt, plan, picture in zip(prompts, plans, pictures):
        score = score_image(picture, prompt)
        if score.passed:
            passed += 1
            examples.append(ReflectExample(prompt, plan, picture, reflection_text(prompt, score.scene, None)))
            continue
        right_plan = plan_scene_if_right(plan, prompt)
        revised = another_layout(prompt, right_plan, rng) if right_plan else sample_scene_for(prompt, rng)
        examples.append(ReflectExample(prompt, plan, picture, reflection_text(prompt, score.scene, revised)))
    return examples, passed / max(1, len(prompts))


def plan_scene_if_right(plan: str, prompt: str) -> Scene | None:
    try:
        scene = parse_plan(extract_plan_text(plan))
    except PlanError:
        return None
    return scene if score_scene(scene, prompt).passed else None


def another_layout(prompt: str, drawn: Scene, rng: random.Random, tries: int = 12) -> Scene:
    """A scene that satisfies `prompt` other than `drawn`, or `drawn` where the prompt allows no other.

    A right plan drawn wrong is revised to another layout: a slip that one layout invites (the
    bundled model drew "as many red squares as a square has sides" as circles in every redraw of
    its plan) is not repeated by a redraw of the same plan with a fresh seed."""
    for _ in range(tries):
        scene = sample_scene_for(prompt, rng)
        if scene != drawn:
            return scene
    return drawn


def perturb(scene: Scene, rng: random.Random) -> Scene:
    """The scene with one slip: a color, a shape or a cell changed, an object dropped or added."""
    objects = list(scene.objects)
    free = [(r, c) for r in range(3) for c in range(3) if scene.object_at(r, c) is None]
    moves = ["color", "shape", "move"] + (["drop"] if len(objects) > 1 else []) + (["add"] if len(objects) < 4 else [])
    move, k = rng.choice(moves), rng.randrange(len(objects))
    colors, shapes = list(COLORS), list(SHAPES)
    if move == "color":
        objects[k] = replace(objects[k], color=rng.choice([c for c in colors if c != objects[k].color]))
    elif move == "shape":
        objects[k] = replace(objects[k], shape=rng.choice([s for s in shapes if s != objects[k].shape]))
    elif move == "move" and free:
        row, col = rng.choice(free)
        objects[k] = replace(objects[k], row=row, col=col)
    elif move == "drop":
        objects.pop(k)
    elif move == "add" and free:
        row, col = rng.choice(free)
        objects.append(replace(objects[0], color=rng.choice(colors), shape=rng.choice(shapes), row=row, col=col))
    return Scene.from_objects(objects)


def synthetic_reflections(
    backend: JanusBackend, vq, count: int, seed: int, device: str, wrong_plan_share: float = 0.0
) -> list[ReflectExample]:
    """Correct and slipped pictures of training prompts, as the VQ would decode them.

    A right plan is drawn right or with one slip, and a slip is revised to another layout
    (`another_layout`). `wrong_plan_share` of the rows instead have a
    plan with a slip that breaks the prompt, drawn as planned: the picture matches its plan and is
    still wrong, so reflection learns to check the picture against the prompt (a model's own plan
    can be wrong: "a triangle right of a circle" planned left of it) and not only against the plan.
    """
    from reasoner.shapes import render_scene

    rng = random.Random(seed)
    rows = []
    for suite_prompt in make_suite("train", count, seed + 1):
        prompt = suite_prompt.prompt
        right = sample_scene_for(prompt, rng)
        planned = right
        if wrong_plan_share and rng.random() < wrong_plan_share:
            slipped = perturb(right, rng)
            planned = right if score_scene(slipped, prompt).passed else slipped
        if planned is not right:
            shown = planned
        else:
            shown = right if rng.random() < 0.3 else perturb(right, rng)
        rows.append((prompt, right, planned, shown))
    pixels = pixels_from_images([np.asarray(render_scene(shown)) for *_, shown in rows]).to(device)
    with torch.no_grad():
        decoded = torch.cat([vq.decode(encode_tokens(vq, chunk)) for chunk in pixels.split(512)])
    examples = []
    for (prompt, right, planned, _), picture in zip(rows, images_from_pixels(decoded)):
        score = score_image(picture, prompt)
        revised = right if planned is not right else another_layout(prompt, right, rng)
        reflection = reflection_text(prompt, score.scene, None if score.passed else revised)
        examples.append(ReflectExample(prompt, plan_text(prompt, planned), picture, reflection))
    return examples


def reflect_batches(
    backend: JanusBackend, reflections: list[ReflectExample], pool, batch_size: int, seed: int, draw_share: float = 0.5
):
    """Reflections and, `draw_share` of each batch, drawing (from the DrawPool), so the model keeps
    what it learned first; with `draw_share` 0 (a reflection adapter) `pool` may be None."""
    reflecting = max(1, round(batch_size * (1 - draw_share)))

    def reflection_rows(step: int, count: int) -> Batch:
        rng = random.Random(seed * 7_000_003 + step)
        chosen = [rng.choice(reflections) for _ in range(count)]
        pixels = pixels_from_images([r.picture for r in chosen])
        return collate(
            [reflect(backend, r.prompt, r.plan, p, r.reflection) for r, p in zip(chosen, pixels)], backend.pad_id
        )

    if reflecting == batch_size:
        return lambda step: reflection_rows(step, batch_size)
    generator = torch.Generator(pool.device).manual_seed(seed + 1)
    return lambda step: merge(
        reflection_rows(step, reflecting).to(pool.device),
        pool.batch(batch_size - reflecting, generator),
        backend.pad_id,
    )


def merge(first: Batch, second: Batch, pad_id: int) -> Batch:
    """Stack two batches, right-padding the shorter; vision rows stay in row order (first's)."""
    length = max(first.ids.shape[1], second.ids.shape[1])

    def pad(t, value):
        return torch.nn.functional.pad(t, (0, length - t.shape[1]), value=value)

    pixels = first.pixels if second.pixels is None else torch.cat([first.pixels, second.pixels])
    return Batch(
        torch.cat([pad(first.ids, pad_id), pad(second.ids, pad_id)]),
        torch.cat([pad(first.kinds, 0), pad(second.kinds, 0)]),
        torch.cat([pad(first.train, False), pad(second.train, False)]),
        pixels,
    )
