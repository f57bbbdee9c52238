"""The pieces of the shapes-diffusion recipe (`weights/recipe/diffusion.py`): the planner taken out
of a Janus model, the training rows and their pictures, the renderer's diffusers components, the
two training loops with their checkpoints, and the held-out evaluation."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from reasoner.shapes import (
    make_suite,
    plan_with_reasoning,
    random_scene,
    sample_scene_for,
    score_image,
)

from .data import render_many
from .texts import plan_text

# -- atomic directories -----------------------------------------------------------------------------


def replace_dir(target: Path, write) -> Path:
    """Run `write(tmp)` into a fresh temporary directory beside `target`, then rename it to
    `target` (an older `target` is removed first): a stopped run never leaves half a directory."""
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


# -- training rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    context: str  # what the planner reads first
    text: str  # the text whose hidden states condition the picture (a plan, or the prompt)
    scene: object  # the Scene the picture shows exactly


def training_rows(count: int, seed: int, config, direct_share: float, unrelated_share: float) -> list[Row]:
    """Rows of three kinds, from the world's train prompts (never dev or test):
    - a prompt and a plan for it, as the planner writes plans (`plan_text`: reasoning, then the plan);
    - a random plan (1-4 objects) under an unrelated prompt, read as the pipeline gives a person's
      plan (`plan_with_reasoning`), so the picture follows the plan and not the prompt;
    - the prompt alone after `direct_prefix` (direct mode), drawn as a scene that satisfies it."""
    rng = random.Random(seed)
    prompts = [p.prompt for p in make_suite("train", min(count, 20_000), seed)]
    rows = []
    for index in range(count):
        prompt, draw = prompts[index % len(prompts)], rng.random()
        think = config.think.format(prompt=prompt) + config.plan_prefix
        if draw < unrelated_share:
            scene = random_scene(rng, 1, 4)
            other = rng.choice(prompts)
            rows.append(Row(config.think.format(prompt=other) + config.plan_prefix, plan_with_reasoning(scene), scene))
        elif draw < unrelated_share + direct_share:
            rows.append(Row(config.direct_prefix, prompt, sample_scene_for(prompt, rng)))
        else:
            scene = sample_scene_for(prompt, rng)
            rows.append(Row(think, plan_text(prompt, scene), scene))
    return rows


def pictures_of(rows: list[Row], workers: int) -> torch.Tensor:
    """(N, 3, 72, 72) float pictures in [-1, 1], drawn exactly by the shapes renderer."""
    pixels = torch.from_numpy(render_many([row.scene for row in rows], workers)).permute(0, 3, 1, 2)
    return pixels.float() / 127.5 - 1


@torch.no_grad()
def hidden_states(backend, rows: list[Row], batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """((N, L, hidden) float16, (N,) lengths): the planner's last hidden states of each row's text
    tokens and end-of-sentence, read after its context exactly as the backend reads them at draw time
    (`ThinkGenerateBackend.condition_ids`); rows are zero past their length."""
    ids = [backend.condition_ids(row.context, row.text) for row in rows]
    lengths = torch.tensor([len(text) for _, text in ids])
    out = torch.zeros(len(rows), int(lengths.max()), backend.planner.config.hidden_size, dtype=torch.float16)
    groups = defaultdict(list)
    for index, (context, text) in enumerate(ids):
        groups[(len(context), len(text))].append(index)
    for (context_length, _), members in tqdm(list(groups.items()), desc="planner hidden states", leave=False):
        for start in range(0, len(members), batch):
            chunk = members[start : start + batch]
            tokens = torch.tensor([ids[i][0] + ids[i][1] for i in chunk], device=backend.device)
            hidden = backend.planner(input_ids=tokens, output_hidden_states=True).hidden_states[-1]
            for row, states in zip(chunk, hidden[:, context_length:]):
                out[row, : states.shape[0]] = states.to("cpu", torch.float16)
    return out, lengths


def conditions(projection, hidden: torch.Tensor, lengths: torch.Tensor, condition_tokens: int) -> torch.Tensor:
    """(B, condition_tokens, cross_attention_dim): as `ThinkGenerateBackend.condition` makes them, the
    projected states of each row's tokens, then zero rows."""
    projected = projection(hidden)
    mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None].to(hidden.device)
    projected = projected * mask[..., None]
    return torch.nn.functional.pad(projected, (0, 0, 0, condition_tokens - projected.shape[1]))


# -- the renderer's components ------------------------------------------------------------------------


def new_vae(channels: tuple[int, ...], latent_channels: int, image_size: int, groups: int):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * len(channels), up_block_types=("UpDecoderBlock2D",) * len(channels),
        latent_channels=latent_channels, norm_num_groups=groups, layers_per_block=1, sample_size=image_size,
    )  # fmt: skip


