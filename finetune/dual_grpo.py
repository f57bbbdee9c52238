"""`DualGRPOTrainer`: Dual-GRPO (Think-Then-Generate) on a think-then-generate model.

Two policies share one rollout. The planner (a causal LM, LoRA) writes each trajectory's plan;
the renderer (the diffusion UNet, all its weights) draws it with a stochastic sampler whose every
step has a log-probability (`diffusion_sampler.py`). Each half has its own rewards and its own
group-normalised advantage: the planner's rewards judge the picture against the prompt (the
checker: image-grounded, as T2G's), the renderer's judge the picture against its own plan
(`plan_followed`), so a faithful drawing of a wrong plan is not held against the renderer.
A step, as `train_step` reads:
1. the step's prompts (a fixed order from the run seed, so resume continues it);
2. per prompt G plans sampled at `plan_temperature` (their token ids kept);
3. each plan read by the planner as the renderer reads it (its hidden states, projected), then
   drawn from its own noise with DDIM at eta > 0; every step's sample and log-prob kept;
4. both halves' rewards and advantages;
5. the planner's loss on its plan tokens (clipped ratio, k3 KL to the planner without its LoRA),
   the renderer's on its sampled steps (clipped ratio, KL of the Gaussian means to the UNet it
   started from); one optimizer step over the halves the schedule trains this step.
`schedule`: balanced (both halves every step, T2G's best), staged (the planner first, then the
renderer), or one half alone. The tuned model is written as a whole think-then-generate
directory (`out/model`: the LoRA merged into the planner, the UNet's new weights), loadable by
`--model DIR` everywhere. Not built: a LoRA on the UNet (it trains whole: 4.3 M parameters in
the shapes model), several processes (accelerate), and direct-mode (prompt-only) rollouts.
"""

from __future__ import annotations

import copy
import json
import random
import sys
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from reasoner.backends.think_generate import ThinkGenerateBackend
from reasoner.backends.think_generate_loading import RENDERER_DIR, load_think_generate, planner_from_janus
from reasoner.errors import PlanError
from reasoner.eval import EvalSettings, evaluate
from reasoner.models.catalog import resolve
from reasoner.models.random_think_generate import RandomThinkGenerate, save_think_generate_dir

from . import checkpoints
from .config import ConfigError
from .diffusion_sampler import StochasticSampler, decode_pictures
from .dual_config import DualGRPOConfig
from .loss import group_advantages, grpo_loss
from .rewards import RewardEnsemble
from .trainer import read_prompts, step_prompts

