"""Training examples for the shapes model: prompts, plans and the image tokens of their pictures."""

from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from reasoner.backends.janus import JanusBackend
from reasoner.engine.guidance import unconditional_tensor
from reasoner.shapes import Scene, make_suite, plan_with_reasoning, random_scene, render_scene, sample_scene_for

from .sequences import IMAGE, TEXT, Batch
from .texts import plan_text
from .vq import encode_tokens, pixels_from_images


@dataclass
class DrawExample:
    think_length: int  # tokens of the think context
    draw_ids: list[int]  # think context + plan + begin-of-image
    direct_ids: list[int]  # prompt-only context + begin-of-image
    image_tokens: list[int]
    follows_prompt: bool  # False: a plan drawn under an unrelated prompt, to learn to follow plans


def scenes_for_pool(
    count: int, seed: int, unrelated_share: float, distinct_prompts: int = 20_000
) -> list[tuple[str, Scene, bool]]:
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


def make_draw_pool(
    backend: JanusBackend, vq, count: int, seed: int, device: str, workers: int, unrelated_share: float = 0.2
) -> list[DrawExample]:
    rows = scenes_for_pool(count, seed, unrelated_share)
    tokens = tokens_of_pictures(vq, render_many([scene for _, scene, _ in rows], workers), device)
    pool, think_lengths, direct_ids = [], {}, {}
    for (prompt, scene, follows), image_tokens in zip(rows, tokens.tolist()):
        if prompt not in direct_ids:
            think_lengths[prompt] = len(backend.think_context_ids(prompt))
            direct_ids[prompt] = backend.draw_context_ids(prompt, None)
        pool.append(
            DrawExample(
                think_length=think_lengths[prompt],
                # an unrelated prompt's plan reads as a person's plan is given to the model (pipeline.py)
                draw_ids=backend.draw_context_ids(
                    prompt, plan_text(prompt, scene) if follows else plan_with_reasoning(scene)
                ),
                direct_ids=direct_ids[prompt],
                image_tokens=image_tokens,
                follows_prompt=follows,
            )
        )
    return pool


class DrawPool:
    """The draw examples as padded tensors on the training device, so a batch is a few gathers.

    Each row of a batch is one of: think then draw (plan and picture trained), draw from the
    prompt alone, or draw from the dropped (unconditional) context of either; pictures are always
    trained, plans only where the prompt and plan belong together.
    """

    def __init__(self, examples: list[DrawExample], backend: JanusBackend, device: str):
        def padded(rows: list[list[int]]) -> torch.Tensor:
            out = torch.full((len(rows), max(map(len, rows))), backend.pad_id, dtype=torch.long)
            for i, row in enumerate(rows):
                out[i, : len(row)] = torch.tensor(row)
            return out.to(device)

        self.draw = padded([e.draw_ids for e in examples])
        self.draw_length = torch.tensor([len(e.draw_ids) for e in examples], device=device)
        self.think_length = torch.tensor([e.think_length for e in examples], device=device)
        self.direct = padded([e.direct_ids for e in examples])
        self.direct_length = torch.tensor([len(e.direct_ids) for e in examples], device=device)
        self.images = torch.tensor([e.image_tokens for e in examples], device=device)
        self.follows = torch.tensor([e.follows_prompt for e in examples], device=device)
        self.pad_id, self.special = backend.pad_id, backend.special
        self.device = device

    THINK, DIRECT, DROPPED_THINK, DROPPED_DIRECT = range(4)

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        device = self.device
        rows = torch.randint(len(self.images), (size,), device=device, generator=generator)
        roll = torch.rand(size, device=device, generator=generator)
        coin = torch.rand(size, device=device, generator=generator) < 0.5
        variant = torch.full_like(rows, self.THINK)
        variant[self.follows[rows] & (roll < 0.15)] = self.DIRECT  # the prompt alone
        variant[(roll > 0.88) & coin] = self.DROPPED_DIRECT  # guidance's unconditional half
        variant[(roll > 0.88) & ~coin] = self.DROPPED_THINK
        return self.assemble(rows, variant)

    def assemble(self, rows: torch.Tensor, variant: torch.Tensor) -> Batch:
        """Rows of the pool laid out as `variant` says (see the class constants)."""
        device = self.device
        follows = self.follows[rows]
        use_direct = (variant == self.DIRECT) | (variant == self.DROPPED_DIRECT)
        dropped = variant >= self.DROPPED_THINK
        width = max(self.draw.shape[1], self.direct.shape[1])
        draw = torch.nn.functional.pad(self.draw[rows], (0, width - self.draw.shape[1]), value=self.pad_id)
        direct_ids = torch.nn.functional.pad(self.direct[rows], (0, width - self.direct.shape[1]), value=self.pad_id)
        context = torch.where(use_direct[:, None], direct_ids, draw)
        length = torch.where(use_direct, self.direct_length[rows], self.draw_length[rows])
        context = torch.where(dropped[:, None], unconditional_tensor(context, self.special), context)

        images = self.images[rows]
        total = int(length.max()) + images.shape[1]
        position = torch.arange(total, device=device)[None, :]  # (1, L)
        in_image = (position >= length[:, None]) & (position < length[:, None] + images.shape[1])
        image_index = (position - length[:, None]).clamp(0, images.shape[1] - 1)
        context = torch.nn.functional.pad(context, (0, max(0, total - width)), value=self.pad_id)[:, :total]
        ids = torch.where(in_image, images.gather(1, image_index), context)
        ids = torch.where(position >= length[:, None] + images.shape[1], self.pad_id, ids)
        kinds = torch.where(in_image, IMAGE, TEXT)
        plan_trained = (follows & (variant == self.THINK))[:, None]
        in_plan = (position >= self.think_length[rows][:, None]) & (position < length[:, None])
        train = in_image | (plan_trained & in_plan)
        return Batch(ids, kinds, train, None)


def draw_batches(pool: DrawPool, batch_size: int, seed: int):
    generator = torch.Generator(pool.device).manual_seed(seed)
    return lambda step: pool.batch(batch_size, generator)


__all__ = ["DrawExample", "DrawPool", "make_draw_pool", "draw_batches"]