def new_unet(channels: tuple[int, ...], latent_channels: int, latent_side: int, cross: int, head: int, groups: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=latent_side, in_channels=latent_channels, out_channels=latent_channels,
        block_out_channels=channels, layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * len(channels),
        up_block_types=("CrossAttnUpBlock2D",) * len(channels),
        cross_attention_dim=cross, attention_head_dim=head, norm_num_groups=groups,
    )  # fmt: skip


def train_scheduler():
    """The noise schedule the UNet learns: cosine betas (no signal left at the last step, so sampling
    from pure noise matches training), v-prediction (well-posed at every noise level)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")


def sample_scheduler():
    """What ships: DPM-Solver++ (2nd order multistep) on the same schedule, good in ~10 steps."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config(train_scheduler().config)


# -- training -----------------------------------------------------------------------------------------


class Clock:
    """A stage's step count, shortened to its wall-time share: the stage stops when its seconds are
    spent (counting the seconds an earlier, resumed run of it spent), whatever steps are left."""

    def __init__(self, seconds: float | None, spent: float = 0.0):
        self.seconds, self.spent, self.started = seconds, spent, time.perf_counter()

    @property
    def elapsed(self) -> float:
        return self.spent + time.perf_counter() - self.started

    def up(self) -> bool:
        return self.seconds is not None and self.elapsed >= self.seconds

    def planned(self, step: int, first: int, steps: int, current: int, refits=(20, 100, 300, 1000)) -> int:
        """The step count the learning-rate schedule runs to: `steps`, or, with a time budget, what
        the speed measured since step `first` of this run says fits in the seconds left (refitted at
        a few steps, so the schedule decays to its end when time, not steps, stops the stage)."""
        if self.seconds is None or (step - first) not in refits:
            return current
        if step - first == refits[0]:
            self.mark = (step, time.perf_counter())
            return current
        done, at = self.mark
        per_step = (time.perf_counter() - at) / (step - done)
        return max(step + 1, min(steps, int(step + (self.seconds - self.elapsed) / per_step)))


def learning_rate(step: int, steps: int, peak: float, warmup: int = 50) -> float:
    """Linear warm-up, then cosine to a tenth of the peak at `steps`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def step_generator(seed: int, step: int) -> torch.Generator:
    """The batch and noise of a step depend on (seed, step) only, so a resumed run draws the batches
    an uninterrupted one would have."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def vae_loss(vae, pictures: torch.Tensor, kl_weight: float, object_weight: float = 0.0) -> torch.Tensor:
    """L1 + L2 reconstruction, each pixel of an object weighing 1 + `object_weight` (the black
    background is most of a picture, and an unweighted loss first learns objects as grey blurs),
    plus `kl_weight` times the KL term."""
    posterior = vae.encode(pictures).latent_dist
    decoded = vae.decode(posterior.mode()).sample
    error = decoded - pictures
    weight = 1 + object_weight * (pictures > -0.9).any(dim=1, keepdim=True).float()
    reconstruction = ((error.abs() + error.pow(2)) * weight).mean() / weight.mean()
    return reconstruction + kl_weight * posterior.kl().mean()


def train_vae(vae, pictures, recipe, device: str, clock: Clock, desc: str = "vae") -> dict:
    """Reconstruction (`vae_loss`) with a small KL term; one run, no mid-stage checkpoint (minutes)."""
    vae.to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0)
    losses = []
    progress = tqdm(total=recipe.vae_steps, desc=desc)
    planned = recipe.vae_steps
    for step in range(recipe.vae_steps):
        if clock.up():
            break
        planned = clock.planned(step, 0, recipe.vae_steps, planned)
        progress.total = planned
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, planned, recipe.vae_lr)
        index = torch.randint(len(pictures), (recipe.vae_batch,), generator=step_generator(recipe.seed, step))
        loss = vae_loss(vae, pictures[index].to(device), recipe.vae_kl_weight, recipe.vae_object_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.4f}")
    progress.close()
    vae.eval()
    return {"steps": len(losses), "first_loss": losses[0] if losses else None, "last_loss": mean_tail(losses)}


@torch.no_grad()
def reconstruction_exact(vae, scenes: list, device: str) -> float:
    """The share of `scenes` whose picture, encoded and decoded by the VAE, the shapes detector reads
    back as exactly that scene: the renderer's ceiling (a perfect UNet can do no better)."""
    from reasoner.shapes import detect

    pictures = pictures_of([Row("", "", scene) for scene in scenes], 1).to(device)
    decoded = vae.decode(vae.encode(pictures).latent_dist.mode()).sample
    pixels = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return sum(detect(picture).scene == scene for picture, scene in zip(pixels, scenes)) / len(scenes)


