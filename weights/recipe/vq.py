"""Train the VQ image tokenizer of the shapes model, and encode pictures into its tokens.

transformers' `JanusVQVAE` decodes with L2-normalised codebook entries (`get_codebook_entry`)
but its `forward` quantizes without normalising and passes no gradient to the encoder
(docs/janus-notes.md). So training quantizes here, by cosine similarity to normalised codes with a
straight-through gradient, which is exactly what the decode path expects; `encode_tokens` uses
the same rule to turn training pictures into tokens.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import JanusVQVAE

from reasoner.backends.janus import image_codes
from reasoner.shapes import random_scene

from .lm import StepBudget


def pixels_from_images(images) -> torch.Tensor:
    """uint8 RGB pictures -> (B, 3, H, W) floats in [-1, 1], as the VQ reads and writes them."""
    array = np.stack([np.asarray(image, dtype=np.uint8) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def images_from_pixels(pixels: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8, the rounding the backend uses."""
    return ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def quantize(vq: JanusVQVAE, latents: torch.Tensor, beta: float = 0.25):
    """(B, D, h, w) latents -> straight-through quantized latents, token ids (B, h*w), codebook loss."""
    z = F.normalize(latents.permute(0, 2, 3, 1), dim=-1)  # (B, h, w, D)
    codes = F.normalize(vq.quantize.embedding.weight, dim=-1)  # (K, D)
    ids = (z @ codes.T).argmax(-1)  # (B, h, w): nearest by cosine
    chosen = codes[ids]
    loss = F.mse_loss(chosen, z.detach()) + beta * F.mse_loss(z, chosen.detach())
    straight_through = z + (chosen - z).detach()
    return straight_through.permute(0, 3, 1, 2), ids.flatten(1), loss


@torch.no_grad()
def encode_tokens(vq: JanusVQVAE, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, tokens) image token ids."""
    return image_codes(vq, pixels)


def random_scene_pictures(count: int, seed: int, workers: int) -> torch.Tensor:
    """(count, H, W, 3) uint8 pictures of random scenes with 0 to 4 objects."""
    from .data import render_many

    rng = random.Random(seed)
    return torch.from_numpy(render_many([random_scene(rng, 0, 4) for _ in range(count)], workers))


def reset_dead_codes(vq: JanusVQVAE, latents: torch.Tensor, usage: torch.Tensor) -> int:
    """Move codes no batch has picked lately onto random encoder outputs, so all codes work."""
    dead = (usage == 0).nonzero().flatten()
    if len(dead) == 0:
        return 0
    vectors = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    picks = vectors[torch.randint(len(vectors), (len(dead),), device=vectors.device)]
    vq.quantize.embedding.weight.data[dead] = F.normalize(picks, dim=-1)
    return len(dead)


def train_vq(
    vq: JanusVQVAE,
    pictures: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str,
    seconds: float | None = None,
) -> int:
    """L1 + MSE reconstruction (L1 sharpens edges far faster, docs/janus-notes.md) + codebook loss.

    `pictures`: (N, H, W, 3) uint8, sampled at random each step."""
    vq.to(device).train()  # JanusVQVAE calls eval() in __init__
    pictures = pictures.to(device)
    optimizer = torch.optim.AdamW(vq.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator(device).manual_seed(seed)
    usage = torch.zeros(vq.quantize.embedding.num_embeddings, device=device)
    budget = StepBudget(steps, seconds)
    progress = tqdm(desc="vq", total=steps)
    step = 0
    while step < budget.steps:
        steps = budget.steps
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * (1 - step / steps))
        chosen = pictures[torch.randint(len(pictures), (batch_size,), device=device, generator=generator)]
        pixels = chosen.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        latents = vq.quant_conv(vq.encoder(pixels))
        quantized, ids, codebook_loss = quantize(vq, latents)
        reconstruction = vq.decoder(vq.post_quant_conv(quantized))
        loss = F.l1_loss(reconstruction, pixels) + F.mse_loss(reconstruction, pixels) + codebook_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        usage.mul_(0.99).index_add_(0, ids.flatten(), torch.ones(ids.numel(), device=device))
        if step % 100 == 99 and step < steps * 0.8:
            reset_dead_codes(vq, latents.detach(), usage.round())
        if step % 20 == 0:
            progress.set_postfix(loss=f"{loss.item():.4f}", codes=int((usage > 0.5).sum()))
        step += 1
        budget.tick(step, progress)
    progress.close()
    vq.eval()
    return step
