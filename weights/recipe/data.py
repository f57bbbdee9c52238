"""Training examples for the shapes model: prompts, plans and the image tokens of their pictures."""

from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from reasoner.backends.janus import JanusBackend
from reasoner.shapes import Scene, make_suite, random_scene, render_scene, sample_scene_for

from .sequences import Batch, collate, draw_only, dropped_context, think_and_draw
from .texts import plan_text
from .vq import encode_tokens, pixels_from_images


@dataclass
class DrawExample:
    think_length: int  # tokens of the think context
    draw_ids: list[int]  # think context + plan + begin-of-image
    direct_ids: list[int]  # prompt-only context + begin-of-image
    image_tokens: list[int]
    follows_prompt: bool  # False: a plan drawn under an unrelated prompt, to learn to follow plans


def scenes_for_pool(count: int, seed: int, unrelated_share: float, distinct_prompts: int = 20_000) -> list[tuple[str, Scene, bool]]:
    """(prompt, scene, follows prompt) rows; prompts repeat with fresh scenes past `distinct_prompts`."""
    rng = random.Random(seed)
    prompts = [p.prompt for p in make_suite("train", min(count, distinct_prompts), seed)]
    rows = []
    for index in range(count):
        prompt = prompts[index % len(prompts)]
        if rng.random() < unrelated_share:
            rows.append((rng.choice(prompts), random_scene(rng, 1, 4), False))
        else:
            rows.append((prompt, sample_scene_for(prompt, rng), True))
    return rows


def _render(scenes: list[Scene]) -> np.ndarray:
    return np.stack([np.asarray(render_scene(scene)) for scene in scenes])


def render_many(scenes: list[Scene], workers: int) -> np.ndarray:
    """(N, H, W, 3) uint8 pictures, rendered in parallel processes."""
    chunks = [scenes[i : i + 2000] for i in range(0, len(scenes), 2000)]
    if workers <= 1:
        return np.concatenate([_render(chunk) for chunk in chunks])
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_render, chunks)))


def tokens_of_pictures(vq, pictures: np.ndarray, device: str, chunk: int = 1024) -> torch.Tensor:
    out = []
    for start in range(0, len(pictures), chunk):
        pixels = pixels_from_images(pictures[start : start + chunk]).to(device)
        out.append(encode_tokens(vq, pixels).cpu())
    return torch.cat(out)


def make_draw_pool(backend: JanusBackend, vq, count: int, seed: int, device: str, workers: int, unrelated_share: float = 0.2) -> list[DrawExample]:
    rows = scenes_for_pool(count, seed, unrelated_share)
    tokens = tokens_of_pictures(vq, render_many([scene for _, scene, _ in rows], workers), device)
    pool, think_lengths, direct_ids = [], {}, {}
    for (prompt, scene, follows), image_tokens in zip(rows, tokens.tolist()):
        if prompt not in direct_ids:
            think_lengths[prompt] = len(backend.think_context_ids(prompt))
            direct_ids[prompt] = backend.draw_context_ids(prompt, None)
        pool.append(DrawExample(
            think_length=think_lengths[prompt],
            draw_ids=backend.draw_context_ids(prompt, plan_text(prompt, scene)),
            direct_ids=direct_ids[prompt],
            image_tokens=image_tokens,
            follows_prompt=follows,
        ))
    return pool


def draw_sequence(backend: JanusBackend, example: DrawExample, rng: random.Random):
    """One of: think then draw (most), draw from the prompt alone, draw from a dropped context."""
    roll = rng.random()
    if example.follows_prompt and roll < 0.15:
        return draw_only(example.direct_ids, example.image_tokens)
    if roll > 0.88:
        context = example.draw_ids if rng.random() < 0.5 else example.direct_ids
        return draw_only(dropped_context(backend, context), example.image_tokens)
    sequence = draw_only(example.draw_ids, example.image_tokens)
    if example.follows_prompt:  # train the plan, and the begin-of-image that ends it
        for i in range(example.think_length, len(example.draw_ids)):
            sequence.train[i] = True
    return sequence


def draw_batches(backend: JanusBackend, pool: list[DrawExample], batch_size: int, seed: int):
    def next_batch(step: int) -> Batch:
        rng = random.Random(seed * 1_000_003 + step)
        return collate([draw_sequence(backend, rng.choice(pool), rng) for _ in range(batch_size)], backend.pad_id)

    return next_batch


__all__ = ["DrawExample", "make_draw_pool", "draw_batches", "think_and_draw"]