def mean_tail(values: list[float], tail: int = 50) -> float | None:
    return float(np.mean(values[-tail:])) if values else None


@torch.no_grad()
def encode_latents(vae, pictures: torch.Tensor, device: str, batch: int = 256) -> torch.Tensor:
    """The posterior means, unscaled (the scaling factor is set from their spread afterwards)."""
    out = [
        vae.encode(pictures[i : i + batch].to(device)).latent_dist.mode().cpu() for i in range(0, len(pictures), batch)
    ]
    return torch.cat(out)


@dataclass
class UnetData:
    latents: torch.Tensor  # (N, C, h, w), already times the VAE's scaling factor
    hidden: torch.Tensor  # (N, L, hidden) float16
    lengths: torch.Tensor  # (N,)
    negative: torch.Tensor  # (1, hidden): the end-of-sentence alone after the BOS (the empty plan)
    condition_tokens: int


def unet_loss(unet, projection, scheduler, data: UnetData, index, generator, drop: float, device: str):
    """The v-prediction loss on rows `index`; a `drop` share of rows get the empty plan's condition
    (what guidance's unconditional half reads at draw time)."""
    latents = data.latents[index].to(device)
    lengths = data.lengths[index].clone()
    longest = int(lengths.max())
    hidden = data.hidden[index, :longest].float()
    dropped = torch.rand(len(index), generator=generator) < drop
    if dropped.any():
        hidden[dropped] = 0
        hidden[dropped, 0] = data.negative.float()
        lengths[dropped] = 1
    cond = conditions(projection, hidden.to(device), lengths, data.condition_tokens)
    noise = torch.randn(latents.shape, generator=generator).to(device)
    timesteps = torch.randint(scheduler.config.num_train_timesteps, (len(index),), generator=generator).to(device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps)
    predicted = unet(noisy, timesteps, encoder_hidden_states=cond).sample
    return torch.nn.functional.mse_loss(predicted, target)


CHECKPOINT_STATE = "state.pt"


