"""`GRPOTrainer`: BiCoT-GRPO (T2I-R1) on a Janus model, rollouts through the project's engines.

A step, as `train_step` reads:
1. the step's prompts (a fixed order from the run seed, so resume continues it);
2. rollouts on the backend's engine: per prompt a group of trajectories, each its own sampled
   plan and picture (`rollouts.py`);
3. rewards (a weighted ensemble, `rewards.py`), with `think_guides` think pictures added to the
   direct groups that drew nothing as good (`rollouts.think_guides`), and group-normalised
   advantages (`loss.py`);
4. reference log-probs (the model with its LoRA disabled; a frozen copy for full fine-tuning)
   and, when a batch is used more than once, the rollout policy's log-probs;
5. per micro-batch: log-probs with gradients (`scoring.py`), the clipped loss with k3 KL,
   backward; then one optimizer step per pass over the batch.
Only the language model trains (LoRA on its projections by default), as in T2I-R1. The engines
read the model's current weights at every call, so rollouts always sample the policy as it is.
"""

from __future__ import annotations

import copy
import json
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from peft import LoraConfig, PeftModel, get_peft_model

from reasoner.backends.adapters import LANGUAGE_MODEL_PROJECTIONS
from reasoner.backends.janus import JanusBackend
from reasoner.models.catalog import resolve

from . import checkpoints
from .config import ConfigError, GRPOConfig
from .evaluation import dev_accuracy
from .loss import group_advantages, grpo_loss
from .rewards import RewardEnsemble
from .rollouts import RolloutSettings, Trajectory, roll_out, think_guides
from .scoring import ScoringBatch, TokenScorer


def read_prompts(sources: str, seed: int) -> list[str]:
    """The prompts of a `prompts` setting: each comma-separated source in turn, its prompts in order."""
    prompts = []
    for source in sources.split(","):
        if source == "shapes-train":
            from reasoner.shapes import make_suite

            prompts += [p.prompt for p in make_suite("train", 4096, seed)]
            continue
        lines = [line.strip() for line in Path(source).read_text().splitlines() if line.strip()]
        if not lines:
            raise ConfigError(f"prompts={source!r}: the file holds no prompts")
        prompts += lines
    return prompts


def step_prompts(prompts: list[str], step: int, count: int, seed: int) -> list[str]:
    """The prompts of optimizer step `step` (0-based): epochs of seeded shuffles, read in order."""
    chosen = []
    for position in range(step * count, (step + 1) * count):
        epoch, index = divmod(position, len(prompts))
        order = list(range(len(prompts)))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        chosen.append(prompts[order[index]])
    return chosen


