"""Train the think-then-generate `shapes-diffusion` model: `python -m weights.build shapes-diffusion
--out weights/shapes-diffusion [--hours H] [--device cpu|cuda] [--resume]`.

The planner is the bundled shapes model's language model; the renderer, a small latent diffusion
model built from diffusers' parts, is trained here from scratch on pictures the shapes renderer draws
exactly, conditioned on the planner's own hidden states of the plan (reasoner/backends/think_generate.py
reads the directory this writes). Stages, each checkpointed under --work (written to a temporary
directory, then renamed), so a stopped run continues with --resume:

  1. planner: the Janus model's text `language_model` + text `lm_head` (--planner-from, default
     weights/shapes), weight for weight, as a LlamaForCausalLM with the shapes tokenizer whose
     end-of-sentence is the begin-of-image token. Its greedy plans are the Janus model's (the same
     weights, the same context), so think is as good as the bundled model's (0.99 of held-out plans
     right). It is copied, not pointed at: 9.4 MB in float16, and the bundled weights stay under the
     40 MB budget with it (shapes 13 MB + shapes-grpo 1.8 MB + this model ~18 MB); a copy also keeps
     the renderer's projection tied to the exact planner it was trained on, should shapes be retrained.
  2. rows and pictures: prompts from the world's train split only (plans as the planner writes them:
     reasoning then `Plan: ...`), a share of random plans under unrelated prompts (read as the
     pipeline gives a person's plan) so pictures follow the plan, and a share of prompts alone
     (direct mode); each scene rendered exactly (72 px). Rebuilt from the seed on resume (seconds).
  3. vae: an AutoencoderKL 72 px -> 9 x 9 x 4 latents (4 levels, 8-32 channels, 0.25 M parameters),
     L1 + L2 reconstruction with object pixels weighted 5x and a tiny KL term; its scaling factor is
     set to 1 / the latents' spread. Measured in a 4-minute probe on this loaded CPU: 8 channels at
     full resolution run more steps than 16 and reach 0.83 of unseen scenes read back exactly
     (16: 0.13); unweighted, the first minutes learn objects as grey blurs (0 exact).
  4. latents of every training picture (the posterior means), then the planner's hidden states of
     every row's text (read once: the planner is frozen).
  5. unet: a UNet2DConditionModel (channels 64-128, cross-attention at both levels, 4.3 M
     parameters) and the projection, trained together with the v-prediction loss on a cosine
     schedule, 10 % of conditions replaced by the empty plan's (guidance's unconditional half),
     an EMA of the weights kept and shipped; checkpoints every --checkpoint-every steps.
  6. ship: --out, float16 weights, with DPM-Solver++ (--sample-steps steps) as the scheduler.
  7. eval: held-out (dev) think and direct accuracy with the shapes checker and the seconds that 4
     candidates take, written into --out's model card (README.md) and recipe.json.

Why latents, and these sizes. The 9 x 9 latent grid is the bundled VQ's grid: one latent per 8 x 8
patch, so a 24 px cell is exactly 3 x 3 latents and an object's latents depend on that object alone
(docs/shapes-world.md). Pixels (72 x 72 x 3) would cost the UNet 64 times the positions per step on
this CPU; StableDiffusionPipeline needs a VAE anyway. A 9 x 9 UNet with channels (64, 128) draws a
batch of 8 (4 candidates x guidance) in about 60 ms a step on one loaded core, so 10 DPM-Solver++
steps keep 4 candidates under a second with the planner's reading and the VAE decode included.
Cosine betas + v-prediction: the last training step has no signal left, which is what sampling
starts from, and the target stays well scaled at every noise level (few-step sampling is sensitive
to both). `--hours` shares the wall time: 15 % VAE, 70 % UNet, the rest for data, hidden states,
shipping and evaluation.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from reasoner.backends.think_generate import ThinkGenerateBackend
from reasoner.backends.think_generate_loading import (
    PlanProjection,
    ProjectionConfig,
    ThinkGenerateConfig,
    planner_from_janus,
)
from reasoner.models.random_think_generate import RandomThinkGenerate, save_think_generate_dir
from reasoner.shapes import random_scene

from . import diffusion_parts as parts

WEIGHTS = Path(__file__).resolve().parents[1]
STAGE_SHARES = {"vae": 0.15, "unet": 0.70}  # of --hours; the rest: data, hidden states, ship, eval


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


@dataclass
class DiffusionRecipe:
    seed: int = field(default=0, metadata={"help": "seed of every random choice in the recipe"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    workers: int = field(default=1, metadata={"help": "processes rendering pictures"})
    planner_from: str = field(
        default=str(WEIGHTS / "shapes"), metadata={"help": "the Janus model directory whose language model plans"}
    )
    hours: float = field(
        default=0.0,
        metadata={"help": "if > 0, the wall time of the run: 15 %% VAE, 70 %% UNet, the rest data, ship and eval"},
    )
    pool_size: int = field(default=20_000, metadata={"help": "training rows (prompt/plan and picture)"})
    direct_share: float = field(default=0.2, metadata={"help": "share of rows conditioned on the prompt alone"})
    unrelated_share: float = field(
        default=0.15, metadata={"help": "share of rows with a random plan under an unrelated prompt"}
    )
    vae_channels: str = field(default="8,16,32,32", metadata={"help": "AutoencoderKL block channels (4: 9 x 9)"})
    vae_groups: int = field(default=4, metadata={"help": "GroupNorm groups in the VAE"})
    latent_channels: int = field(default=4, metadata={"help": "latent channels"})
    vae_steps: int = field(default=3000, metadata={"help": "VAE training steps"})
    vae_batch: int = field(default=16, metadata={"help": "pictures per VAE step"})
    vae_lr: float = field(default=3e-3, metadata={"help": "VAE peak learning rate"})
    vae_object_weight: float = field(default=4.0, metadata={"help": "extra loss weight of object pixels"})
    vae_kl_weight: float = field(default=1e-6, metadata={"help": "weight of the VAE's KL term"})
    unet_channels: str = field(default="64,128", metadata={"help": "UNet block channels"})
    unet_groups: int = field(default=16, metadata={"help": "GroupNorm groups in the UNet"})
    attention_head_dim: int = field(default=32, metadata={"help": "UNet attention head size"})
    cross_attention_dim: int = field(default=128, metadata={"help": "the projection's output size"})
    unet_steps: int = field(default=20_000, metadata={"help": "UNet training steps (the time budget may stop sooner)"})
    unet_batch: int = field(default=64, metadata={"help": "rows per UNet step"})
    unet_lr: float = field(default=1e-3, metadata={"help": "UNet peak learning rate"})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay of the shipped UNet and projection"})
    condition_drop: float = field(default=0.1, metadata={"help": "share of rows trained on the empty plan"})
    checkpoint_every: int = field(default=200, metadata={"help": "UNet steps between checkpoints"})
    unet_stop_at: int = field(
        default=0,
        metadata={"help": "if > 0, stop the UNet stage at this step, checkpointed (to continue later with --resume)"},
    )
    sample_steps: int = field(default=10, metadata={"help": "DPM-Solver++ steps of the shipped model"})
    # chosen on train-split prompts, not the held-out ones (`reasoner eval --split train --seed 11`, the
    # first shipped model, think): 1.5 0.805, 2 0.825, 2.5 0.820, 3 0.780 (benchmarks/RESULTS.md)
    cfg_scale: float = field(default=2.0, metadata={"help": "the shipped default guidance scale"})
    condition_tokens: int = field(default=128, metadata={"help": "fixed condition length (> max plan tokens)"})
    eval_prompts: int = field(default=200, metadata={"help": "held-out prompts for think and direct (0: no eval)"})
    card_note: str = field(default="", metadata={"help": "a line at the top of the model card (e.g. a trial run)"})

    def __post_init__(self):
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, not {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda asked for, but torch sees no CUDA device")
        if self.hours < 0:
            raise ValueError(f"hours must be >= 0, not {self.hours}")
        for name in ("direct_share", "unrelated_share", "condition_drop"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), not {getattr(self, name)}")
        if self.direct_share + self.unrelated_share >= 1:
            raise ValueError("direct_share + unrelated_share must leave rows with the prompt's own plans")
        if len(ints(self.vae_channels)) < 2:
            raise ValueError("vae_channels needs at least 2 levels")

    def seconds(self, stage: str) -> float | None:
        return self.hours * 3600 * STAGE_SHARES[stage] if self.hours > 0 else None


def log(message: str) -> None:
    print(f"[build {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Work:
    """The work directory: the recipe, one checkpoint a stage and what each stage took."""

    def __init__(self, recipe: DiffusionRecipe, directory: Path, resume: bool):
        self.recipe, self.directory = recipe, Path(directory)
        taken = self.directory / "taken.json"
        if taken.is_file() and not resume:
            raise SystemExit(
                f"{self.directory} holds an earlier run: pass --resume to continue it, or remove the directory"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
        self.taken = json.loads(taken.read_text()) if taken.is_file() else {}

    def path(self, name: str) -> Path:
        return self.directory / name

    def record(self, key: str, value) -> None:
        self.taken[key] = value
        tmp = self.path("taken.json.tmp")
        tmp.write_text(json.dumps(self.taken, indent=2))
        tmp.replace(self.path("taken.json"))


def build_shapes_diffusion(recipe: DiffusionRecipe, work_dir: Path, out: Path, resume: bool = False) -> dict:
    """Every stage (module docstring); returns what the run took (and the figures, when evaluated)."""
    torch.manual_seed(recipe.seed)
    work = Work(recipe, work_dir, resume)
    started = time.perf_counter()
    planner, tokenizer = planner_stage(work)
    config = shipped_config(recipe)
    rows = parts.training_rows(recipe.pool_size, recipe.seed, config, recipe.direct_share, recipe.unrelated_share)
    log(f"rendering {len(rows)} pictures")
    pictures = parts.pictures_of(rows, recipe.workers)
    vae = vae_stage(work, pictures)
    latents = latents_stage(work, vae, pictures)
    unet = parts.new_unet(
        ints(recipe.unet_channels), recipe.latent_channels, config.image_size // vae_scale(recipe),
        recipe.cross_attention_dim, recipe.attention_head_dim, recipe.unet_groups,
    )  # fmt: skip
    projection = PlanProjection(ProjectionConfig(planner.config.hidden_size, recipe.cross_attention_dim))
    backend = ThinkGenerateBackend(planner, tokenizer, renderer_of(vae, unet), projection, config, "shapes-diffusion")
    data = unet_data(backend, rows, latents * vae.config.scaling_factor, recipe)
    unet_stage(work, unet, projection, data)
    work.record("build_seconds", round(time.perf_counter() - started, 1))
    ship(work, RandomThinkGenerate(planner, tokenizer, renderer_of(vae, unet), projection, config), out)
    if recipe.eval_prompts > 0:
        eval_stage(work, out)
    write_card(work, out)
    log(f"wrote {out}")
    return work.taken


def vae_scale(recipe: DiffusionRecipe) -> int:
    return 2 ** (len(ints(recipe.vae_channels)) - 1)


def shipped_config(recipe: DiffusionRecipe) -> ThinkGenerateConfig:
    """reasoner.json of the shipped model: the Janus model's own think template and plan limits."""
    janus = json.loads(Path(recipe.planner_from, "reasoner.json").read_text())
    return ThinkGenerateConfig(
        world="shapes",
        image_size=72,
        default_cfg_scale=recipe.cfg_scale,
        num_inference_steps=recipe.sample_steps,
        think=janus["think"],
        plan_prefix=janus.get("plan_prefix", " "),
        direct_prefix="User: ",
        max_plan_tokens=janus.get("max_plan_tokens", 96),
        max_prompt_chars=janus.get("max_prompt_chars", 300),
        condition_tokens=recipe.condition_tokens,
    )