PLANNER_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class DualGRPOTrainer:
    def __init__(self, config: DualGRPOConfig):
        self.config = config
        self.run_dir = Path(config.out)
        source = resolve(config.model)
        if source.kind != "think-generate":
            raise ConfigError(
                f"model={config.model!r}: Dual-GRPO trains a think-then-generate model, not {source.kind}"
            )
        parts = load_think_generate(source.directory, "cpu", torch.float32)
        if config.planner_from:
            parts.planner = new_planner(config.planner_from, parts)
        self.parts, self.source_dir = parts, source.directory
        torch.manual_seed(config.seed)
        parts.planner.requires_grad_(False)
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0)
        lora.target_modules = [name for name in PLANNER_PROJECTIONS if has_module(parts.planner, name)]
        self.planner = get_peft_model(parts.planner, lora)
        self.unet = parts.renderer.unet
        self.unet.requires_grad_(False)
        self.reference_unet = copy.deepcopy(self.unet).eval() if config.renderer_beta > 0 else None
        self.unet.requires_grad_(True)
        parts.renderer.vae.requires_grad_(False)
        parts.projection.requires_grad_(False)
        # the backend reads and writes with the policy as it is now (the planner with its LoRA)
        self.backend = ThinkGenerateBackend(
            self.planner, parts.tokenizer, parts.renderer, parts.projection, parts.config, source.name
        )
        self.cfg_scale = config.cfg_scale or parts.config.default_cfg_scale
        scheduler = parts.renderer.scheduler.config
        self.sampler = StochasticSampler(scheduler, config.sample_steps, config.eta, self.cfg_scale)
        scale = 2 ** (len(parts.renderer.vae.config.block_out_channels) - 1)
        self.latent_size = parts.config.image_size // scale
        self.trained = torch.nn.ModuleDict({"planner": self.planner, "unet": self.unet})  # what a checkpoint holds
        self.planner_parameters = [p for p in self.planner.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": self.planner_parameters, "lr": config.planner_learning_rate},
                {"params": list(self.unet.parameters()), "lr": config.renderer_learning_rate},
            ],
            weight_decay=0.0,
        )
        preference = config.preference_model or None
        self.planner_rewards = RewardEnsemble.of(config.rewards, config.reward_weights, preference)
        self.renderer_rewards = RewardEnsemble.of(config.renderer_rewards, config.renderer_reward_weights, preference)
        self.prompts = read_prompts(config.prompts, config.seed)
        self.step = 0

    # -- one step ------------------------------------------------------------------------------------

    def train_step(self) -> dict:
        config, backend = self.config, self.backend
        started = time.perf_counter()
        train_planner, train_renderer = config.trains(self.step)
        # 1. The step's prompts
        prompts = step_prompts(self.prompts, self.step, config.prompts_per_step, config.seed)
        # 2. G sampled plans a prompt, with their token ids
        self.planner.eval()
        rows = []  # (prompt index, context ids, plan ids, plan text)
        for index, prompt in enumerate(prompts):
            seeds = [self.seed_of(index, g) for g in range(config.group_size)]
            context, written = backend.write_plan_ids(prompt, seeds, config.plan_temperature)
            rows += [(index, context, ids, backend.text_until_eos(ids)) for ids in written]
        texts = [prompts[r[0]] for r in rows]
        plans = [r[3] for r in rows]
        # 3. Conditions as the renderer reads them, then pictures through the stochastic sampler
        with torch.no_grad():
            conditions = torch.cat([self.condition_of(prompt, plan) for prompt, plan in zip(texts, plans)])
            negative = backend.negative_condition() if self.cfg_scale > 1 else None
        generators = [torch.Generator().manual_seed(self.seed_of(r[0], g, picture=True)) for g, r in enumerate(rows)]
        self.unet.eval()
        trajectory = self.sampler.sample(self.unet, conditions, negative, generators, self.latent_size)
        pictures = decode_pictures(self.parts.renderer.vae, trajectory.final)
        rolled = time.perf_counter()
        # 4. Rewards and advantages, one of each per half
        groups = torch.tensor([r[0] for r in rows])
        metrics = {"step": self.step + 1, "rollout_seconds": rolled - started}
        planner_reward, components = self.planner_rewards(texts, plans, pictures)
        renderer_reward, renderer_components = self.renderer_rewards(texts, plans, pictures)
        for name, values in {**components, **renderer_components}.items():
            metrics[f"reward/{name}"] = sum(values) / len(values)
        if "checker" in components:
            metrics["exact"] = sum(v == 1.0 for v in components["checker"]) / len(rows)
        planner_advantages = group_advantages(torch.tensor(planner_reward), groups, config.scale_rewards)
        renderer_advantages = group_advantages(torch.tensor(renderer_reward), groups, config.scale_rewards)
        # 5. The losses of the halves this step trains, one optimizer step
        if train_planner:
            metrics.update(self.planner_loss(rows, planner_advantages))
        if train_renderer:
            metrics.update(self.renderer_loss(trajectory, conditions, negative, renderer_advantages))
        self.optimizer_step(train_planner, train_renderer)
        metrics["trained"] = "+".join(n for n, on in (("planner", train_planner), ("renderer", train_renderer)) if on)
        metrics["step_seconds"] = time.perf_counter() - started
        self.step += 1
        return metrics

    def seed_of(self, prompt_index: int, member: int, picture: bool = False) -> int:
        """A trajectory's seed: a function of the run seed, the step and its place (resume repeats it)."""
        key = f"{self.config.seed}:{self.step}:{prompt_index}:{member}:{'picture' if picture else 'plan'}"
        return random.Random(key).randrange(2**31)

    def condition_of(self, prompt: str, plan: str) -> torch.Tensor:
        """The plan as the renderer reads it; a plan too long to read gets the empty plan's condition
        (its picture then scores what a picture of nothing scores, which is what such a plan earns)."""
        try:
            return self.backend.plan_condition(prompt, plan)
        except PlanError:  # longer than the condition the renderer reads
            return self.backend.negative_condition()

    def planner_loss(self, rows, advantages: torch.Tensor) -> dict:
        """Clipped policy gradient over every trajectory's plan tokens, k3 KL to the LoRA-less planner."""
        config = self.config
        step_tokens = sum(len(r[2]) for r in rows)
        self.planner.train()
        totals = {"planner/loss": 0.0, "planner/kl": 0.0, "planner/clip_fraction": 0.0}
        for start in range(0, len(rows), config.micro_batch):
            chunk = list(range(start, min(start + config.micro_batch, len(rows))))
            ids, mask, positions = plan_batch([rows[i] for i in chunk], self.backend.pad_id)
            logps = self.plan_log_probs(ids, positions)
            with torch.no_grad(), self.planner.disable_adapter():
                reference = self.plan_log_probs(ids, positions) if config.beta > 0 else None
            parts = grpo_loss(
                logps, None, reference, advantages[chunk], mask, config.clip_range, config.beta, step_tokens
            )
            parts.loss.backward()
            totals["planner/loss"] += float(parts.loss.detach())
            totals["planner/kl"] += parts.kl / max(step_tokens, 1)
            totals["planner/clip_fraction"] += parts.clipped / max(step_tokens, 1)
        self.planner.eval()
        totals["planner/plan_tokens"] = step_tokens / len(rows)
        return totals

    def plan_log_probs(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(rows, plan length): log-prob of each written plan token at the sampling temperature.
        Rows are right-padded, so causal attention keeps padding out of every real token's logits."""
        logits = self.planner(input_ids=ids).logits.float()
        predicting = torch.gather(logits, 1, (positions - 1)[:, :, None].expand(-1, -1, logits.shape[-1]))
        logps = torch.log_softmax(predicting / self.config.plan_temperature, dim=-1)
        return torch.gather(logps, 2, torch.gather(ids, 1, positions)[:, :, None]).squeeze(2)

    def renderer_loss(self, trajectory, conditions: torch.Tensor, negative, advantages: torch.Tensor) -> dict:
        """Clipped policy gradient over the sampled denoising steps, KL of the means to the start UNet."""
        config = self.config
        count = self.sampler.stochastic_steps
        chosen = max(1, round(count * config.renderer_step_share))
        steps = sorted(random.Random(f"{config.seed}:{self.step}:steps").sample(range(count), chosen))
        rows = conditions.shape[0]
        step_tokens = rows * len(steps)
        self.unet.train()
        totals = {"renderer/loss": 0.0, "renderer/kl": 0.0}
        for start in range(0, rows, config.micro_batch):
            chunk = list(range(start, min(start + config.micro_batch, rows)))
            part = type(trajectory)(trajectory.latents[chunk], trajectory.log_probs[chunk])
            logps, kl = self.sampler.step_log_probs(
                self.unet, part, steps, conditions[chunk], negative, self.reference_unet
            )
            mask = torch.ones_like(logps, dtype=torch.bool)
            parts = grpo_loss(logps, None, None, advantages[chunk], mask, config.clip_range, 0.0, step_tokens)
            loss = parts.loss
            if kl is not None:
                loss = loss + config.renderer_beta * kl.sum() / step_tokens
                totals["renderer/kl"] += float(kl.detach().sum()) / step_tokens
            loss.backward()
            totals["renderer/loss"] += float(loss.detach())
        self.unet.eval()
        totals["renderer/steps_trained"] = len(steps)
        return totals

    def optimizer_step(self, planner: bool, renderer: bool) -> None:
        rate = min(1.0, (self.step + 1) / (self.config.warmup_steps + 1))  # warm-up, then constant
        groups = self.optimizer.param_groups
        groups[0]["lr"] = self.config.planner_learning_rate * rate if planner else 0.0
        groups[1]["lr"] = self.config.renderer_learning_rate * rate if renderer else 0.0
        for group, on in zip(groups, (planner, renderer)):
            if on and self.config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(group["params"], self.config.max_grad_norm)
            if not on:  # a half not trained this step keeps its weights and its Adam moments
                for p in group["params"]:
                    p.grad = None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # -- the run -------------------------------------------------------------------------------------

    def evaluate(self) -> dict:
        """Held-out think and direct accuracy of the model as it is now, drawn as the studio draws."""
        self.planner.eval()
        self.unet.eval()
        settings = EvalSettings(prompts=self.config.eval_prompts, cfg_scale=self.cfg_scale)
        results = evaluate(self.backend, ["think", "direct"], settings)
        return {f"dev/{mode}": figures["overall"] for mode, figures in results.accuracy.items()}

    def train(self) -> Path:
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if config.resume:
            latest = checkpoints.latest_checkpoint(self.run_dir)
            if latest is None:
                raise checkpoints.CheckpointError(f"--resume: {self.run_dir} holds no complete checkpoint")
            self.step = checkpoints.load_checkpoint(latest, self.trained, self.optimizer)
            self.log(f"resumed from {latest} at step {self.step}")
        elif checkpoints.latest_checkpoint(self.run_dir) is not None:
            raise ConfigError(f"out={config.out!r} already holds checkpoints: pass --resume or another --out")
        (self.run_dir / "config.json").write_text(config.to_json())
        metrics_file = self.run_dir / "metrics.jsonl"
        if self.step == 0 and config.eval_every:
            self.write(metrics_file, {"step": 0, **self.evaluate()})
        bar = None
        if config.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=config.steps, initial=self.step, desc="dual-grpo", unit="step", file=sys.stderr)
        started = time.monotonic()
        while self.step < config.steps:
            metrics = self.train_step()
            out_of_time = bool(config.max_minutes) and time.monotonic() - started >= 60 * config.max_minutes
            last = self.step == config.steps or out_of_time
            switching = config.schedule == "staged" and config.trains(self.step) != config.trains(self.step - 1)
            if config.eval_every and (self.step % config.eval_every == 0 or last or switching):
                metrics.update(self.evaluate())
            if self.step % config.save_every == 0 or last:
                settings = json.loads(config.to_json())
                checkpoints.save_checkpoint(self.run_dir, self.step, self.trained, self.optimizer, settings)
                checkpoints.prune_checkpoints(self.run_dir, config.keep_checkpoints)
            self.write(metrics_file, metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(exact=f"{metrics.get('exact', 0):.3f}", trained=metrics["trained"])
            if out_of_time:
                self.log(f"stopping after step {self.step}: the {config.max_minutes:g}-minute budget is spent")
                break
        if bar is not None:
            bar.close()
        return self.finish()

    def finish(self) -> Path:
        """`out/model`: the whole tuned model, in the dtype the start model was stored in."""
        final = self.run_dir / "model"
        planner = copy.deepcopy(self.planner).merge_and_unload()
        renderer = copy.deepcopy(self.parts.renderer)
        stored = stored_dtype(self.source_dir)
        projection = copy.deepcopy(self.parts.projection)
        if stored != torch.float32:  # the tuned model is stored as the start model was
            planner, projection = planner.to(stored), projection.to(stored)
            renderer.to(stored)
        model = RandomThinkGenerate(planner, self.parts.tokenizer, renderer, projection, self.parts.config)
        save_think_generate_dir(final, model)
        for path in (final / RENDERER_DIR).glob("*/config.json"):  # diffusers records where it was loaded from
            values = json.loads(path.read_text())
            if values.pop("_name_or_path", None) is not None:
                path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
        self.log(f"wrote {final}")
        return final

    def write(self, path: Path, metrics: dict) -> None:
        with open(path, "a") as handle:
            handle.write(json.dumps(metrics) + "\n")

    def log(self, message: str) -> None:
        print(f"[finetune] {message}", file=sys.stderr, flush=True)


def new_planner(janus_dir: str, parts):
    """The text language model of `janus_dir` as the planner, where it fits the renderer's projection
    and writes with the model's tokenizer (the same vocabulary: plans are read back token for token)."""
    planner, tokenizer = planner_from_janus(Path(janus_dir))
    width = parts.projection.config.in_features
    if planner.config.hidden_size != width:
        raise ConfigError(
            f"planner_from={janus_dir!r}: hidden size {planner.config.hidden_size}, the projection reads {width}"
        )
    if tokenizer.get_vocab() != parts.tokenizer.get_vocab():
        raise ConfigError(f"planner_from={janus_dir!r}: its tokenizer is not the model's")
    return planner  # float32, in eval mode, as planner_from_janus gives it


def has_module(model: torch.nn.Module, suffix: str) -> bool:
    return any(name.endswith(suffix) for name, _ in model.named_modules())


def plan_batch(rows, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids: context + plan, right-padded; mask of the plan tokens (R, P); positions (R, P): each
    plan token's index in its row, the last one repeated past the row's end) for rows of (index,
    context, plan, text)."""
    length = max(len(r[1]) + len(r[2]) for r in rows)
    plan_length = max(len(r[2]) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), plan_length), dtype=torch.bool)
    positions = torch.zeros((len(rows), plan_length), dtype=torch.long)
    for k, (_, context, plan, _) in enumerate(rows):
        ids[k, : len(context) + len(plan)] = torch.tensor(context + plan)
        mask[k, : len(plan)] = True
        positions[k, : len(plan)] = torch.arange(len(context), len(context) + len(plan))
        positions[k, len(plan) :] = len(context) + len(plan) - 1  # padding reads a real position, masked out
    return ids, mask, positions


def stored_dtype(directory: Path) -> torch.dtype:
    """The dtype the model directory's UNet is stored in (the tuned model is written the same way)."""
    from safetensors import safe_open

    path = next(iter(sorted(Path(directory, RENDERER_DIR, "unet").glob("*.safetensors"))), None)
    if path is None:
        return torch.float32
    with safe_open(str(path), "pt") as handle:
        return handle.get_tensor(next(iter(handle.keys()))).dtype
