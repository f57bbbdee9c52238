"""Many prompts at once through a backend: for evaluation and for building training data.

Each prompt gets exactly what the pipeline would give it alone (same layout, same per-row seed).
Rows go through the backend's batched token loops on its engine (`backend.engine`) in calls of
at most `batch_size` rows (`calls`): on fast, rows of any lengths together (it pads them), taken
in order of length so that little is padded; on hf and onnx, which run one length a call, rows
grouped by context length. A think-then-generate backend plans prompt by prompt and renders in
batches (`ThinkGenerateBackend.write_plans_for_prompts`, `draw_for_prompts`); it has no reflection.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from PIL import Image

from .backends.janus import JanusBackend


def same_length_groups(sequences: list[list[int]], batch_size: int) -> list[list[int]]:
    """Row indices in groups of at most `batch_size` whose sequences have one length."""
    by_length = defaultdict(list)
    for index, sequence in enumerate(sequences):
        by_length[len(sequence)].append(index)
    return [rows[i : i + batch_size] for rows in by_length.values() for i in range(0, len(rows), batch_size)]


def calls(backend: JanusBackend, contexts: list[list[int]], batch_size: int) -> list[list[int]]:
    """Row indices of the backend calls to make, at most `batch_size` rows each: chunks of the rows
    sorted by length on the fast engine (one call takes mixed lengths), else same-length groups."""
    if backend.engine != "fast":
        return same_length_groups(contexts, batch_size)
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def texts_in_groups(
    backend: JanusBackend,
    contexts: list[list[int]],
    seeds: list[int],
    temperature: float,
    max_new_tokens: int,
    stop_ids: list[int],
    pictures: list[Image.Image] | None = None,
    batch_size: int = 64,
) -> list[str]:
    texts = [""] * len(contexts)
    for rows in calls(backend, contexts, batch_size):
        pixel_values = None if pictures is None else torch.cat([backend.pixel_values(pictures[i]) for i in rows])
        written = backend.generate_texts(
            [contexts[i] for i in rows], pixel_values, [seeds[i] for i in rows], temperature, max_new_tokens, stop_ids
        )
        for row, text in zip(rows, written):
            texts[row] = text
    return texts


def write_plans(
    backend: JanusBackend, prompts: list[str], seeds: list[int], temperature: float, batch_size: int = 64
) -> list[str]:
    if not isinstance(backend, JanusBackend):
        return backend.write_plans_for_prompts(prompts, seeds, temperature)
    contexts = [backend.think_context_ids(p) for p in prompts]
    return texts_in_groups(
        backend,
        contexts,
        seeds,
        temperature,
        backend.template.max_plan_tokens,
        [backend.eos_id, backend.boi_id],
        batch_size=batch_size,
    )


def write_reflections(
    backend: JanusBackend,
    prompts: list[str],
    plans: list[str],
    pictures: list[Image.Image],
    seeds: list[int],
    temperature: float,
    batch_size: int = 64,
) -> list[str]:
    contexts = [backend.reflect_context_ids(p, plan) for p, plan in zip(prompts, plans)]
    return texts_in_groups(
        backend,
        contexts,
        seeds,
        temperature,
        backend.template.max_reflection_tokens,
        [backend.eos_id],
        pictures,
        batch_size,
    )


def draw_pictures(
    backend: JanusBackend,
    prompts: list[str],
    plans: list[str | None],
    seeds: list[int],
    cfg_scale: float,
    temperature: float,
    batch_size: int = 64,
) -> list[Image.Image]:
    if not isinstance(backend, JanusBackend):
        return backend.draw_for_prompts(prompts, plans, seeds, cfg_scale, batch_size)
    contexts = [backend.draw_context_ids(p, plan) for p, plan in zip(prompts, plans)]
    pictures = [None] * len(prompts)
    for rows in calls(backend, contexts, batch_size):
        tokens = backend.generate_image_token_rows(
            [contexts[i] for i in rows], [seeds[i] for i in rows], cfg_scale, temperature, 0
        )
        for row, image in zip(rows, backend.decode_images(tokens)):
            pictures[row] = image
    return pictures


def as_arrays(pictures: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(p) for p in pictures])
