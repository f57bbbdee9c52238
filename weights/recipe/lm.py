"""The loss and training loop of the shapes model's language model (plans, pictures, reflections)."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import JanusForConditionalGeneration

from reasoner.backends.janus import picture_features

from .sequences import IMAGE, TEXT, VISION, Batch


def sequence_loss(
    model: JanusForConditionalGeneration, batch: Batch, pad_id: int, reads: str = "vision"
) -> tuple[torch.Tensor, dict]:
    """Cross-entropy on trained tokens: text by the language head, image codes by the generation head.
    Pictures fill the VISION tokens as the engine fills them (`reads`: JanusTemplate.reflect_reads)."""
    ids, kinds = batch.ids, batch.kinds
    embeddings = model.get_input_embeddings()(torch.where(kinds == IMAGE, pad_id, ids))
    image_embeddings = model.prepare_embeddings_for_image_generation(torch.where(kinds == IMAGE, ids, 0))
    embeddings = torch.where((kinds == IMAGE)[..., None], image_embeddings, embeddings)
    if batch.pixels is not None:
        features = picture_features(model, batch.pixels, reads)  # (rows, tokens, hidden)
        embeddings = embeddings.masked_scatter((kinds == VISION)[..., None], features.to(embeddings.dtype))
    hidden = model.model.language_model(inputs_embeds=embeddings).last_hidden_state[:, :-1]
    targets, target_kinds, trained = ids[:, 1:], kinds[:, 1:], batch.train[:, 1:]
    losses, logs = [], {}
    for kind, head, name in ((TEXT, model.lm_head, "text"), (IMAGE, model.model.generation_head, "image")):
        selected = trained & (target_kinds == kind)
        if selected.any():
            logits = head(hidden[selected]).float()
            loss = F.cross_entropy(logits, targets[selected])
            losses.append(loss)
            logs[name] = loss.item()
            logs[f"{name}_acc"] = (logits.argmax(-1) == targets[selected]).float().mean().item()
    return sum(losses), logs


def train_lm(
    model: JanusForConditionalGeneration,
    next_batch,
    steps: int,
    lr: float,
    pad_id: int,
    device: str,
    desc: str,
    warmup: int = 200,
    seconds: float | None = None,
    vision_lr_scale: float = 1.0,
    reads: str = "vision",
) -> int:
    """AdamW with warm-up and cosine decay; the VQ stays frozen (its codes are the vocabulary).

    With `seconds`, the step count is fitted to that much wall time from the speed of the first
    steps (so a run fits a fixed GPU lease); returns the number of steps taken. The vision encoder
    and its aligner (used only to read pictures) train at `vision_lr_scale` x `lr`."""
    model.to(device).train()
    model.model.vqmodel.eval().requires_grad_(False)
    vision = {id(p) for part in (model.model.vision_model, model.model.aligner) for p in part.parameters()}
    parameters = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in parameters if id(p) not in vision], "scale": 1.0},
        {"params": [p for p in parameters if id(p) in vision], "scale": vision_lr_scale},
    ]
    groups = [group for group in groups if group["params"]]  # a reflection adapter trains no vision weights
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.startswith("cuda")
        else torch.autocast("cpu", enabled=False)
    )
    budget = StepBudget(steps, seconds)
    progress = tqdm(desc=desc, total=steps)
    step = 0
    while step < budget.steps:
        steps = budget.steps
        scale = min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr * scale * group["scale"]
        batch = next_batch(step).to(device)
        with autocast:
            loss, logs = sequence_loss(model, batch, pad_id, reads)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if step % 25 == 0:
            progress.set_postfix({k: f"{v:.3f}" for k, v in logs.items()})
        step += 1
        budget.tick(step, progress)
    progress.close()
    model.eval()
    return step


class StepBudget:
    """A planned step count, refitted to a time budget from the measured speed.

    Timing starts after a few warm-up steps (CUDA start-up and the first allocations are slow)
    and is refitted a few times, so the run ends close to the budget."""

    def __init__(self, steps: int, seconds: float | None, warmup: int = 10, refits: tuple[int, ...] = (40, 150, 500)):
        self.steps, self.seconds, self.warmup, self.refits = steps, seconds, warmup, refits
        self.started = time.perf_counter()
        self.warm_at = None

    def tick(self, step: int, progress) -> None:
        progress.update(1)
        if self.seconds is None:
            return
        now = time.perf_counter()
        if step == self.warmup:
            self.warm_at = now
        elif step in self.refits and self.warm_at is not None:
            per_step = (now - self.warm_at) / (step - self.warmup)
            self.steps = max(step + 1, int(step + (self.seconds - (now - self.started)) / per_step))
            progress.total = self.steps