def planner_stage(work: Work):
    """1. The planner, taken out of --planner-from once and kept in the work directory."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    directory = work.path("planner")
    if not (directory / "config.json").is_file():
        log(f"stage 1/7: planner from {work.recipe.planner_from}")
        planner, tokenizer = planner_from_janus(Path(work.recipe.planner_from))

        def write(tmp: Path) -> None:
            planner.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)

        parts.replace_dir(directory, write)
    planner = LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval().requires_grad_(False)
    return planner.to(work.recipe.device), AutoTokenizer.from_pretrained(directory)


def vae_stage(work: Work, pictures: torch.Tensor):
    """3. The VAE: as saved, or trained, with its scaling factor, then saved."""
    from diffusers import AutoencoderKL

    recipe, directory = work.recipe, work.path("vae")
    if (directory / "config.json").is_file():
        return AutoencoderKL.from_pretrained(directory).to(recipe.device).eval().requires_grad_(False)
    log(f"stage 3/7: VAE, {recipe.vae_steps} steps (budget {recipe.seconds('vae') or 'none'} s)")
    vae = parts.new_vae(ints(recipe.vae_channels), recipe.latent_channels, 72, recipe.vae_groups)
    record = parts.train_vae(vae, pictures, recipe, recipe.device, parts.Clock(recipe.seconds("vae")))
    sample = parts.encode_latents(vae, pictures[:2048], recipe.device)
    vae.register_to_config(scaling_factor=float(1 / sample.std()))
    rng = random.Random(recipe.seed + 1)
    scenes = [random_scene(rng, 1, 4) for _ in range(256)]  # random scenes it never saw
    with torch.no_grad():
        held_out = parts.pictures_of([parts.Row("", "", scene) for scene in scenes], 1).to(recipe.device)
        record["held_loss"] = parts.vae_loss(vae, held_out, 0.0).item()
    record["reconstruction_exact"] = parts.reconstruction_exact(vae, scenes, recipe.device)
    work.record("vae", record)
    parts.replace_dir(directory, lambda tmp: vae.save_pretrained(tmp, safe_serialization=True))
    return vae.requires_grad_(False)


def latents_stage(work: Work, vae, pictures: torch.Tensor) -> torch.Tensor:
    """4a. The posterior means of every picture, saved (a temporary file, then renamed)."""
    path = work.path("latents.safetensors")
    if path.is_file():
        latents = load_file(str(path))["latents"]
        if len(latents) == len(pictures):
            return latents
    log(f"stage 4/7: latents of {len(pictures)} pictures")
    latents = parts.encode_latents(vae, pictures, work.recipe.device)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"latents": latents.contiguous()}, str(tmp))
    tmp.replace(path)
    return latents


def renderer_of(vae, unet):
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline(
        vae=vae, unet=unet, scheduler=parts.sample_scheduler(), text_encoder=None, tokenizer=None,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def unet_data(backend, rows, latents: torch.Tensor, recipe: DiffusionRecipe) -> parts.UnetData:
    """4b. The planner's hidden states of every row (frozen planner: read once) and of the empty plan."""
    log(f"stage 4/7: the planner reads {len(rows)} rows")
    hidden, lengths = parts.hidden_states(backend, rows)
    if int(lengths.max()) > recipe.condition_tokens:
        raise SystemExit(f"a training text is {int(lengths.max())} tokens: raise --condition-tokens above it")
    negative, _ = parts.hidden_states(backend, [parts.Row("", "", None)])
    return parts.UnetData(latents, hidden, lengths, negative[0, :1], recipe.condition_tokens)