def save_unet_checkpoint(directory: Path, unet, projection, ema, optimizer, progress: dict) -> None:
    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(tmp / "unet.safetensors"))
        save_file({k: v.contiguous() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
        save_file({k: v.contiguous() for k, v in projection.state_dict().items()}, str(tmp / "projection.safetensors"))
        torch.save(optimizer.state_dict(), tmp / CHECKPOINT_STATE)
        (tmp / "progress.json").write_text(json.dumps(progress, indent=2))

    replace_dir(directory, write)


def load_unet_checkpoint(directory: Path, unet, projection, optimizer) -> tuple[dict, dict]:
    unet.load_state_dict(load_file(str(directory / "unet.safetensors")))
    projection.load_state_dict(load_file(str(directory / "projection.safetensors")))
    optimizer.load_state_dict(torch.load(directory / CHECKPOINT_STATE, weights_only=True))
    return load_file(str(directory / "ema.safetensors")), json.loads((directory / "progress.json").read_text())


def ema_weights(unet, projection) -> dict:
    named = {f"unet.{k}": v for k, v in unet.state_dict().items()}
    named.update({f"projection.{k}": v for k, v in projection.state_dict().items()})
    return {k: v.detach().clone().float() for k, v in named.items()}


@torch.no_grad()
def update_ema(ema: dict, unet, projection, decay: float) -> None:
    for prefix, module in (("unet.", unet), ("projection.", projection)):
        for key, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                ema[prefix + key].mul_(decay).add_(value.float(), alpha=1 - decay)
            else:
                ema[prefix + key].copy_(value)


def train_unet(unet, projection, data: UnetData, recipe, device: str, checkpoint: Path, clock: Clock) -> dict:
    """UNet and projection together (the planner is frozen; its states are read once, beforehand).
    Checkpointed atomically every `checkpoint_every` steps and at the end; resumes from the
    checkpoint when there is one. Returns the record of the run (losses at its ends, steps)."""
    scheduler = train_scheduler()
    unet.to(device).train()
    projection.to(device).train()
    parameters = [*unet.parameters(), *projection.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=recipe.unet_lr, weight_decay=0.01)
    progress = {"step": 0, "seconds": 0.0, "losses": [], "planned": recipe.unet_steps}
    if (checkpoint / "progress.json").is_file():
        ema, progress = load_unet_checkpoint(checkpoint, unet, projection, optimizer)
        clock.spent = progress["seconds"]
    else:
        ema = ema_weights(unet, projection)
    start = progress["step"]
    stop = recipe.unet_steps if recipe.unet_stop_at <= 0 else min(recipe.unet_steps, recipe.unet_stop_at)
    bar = tqdm(total=recipe.unet_steps, initial=start, desc="unet")
    losses = progress["losses"]
    planned = progress.get("planned", recipe.unet_steps)
    step = start
    for step in range(start, stop):
        if clock.up():
            break
        planned = clock.planned(step, start, recipe.unet_steps, planned)
        bar.total = planned
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, planned, recipe.unet_lr)
        generator = step_generator(recipe.seed, step)
        index = torch.randint(len(data.latents), (recipe.unet_batch,), generator=generator)
        loss = unet_loss(unet, projection, scheduler, data, index, generator, recipe.condition_drop, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        update_ema(ema, unet, projection, min(recipe.ema_decay, (1 + step) / (10 + step)))
        losses.append(round(loss.item(), 5))
        bar.update(1)
        bar.set_postfix(loss=f"{mean_tail(losses, 20):.4f}")
        step += 1
        if step % recipe.checkpoint_every == 0:
            progress.update(step=step, seconds=clock.elapsed, losses=losses, planned=planned)
            save_unet_checkpoint(checkpoint, unet, projection, ema, optimizer, progress)
    else:
        step = stop
    bar.close()
    progress.update(step=step, seconds=clock.elapsed, losses=losses, planned=planned)
    save_unet_checkpoint(checkpoint, unet, projection, ema, optimizer, progress)
    return progress


def load_ema(unet, projection, ema: dict) -> None:
    unet.load_state_dict({k.removeprefix("unet."): v for k, v in ema.items() if k.startswith("unet.")})
    projection.load_state_dict(
        {k.removeprefix("projection."): v for k, v in ema.items() if k.startswith("projection.")}
    )


@torch.no_grad()
def fixed_batch_loss(unet, projection, data: UnetData, seed: int, batch: int, device: str, repeats: int = 4) -> float:
    """The loss on one fixed batch with fixed noise (the test's and the model card's yardstick)."""
    scheduler = train_scheduler()
    unet.eval()
    projection.eval()
    total = 0.0
    for repeat in range(repeats):
        generator = step_generator(seed + 7919, repeat)
        index = torch.arange(min(batch, len(data.latents)))
        total += unet_loss(unet, projection, scheduler, data, index, generator, 0.0, device).item()
    return total / repeats


# -- evaluation ---------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(backend, prompts: int, seed: int, cfg_scale: float, batch: int = 32) -> dict:
    """Held-out (dev split) think and direct accuracy with the shapes checker, one picture a prompt,
    seeds seed + i, greedy plans; the same calls the pipeline makes (plan as the model wrote it)."""
    suite = make_suite("dev", prompts, seed)
    plans = [backend.write_plan(p.prompt, seed + i, 0.0) for i, p in enumerate(tqdm(suite, desc="eval plans"))]
    results = {}
    prompts, seeds = [p.prompt for p in suite], [seed + i for i in range(len(suite))]
    for mode in ("think", "direct"):
        mode_plans = plans if mode == "think" else [None] * len(suite)
        pictures = backend.draw_for_prompts(prompts, mode_plans, seeds, cfg_scale, batch)
        scores = [score_image(picture, p) for picture, p in zip(pictures, suite)]
        by_category = defaultdict(list)
        for score in scores:
            by_category[score.category].append(score.passed)
        results[mode] = {
            "overall": sum(s.passed for s in scores) / len(scores),
            **{c: sum(v) / len(v) for c, v in sorted(by_category.items())},
        }
    results["prompts"] = len(suite)
    results["examples"] = [{"prompt": p.prompt, "plan": plan} for p, plan in list(zip(suite, plans))[:4]]
    return results


def time_candidates(backend, cfg_scale: float, repeats: int = 3) -> float:
    """Median seconds to draw 4 candidates from 4 different plans (the studio's draw 4), after a
    warm-up call; threads as the process has them."""
    prompt = "a red circle and a blue square"
    needed = "needed: 1 red circle and 1 blue square, nothing else. Plan: "
    plans = [
        needed + "red circle @ top-left; blue square @ middle-center",
        needed + "blue square @ top-right; red circle @ bottom-left",
        needed + "red circle @ middle-left; blue square @ middle-right",
        needed + "red circle @ top-center; blue square @ bottom-center",
    ]
    backend.draw_images_from_plans(prompt, plans, [0, 1, 2, 3], cfg_scale, 1.0, 0)
    times = []
    for repeat in range(repeats):
        started = time.perf_counter()
        backend.draw_images_from_plans(prompt, plans, [repeat * 4 + k for k in range(4)], cfg_scale, 1.0, 0)
        times.append(time.perf_counter() - started)
    return float(np.median(times))
