"""Training sequences in exactly the layout the engine generates with.

Every sequence is built by the backend's own layout functions (`think_context_ids`,
`draw_context_ids`, `reflect_context_ids`), so what the model learns is what the engine asks.
Each token has a kind: TEXT (language head), IMAGE (generation codes, generation head) or VISION
(understanding placeholders, filled with vision features); and a flag saying whether the model
is trained to predict it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reasoner.backends.janus import JanusBackend
from reasoner.engine.guidance import unconditional_ids

TEXT, IMAGE, VISION = 0, 1, 2


@dataclass
class Sequence:
    ids: list[int]
    kinds: list[int]
    train: list[bool]  # train[i]: predict token i from the tokens before it
    pixels: torch.Tensor | None = None  # (3, H, W) in [-1, 1], for VISION tokens


def think_and_draw(
    backend: JanusBackend, prompt: str, plan: str, image_tokens: list[int], train_plan: bool = True
) -> Sequence:
    """Prompt, the plan (trained, ending with begin-of-image), then the picture (trained)."""
    think = backend.think_context_ids(prompt)
    context = backend.draw_context_ids(prompt, plan)
    ids = context + image_tokens
    kinds = [TEXT] * len(context) + [IMAGE] * len(image_tokens)
    train = [False] * len(think) + [train_plan] * (len(context) - len(think)) + [True] * len(image_tokens)
    return Sequence(ids, kinds, train)


def draw_only(context: list[int], image_tokens: list[int]) -> Sequence:
    """A picture after a given context (direct prompts, prompt-dropped contexts): image loss only."""
    ids = context + image_tokens
    return Sequence(
        ids, [TEXT] * len(context) + [IMAGE] * len(image_tokens), [False] * len(context) + [True] * len(image_tokens)
    )


def dropped_context(backend: JanusBackend, context: list[int]) -> list[int]:
    """The unconditional context of classifier-free guidance, by the engines' own rule."""
    return unconditional_ids(context, backend.special)


def reflect(backend: JanusBackend, prompt: str, plan: str, pixels: torch.Tensor, reflection: str) -> Sequence:
    context = backend.reflect_context_ids(prompt, plan)
    answer = backend.encode(" " + reflection) + [backend.eos_id]
    kinds = [VISION if t == backend.image_token_id else TEXT for t in context] + [TEXT] * len(answer)
    return Sequence(context + answer, kinds, [False] * len(context) + [True] * len(answer), pixels)


@dataclass
class Batch:
    ids: torch.Tensor  # (B, L)
    kinds: torch.Tensor  # (B, L)
    train: torch.Tensor  # (B, L) bool
    pixels: torch.Tensor | None  # (rows with VISION tokens, 3, H, W), in row order

    def to(self, device) -> Batch:
        pixels = None if self.pixels is None else self.pixels.to(device)
        return Batch(self.ids.to(device), self.kinds.to(device), self.train.to(device), pixels)


def collate(sequences: list[Sequence], pad_id: int) -> Batch:
    """Right-pad: with causal attention, padding after a sequence changes nothing before it."""
    length = max(len(s.ids) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    kinds = torch.full_like(ids, TEXT)
    train = torch.zeros_like(ids, dtype=torch.bool)
    for row, s in enumerate(sequences):
        ids[row, : len(s.ids)] = torch.tensor(s.ids)
        kinds[row, : len(s.ids)] = torch.tensor(s.kinds)
        train[row, : len(s.ids)] = torch.tensor(s.train)
    images = [s.pixels for s in sequences if s.pixels is not None]
    return Batch(ids, kinds, train, torch.stack(images) if images else None)