def unet_stage(work: Work, unet, projection, data: parts.UnetData) -> None:
    """5. UNet + projection, from the checkpoint when there is one; the EMA weights are kept."""
    recipe, checkpoint = work.recipe, work.path("unet-checkpoint")
    before = parts.fixed_batch_loss(unet, projection, data, recipe.seed, 64, recipe.device)
    if (checkpoint / "progress.json").is_file():
        progress = json.loads((checkpoint / "progress.json").read_text())
        log(f"stage 5/7: UNet, resuming at step {progress['step']} of {recipe.unet_steps}")
    else:
        log(f"stage 5/7: UNet, {recipe.unet_steps} steps (budget {recipe.seconds('unet') or 'none'} s)")
    progress = parts.train_unet(
        unet, projection, data, recipe, recipe.device, checkpoint, parts.Clock(recipe.seconds("unet"))
    )
    trained = parts.fixed_batch_loss(unet, projection, data, recipe.seed, 64, recipe.device)
    parts.load_ema(unet, projection, load_file(str(checkpoint / "ema.safetensors")))
    after = parts.fixed_batch_loss(unet, projection, data, recipe.seed, 64, recipe.device)
    losses = progress["losses"]
    work.record(
        "unet",
        {
            "steps": progress["step"],
            "seconds": round(progress["seconds"], 1),
            "first_loss": parts.mean_tail(losses[:20]),
            "last_loss": parts.mean_tail(losses, 50),
            "fixed_batch_loss": {"start": before, "trained": trained, "ema": after},
            "losses_every_100": [
                parts.mean_tail(losses[max(0, i - 20) : i + 1], 21) for i in range(0, len(losses), 100)
            ],
        },
    )
    unet.eval().requires_grad_(False)
    projection.eval().requires_grad_(False)