class GRPOTrainer:
    def __init__(self, config: GRPOConfig):
        self.config = config
        self.run_dir = Path(config.out)
        self.accelerator = Accelerator(cpu=config.device == "cpu", mixed_precision="bf16" if config.bf16 else "no")
        device = str(self.accelerator.device)
        source = resolve(config.model)  # a catalog name, a directory, or a base plus an adapter (shapes-grpo)
        directory, name = source.directory, source.name
        # training continues an adapter in place: that of --adapter, or of an adapted catalog entry
        self.start_adapter = config.adapter or (str(source.adapter) if source.adapter else "")
        self.base_name = config.model if source.adapter is None else str(source.directory)
        dtype = torch.bfloat16 if config.bf16 else torch.float32
        self.backend = JanusBackend.from_pretrained(
            directory, device=device, dtype=dtype, name=name, engine=config.rollout_engine
        )
        self.base_dir = directory
        self.cfg_scale = config.cfg_scale or self.backend.info.default_cfg_scale
        self.policy = self.adapt(self.backend.model)  # PeftModel over backend.model, or backend.model
        self.reference = None
        if config.beta > 0 and not config.uses_lora:  # LoRA's reference is the model with it disabled
            self.reference = copy.deepcopy(self.backend.model).eval().requires_grad_(False)
        if config.gradient_checkpointing:
            self.backend.model.model.language_model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        self.scorer = TokenScorer(self.backend.model, self.cfg_scale, config.plan_temperature, config.image_temperature)
        trainable = [p for p in self.backend.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.scorer, self.optimizer = self.accelerator.prepare(self.scorer, self.optimizer)
        processes = self.accelerator.num_processes
        if config.prompts_per_step % processes:
            raise ConfigError(f"prompts_per_step={config.prompts_per_step}: must divide by the {processes} processes")
        if config.skip_uniform_groups and processes > 1:  # ranks would run different numbers of backward passes
            raise ConfigError("skip_uniform_groups=True: runs in one process only (not under accelerate launch)")
        self.rewards = RewardEnsemble.of(config.rewards, config.reward_weights, config.preference_model or None)
        self.prompts = read_prompts(config.prompts, config.seed)
        self.step = 0

    # -- set-up --------------------------------------------------------------------------------------

    def adapt(self, model):
        """The model with a trainable LoRA (or, at rank 0, its language model trainable)."""
        config = self.config
        model.requires_grad_(False)
        if not config.uses_lora:
            model.model.language_model.requires_grad_(True)
            return model
        if self.start_adapter:
            peft_model = PeftModel.from_pretrained(model, self.start_adapter, is_trainable=True, use_safetensors=True)
            peft_model.peft_config["default"].base_model_name_or_path = self.base_name
            return peft_model
        targets = (
            LANGUAGE_MODEL_PROJECTIONS if config.lora_targets == "language_model_projections" else config.lora_targets
        )
        torch.manual_seed(config.seed)
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=targets)
        try:
            peft_model = get_peft_model(model, lora)
        except ValueError as error:  # peft: the targets match no module
            raise ConfigError(f"lora_targets={config.lora_targets!r}: {error}") from None
        peft_model.peft_config["default"].base_model_name_or_path = self.base_name
        return peft_model

    def save_adapter(self, directory: Path) -> None:
        # embedding layers are never adapted here; "auto" would look the base name up as a Hub repository
        self.policy.save_pretrained(directory, safe_serialization=True, save_embedding_layers=False)
        Path(directory, "README.md").unlink(missing_ok=True)  # peft's blank model card

    # -- one step ------------------------------------------------------------------------------------

    def rollout_settings(self) -> RolloutSettings:
        c = self.config
        return RolloutSettings(c.group_size, c.rollout, c.plan_temperature, c.image_temperature, self.cfg_scale)

    def reference_logps(self, batch: ScoringBatch, plan: bool, image: bool):
        with torch.no_grad():
            if self.reference is not None:
                scorer = TokenScorer(
                    self.reference, self.cfg_scale, self.config.plan_temperature, self.config.image_temperature
                )
                return scorer(batch, plan, image)
            with self.policy.disable_adapter():
                return self.accelerator.unwrap_model(self.scorer)(batch, plan, image)

    def train_step(self) -> dict:
        config, backend = self.config, self.backend
        started = time.perf_counter()
        # 1. The step's prompts; with several processes, each rolls out its share
        prompts = step_prompts(self.prompts, self.step, config.prompts_per_step, config.seed)
        rank, processes = self.accelerator.process_index, self.accelerator.num_processes
        prompts = prompts[rank::processes]
        # 2. Rollouts on the engine, from the weights as they are now
        backend.model.eval()
        trajectories = roll_out(backend, prompts, self.rollout_settings(), config.seed * processes + rank, self.step)
        rolled = time.perf_counter()
        metrics = {"step": self.step + 1, "rollout_seconds": rolled - started}
        if config.compare_engines and self.step == 0:
            metrics.update(self.compare_engines(prompts, trajectories, rolled - started))
        # 3. Rewards (with think guides in the direct groups, when asked) and advantages
        totals, components = self.score(trajectories)
        metrics.update(self.rollout_metrics(trajectories, totals, components))
        if config.think_guides:
            guides, guide_rewards = think_guides(
                trajectories, totals, config.think_guides, lambda rows: self.score(rows)[0]
            )
            trajectories, totals = trajectories + guides, totals + guide_rewards
            metrics["guides"] = len(guides)
        rewards = torch.tensor(totals)
        advantages = group_advantages(rewards, torch.tensor([t.group for t in trajectories]), config.scale_rewards)
        # 4-5. Reference and old log-probs, then the loss per micro-batch
        trained = self.informative_rows(rewards, trajectories) if config.skip_uniform_groups else None
        if trained is not None:
            metrics["groups_trained"] = len({trajectories[i].group for i in trained})
            trajectories, advantages = [trajectories[i] for i in trained], advantages[trained]
        metrics.update(self.optimise(trajectories, advantages))
        metrics["learning_rate"] = self.learning_rate()
        metrics["step_seconds"] = time.perf_counter() - started
        self.step += 1
        return metrics

    def score(self, trajectories: list[Trajectory]) -> tuple[list[float], dict[str, list[float]]]:
        """The reward ensemble's total per trajectory and each component's scores."""
        return self.rewards(
            [t.prompt for t in trajectories], [t.plan_text for t in trajectories], [t.picture for t in trajectories]
        )

    @staticmethod
    def rollout_metrics(trajectories: list[Trajectory], totals: list[float], components: dict) -> dict:
        """The rollouts' own rewards (guides excluded): each component's mean, exact share per mode."""
        metrics = {}
        rewards = torch.tensor(totals)
        for name, values in components.items():
            metrics[f"reward/{name}"] = sum(values) / len(values)
        for mode in ("think", "direct"):
            rows = [i for i, t in enumerate(trajectories) if t.mode == mode]
            if rows and "checker" in components:
                metrics[f"exact/{mode}"] = sum(components["checker"][i] == 1.0 for i in rows) / len(rows)
        metrics["reward"] = float(rewards.mean())
        metrics["reward_std_in_group"] = float(
            torch.stack(
                [rewards[[t.group == g for t in trajectories]].std() for g in {t.group for t in trajectories}]
            ).mean()
        )
        metrics["plan_tokens"] = sum(len(t.plan_ids) for t in trajectories) / max(
            1, sum(t.mode == "think" for t in trajectories)
        )
        return metrics

    @staticmethod
    def informative_rows(rewards: torch.Tensor, trajectories: list[Trajectory]) -> list[int]:
        """Rows of the groups whose rewards differ: the others have advantage 0 on every row."""
        groups = torch.tensor([t.group for t in trajectories])
        spread = {int(g): float(rewards[groups == g].max() - rewards[groups == g].min()) for g in groups.unique()}
        return [i for i, t in enumerate(trajectories) if spread[t.group] > 1e-6]

    def optimise(self, trajectories: list[Trajectory], advantages: torch.Tensor) -> dict:
        config, device = self.config, self.accelerator.device
        if not trajectories:  # every group uniform (skip_uniform_groups): nothing to learn this step
            return {"loss": 0.0, "kl": 0.0, "grad_norm": 0.0, "clip_fraction": 0.0}
        train_plan, train_image = config.train in ("plan", "both"), config.train in ("image", "both")
        special = self.backend.special
        guided = self.cfg_scale != 1
        chunks = [
            range(i, min(i + config.micro_batch, len(trajectories)))
            for i in range(0, len(trajectories), config.micro_batch)
        ]
        batches = [ScoringBatch.of([trajectories[i] for i in rows], special, guided).to(device) for rows in chunks]
        masks = [self.trained_mask(b, train_plan, train_image) for b in batches]
        step_tokens = sum(int(m.sum()) for m in masks)
        self.backend.model.train()
        references = [None] * len(batches)
        if config.beta > 0:
            references = [torch.cat(self.reference_logps(b, train_plan, train_image), dim=1) for b in batches]
        olds = [None] * len(batches)
        if config.iterations > 1:
            with torch.no_grad():
                olds = [torch.cat(self.scorer(b, train_plan, train_image), dim=1) for b in batches]
        totals = {"loss": 0.0, "kl": 0.0, "clipped": 0.0, "grad_norm": 0.0}
        for _ in range(config.iterations):
            for rows, batch, mask, reference, old in zip(chunks, batches, masks, references, olds):
                logps = torch.cat(self.scorer(batch, train_plan, train_image), dim=1)
                parts = grpo_loss(
                    logps,
                    old,
                    reference,
                    advantages[list(rows)].to(device),
                    mask,
                    config.clip_range,
                    config.beta,
                    step_tokens,
                )
                self.accelerator.backward(parts.loss)
                totals["loss"] += float(parts.loss.detach()) / config.iterations
                totals["kl"] += parts.kl / max(step_tokens, 1) / config.iterations
                totals["clipped"] += parts.clipped / max(step_tokens, 1) / config.iterations
            if config.max_grad_norm > 0:
                norm = self.accelerator.clip_grad_norm_(self.optimizer_parameters(), config.max_grad_norm)
                totals["grad_norm"] += float(norm) / config.iterations
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.backend.model.eval()
        totals["clip_fraction"] = totals.pop("clipped")
        return totals

    def learning_rate(self) -> float:
        """Linear warm-up over `warmup_steps`, then constant: a function of the step, so resume needs no state."""
        return self.config.learning_rate * min(1.0, (self.step + 1) / (self.config.warmup_steps + 1))

    def optimizer_parameters(self):
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @staticmethod
    def trained_mask(batch: ScoringBatch, plan: bool, image: bool) -> torch.Tensor:
        plan_mask = batch.plan_mask & plan
        image_mask = torch.full(batch.image_tokens.shape, image, dtype=torch.bool, device=batch.image_tokens.device)
        return torch.cat([plan_mask, image_mask], dim=1)

    def compare_engines(self, prompts: list[str], trajectories: list[Trajectory], seconds: float) -> dict:
        """The same rollouts on transformers' generate: its time, and whether its tokens agree."""
        engine = self.backend.engine
        self.backend.use_engine("hf")
        try:
            started = time.perf_counter()
            reference = roll_out(self.backend, prompts, self.rollout_settings(), self.config.seed, self.step)
            hf_seconds = time.perf_counter() - started
        finally:
            self.backend.use_engine(engine)
        agree = sum(
            a.plan_ids == b.plan_ids and torch.equal(a.image_tokens, b.image_tokens)
            for a, b in zip(trajectories, reference)
        )
        return {
            f"rollout_seconds_{engine}": seconds,
            "rollout_seconds_hf": hf_seconds,
            "rollout_speedup": hf_seconds / seconds,
            "rollout_rows_agreeing": agree / len(trajectories),
        }

    # -- the run -------------------------------------------------------------------------------------

    def resume(self) -> None:
        latest = checkpoints.latest_checkpoint(self.run_dir)
        if latest is None:
            raise checkpoints.CheckpointError(f"--resume: {self.run_dir} holds no complete checkpoint")
        self.step = checkpoints.load_checkpoint(latest, self.policy, self.optimizer)
        self.forget_metrics_after(self.step)
        self.log(f"resumed from {latest} at step {self.step}")

    def forget_metrics_after(self, step: int) -> None:
        """Drop the metrics of steps past the checkpoint resumed from: they are about to be redone."""
        path = self.run_dir / "metrics.jsonl"
        if path.is_file() and self.accelerator.is_main_process:
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept))

    def save(self) -> Path | None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return None
        saver = self.save_adapter if self.config.uses_lora else None
        path = checkpoints.save_checkpoint(
            self.run_dir, self.step, self.policy, self.optimizer, asdict(self.config), saver
        )
        checkpoints.prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        return path

    def evaluate(self) -> dict:
        """Dev-suite accuracy, on the main process (the others wait at the next gradient sync)."""
        if not self.accelerator.is_main_process:
            return {}
        self.backend.model.eval()
        figures = dev_accuracy(self.backend, self.config.eval_prompts, self.cfg_scale)
        return {f"dev/{mode}": value for mode, value in figures.items()}

    def train(self) -> Path:
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if config.resume:
            self.resume()
        elif checkpoints.latest_checkpoint(self.run_dir) is not None:
            raise ConfigError(f"out={config.out!r} already holds checkpoints: pass --resume or another --out")
        (self.run_dir / "config.json").write_text(config.to_json())
        metrics_file = self.run_dir / "metrics.jsonl"
        if self.step == 0 and config.eval_every:
            self.write(metrics_file, {"step": 0, **self.evaluate()})
        bar = self.progress_bar()
        started = time.monotonic()
        while self.step < config.steps:
            metrics = self.train_step()
            out_of_time = bool(config.max_minutes) and time.monotonic() - started >= 60 * config.max_minutes
            last = self.step == config.steps or out_of_time
            if config.eval_every and (self.step % config.eval_every == 0 or last):
                metrics.update(self.evaluate())
            if self.step % config.save_every == 0 or last:
                self.save()
            self.write(metrics_file, metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{metrics['kl']:.4f}")
            if out_of_time:
                self.log(f"stopping after step {self.step}: the {config.max_minutes:g}-minute budget is spent")
                break
        if bar is not None:
            bar.close()
        return self.finish()

    def finish(self) -> Path:
        """The result next to the checkpoints: `adapter/` (LoRA) or `model/` (full fine-tuning)."""
        if self.config.uses_lora:
            final = self.run_dir / "adapter"
            self.save_adapter(final)
        else:
            final = self.run_dir / "model"
            self.backend.model.save_pretrained(final, safe_serialization=True)
        self.log(f"wrote {final}")
        return final

    def progress_bar(self):
        if not self.config.progress or not self.accelerator.is_main_process:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.config.steps, initial=self.step, desc="grpo", unit="step", file=sys.stderr)

    def write(self, path: Path, metrics: dict) -> None:
        if self.accelerator.is_main_process:
            with open(path, "a") as handle:
                handle.write(json.dumps(metrics) + "\n")

    def log(self, message: str) -> None:
        if self.accelerator.is_main_process:
            print(f"[finetune] {message}", file=sys.stderr, flush=True)
