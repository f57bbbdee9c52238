"""Many prompts at once through a Janus backend: for evaluation and for building training data.

Each prompt gets exactly what the pipeline would give it alone (same layout, same per-row seed);
prompts are grouped by context length so that no row is padded. Uses transformers' `generate`
(the reference engine).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from PIL import Image
from transformers import GenerationConfig, GenerationMixin, LogitsProcessorList

from .backends.janus import JanusBackend
from .backends.sampling import SeededSampler


def same_length_groups(sequences: list[list[int]], batch_size: int) -> list[list[int]]:
    """Row indices in groups of at most `batch_size` whose sequences have one length."""
    by_length = defaultdict(list)
    for index, sequence in enumerate(sequences):
        by_length[len(sequence)].append(index)
    return [rows[i : i + batch_size] for rows in by_length.values() for i in range(0, len(rows), batch_size)]


@torch.no_grad()
def generate_texts(backend: JanusBackend, contexts: list[list[int]], seeds: list[int], temperature: float, max_new_tokens: int, stops: list[int], pictures: list[Image.Image] | None = None, batch_size: int = 64) -> list[str]:
    texts = [""] * len(contexts)
    for rows in same_length_groups(contexts, batch_size):
        input_ids = torch.tensor([contexts[i] for i in rows], device=backend.device)
        config = GenerationConfig(bos_token_id=backend.bos_id, eos_token_id=stops, pad_token_id=backend.pad_id, max_new_tokens=max_new_tokens, do_sample=False)
        extra = {} if pictures is None else {"pixel_values": torch.cat([backend.pixel_values(pictures[i]) for i in rows])}
        sampler = SeededSampler([seeds[i] for i in rows], temperature, device=backend.device)
        output = GenerationMixin.generate(backend.model, input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config, logits_processor=LogitsProcessorList([sampler]), **extra)
        for row, tokens in zip(rows, output[:, input_ids.shape[1]:].tolist()):
            cut = next((k for k, t in enumerate(tokens) if t in stops), len(tokens))
            texts[row] = backend.tokenizer.decode(tokens[:cut], skip_special_tokens=True).strip()
    return texts


def write_plans(backend: JanusBackend, prompts: list[str], seeds: list[int], temperature: float, batch_size: int = 64) -> list[str]:
    contexts = [backend.think_context_ids(p) for p in prompts]
    return generate_texts(backend, contexts, seeds, temperature, backend.template.max_plan_tokens, [backend.eos_id, backend.boi_id], batch_size=batch_size)


def write_reflections(backend: JanusBackend, prompts: list[str], plans: list[str], pictures: list[Image.Image], seeds: list[int], temperature: float, batch_size: int = 64) -> list[str]:
    contexts = [backend.reflect_context_ids(p, plan) for p, plan in zip(prompts, plans)]
    return generate_texts(backend, contexts, seeds, temperature, backend.template.max_reflection_tokens, [backend.eos_id], pictures, batch_size)


@torch.no_grad()
def draw_pictures(backend: JanusBackend, prompts: list[str], plans: list[str | None], seeds: list[int], cfg_scale: float, temperature: float, batch_size: int = 64) -> list[Image.Image]:
    contexts = [backend.draw_context_ids(p, plan) for p, plan in zip(prompts, plans)]
    pictures = [None] * len(prompts)
    for rows in same_length_groups(contexts, batch_size):
        input_ids = torch.tensor([contexts[i] for i in rows], device=backend.device)
        config = GenerationConfig(bos_token_id=backend.bos_id, eos_token_id=backend.eos_id, pad_token_id=backend.pad_id, generation_kwargs={"boi_token_id": backend.boi_id}, do_sample=False, guidance_scale=1)
        sampler = SeededSampler([seeds[i] for i in rows], temperature, 0, guidance_scale=cfg_scale, device=backend.device)
        tokens = backend.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_mode="image", generation_config=config, logits_processor=LogitsProcessorList([sampler]))
        for row, image in zip(rows, backend.decode_images(tokens)):
            pictures[row] = image
    return pictures


def as_arrays(pictures: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(p) for p in pictures])