def ship(work: Work, model: RandomThinkGenerate, out: Path) -> None:
    """6. The model directory, float16 weights, written beside --out and renamed into place."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # "modules that should be kept in float32: []": there are none
    shipped = RandomThinkGenerate(
        copy.deepcopy(model.planner).to("cpu", torch.float16),
        model.tokenizer,
        renderer_of(copy.deepcopy(model.renderer.vae).to("cpu", torch.float16),
                    copy.deepcopy(model.renderer.unet).to("cpu", torch.float16)),
        copy.deepcopy(model.projection).to("cpu", torch.float16),
        model.config,
    )  # fmt: skip

    def write(tmp: Path) -> None:
        save_think_generate_dir(tmp, shipped)
        (tmp / "recipe.json").write_text(json.dumps({"recipe": asdict(work.recipe), "taken": work.taken}, indent=2))

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    parts.replace_dir(Path(out), write)
    files = [p for p in Path(out).rglob("*.safetensors")]
    work.record(
        "shipped_mb",
        {
            "planner": round(sum(p.stat().st_size for p in files if "planner" in p.parts) / 1e6, 2),
            "renderer_and_projection": round(sum(p.stat().st_size for p in files if "planner" not in p.parts) / 1e6, 2),
        },
    )


def eval_stage(work: Work, out: Path) -> None:
    """7. The shipped directory, loaded as the studio loads it, on held-out prompts; then its speed."""
    recipe = work.recipe
    backend = ThinkGenerateBackend.from_pretrained(out, device=recipe.device, name="shapes-diffusion")
    log(f"stage 7/7: eval on {recipe.eval_prompts} held-out prompts")
    figures = parts.evaluate(backend, recipe.eval_prompts, recipe.seed, recipe.cfg_scale)
    threads = torch.get_num_threads()
    cpu = ThinkGenerateBackend.from_pretrained(out, device="cpu", name="shapes-diffusion")
    figures["seconds_4_candidates"] = round(parts.time_candidates(cpu, recipe.cfg_scale), 3)
    figures["threads"] = threads
    work.record("eval", figures)
    text = json.loads((out / "recipe.json").read_text())
    text["taken"] = work.taken
    (out / "recipe.json").write_text(json.dumps(text, indent=2))


def write_card(work: Work, out: Path) -> None:
    """The model card: data, recipe, figures (from taken.json), in --out/README.md."""
    recipe, taken = work.recipe, work.taken
    vae, unet, size, ev = taken.get("vae", {}), taken.get("unet", {}), taken.get("shipped_mb", {}), taken.get("eval")
    note = f"**{recipe.card_note}**\n\n" if recipe.card_note else ""
    if ev:
        figures = (
            f"Held-out dev prompts: {ev['prompts']}, one picture each (seed 0 + i), guidance {recipe.cfg_scale}, "
            f"{recipe.sample_steps} DPM-Solver++ steps, greedy plans.\n\n"
            "| mode | overall | " + " | ".join(k for k in ev["think"] if k != "overall") + " |\n"
            "| --- | --- | "
            + " | ".join("---" for k in ev["think"] if k != "overall")
            + " |\n"
            + "".join(
                f"| {mode} | {ev[mode]['overall']:.3f} | "
                + " | ".join(f"{v:.2f}" for k, v in ev[mode].items() if k != "overall")
                + " |\n"
                for mode in ("think", "direct")
            )
            + f"\n4 candidates from 4 plans: {ev['seconds_4_candidates']} s on the CPU "
            f"({ev['threads']} torch threads), planner reading and VAE decode included.\n"
        )
    else:
        figures = "Not evaluated (--eval-prompts 0).\n"
    card = f"""# shapes-diffusion

{note}A think-then-generate model of the shapes world (docs/shapes-world.md): the bundled `shapes`
model's language model writes the plan, and a small latent diffusion renderer draws it from the
planner's own last hidden states of the plan (`reasoner/backends/think_generate.py`). It does not
reflect (no model here looks at pictures). Built by `python -m weights.build shapes-diffusion`
(`weights/recipe/diffusion.py`, whose docstring gives the reasons for each choice).

## Data

{recipe.pool_size} rows from the world's train prompts (dev and test never seen): the prompt's own
plans (reasoning, then `Plan: ...`), {recipe.unrelated_share:.0%} random plans of 1-4 objects under
unrelated prompts, {recipe.direct_share:.0%} prompts alone (direct mode). Every picture is the exact
rendering of its scene (72 x 72).

## Recipe

- planner: {shown(recipe.planner_from)}'s text language model + lm_head as a LlamaForCausalLM, frozen
  ({size.get("planner", "?")} MB float16).
- VAE: AutoencoderKL, channels {recipe.vae_channels}, 72 px -> 9 x 9 x {recipe.latent_channels}
  latents; {vae.get("steps", "?")} steps of {recipe.vae_batch}, loss {fmt(vae.get("first_loss"))} ->
  {fmt(vae.get("last_loss"))} (held-out L1 + L2 {fmt(vae.get("held_loss"))}); the detector reads
  {fmt(vae.get("reconstruction_exact"))} of 256 unseen random scenes back exactly after encoding and
  decoding (the renderer's ceiling).
- UNet2DConditionModel, channels {recipe.unet_channels}, cross-attention {recipe.cross_attention_dim},
  and the LayerNorm + Linear projection, trained together: v-prediction, cosine schedule,
  {recipe.condition_drop:.0%} empty-plan conditions, EMA {recipe.ema_decay}; {unet.get("steps", "?")} steps
  of {recipe.unet_batch} in {unet.get("seconds", "?")} s, loss {fmt(unet.get("first_loss"))} ->
  {fmt(unet.get("last_loss"))}; fixed-batch loss {fixed(unet)}.
- Sampler: DPM-Solver++, {recipe.sample_steps} steps, guidance {recipe.cfg_scale} (the empty plan as the
  negative condition). Renderer + projection files: {size.get("renderer_and_projection", "?")} MB float16.

## Figures

{figures}
The full recipe and what each stage took: `recipe.json`.
"""
    (Path(out) / "README.md").write_text(card)


def shown(path: str) -> str:
    """A path as the card shows it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(WEIGHTS.parent))
    except ValueError:
        return path


def fmt(value) -> str:
    return "?" if value is None else f"{value:.4f}"


def fixed(unet: dict) -> str:
    losses = unet.get("fixed_batch_loss")
    if not losses:
        return "?"
    return f"{fmt(losses['start'])} untrained -> {fmt(losses['trained'])} trained ({fmt(losses['ema'])} EMA)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m weights.build shapes-diffusion", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=WEIGHTS / "shapes-diffusion")
    parser.add_argument(
        "--work", type=Path, default=Path(".build/shapes-diffusion"), help="checkpoints, to resume a stopped run"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --work from its checkpoints")
    for f in fields(DiffusionRecipe):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=f.metadata["help"]
        )
    args = parser.parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    try:
        recipe = DiffusionRecipe(**{f.name: getattr(args, f.name) for f in fields(DiffusionRecipe)})
    except ValueError as error:
        parser.error(str(error))
    build_shapes_diffusion(recipe, args.work, args.out, args.resume)
    return 0
