"""`DualGRPOConfig`: every setting of a Dual-GRPO run on a think-then-generate model, with a help
string each and strict checks (a ConfigError naming the field), parsed from flags and/or
`--config FILE` as `GRPOConfig` is (`config.py`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import BUILT_IN_REWARDS, PROMPT_SOURCES, requirement, setting, unknown_prompt_sources

SCHEDULES = ("balanced", "staged", "planner", "renderer")


@dataclass
class DualGRPOConfig:
    # -- what to train, where to write it -------------------------------------------------------
    model: str = setting("shapes-diffusion", "catalog name or think-then-generate model directory to start from")
    planner_from: str = setting(
        "",
        "a Janus model directory (e.g. `python -m finetune merge weights/shapes-grpo --out DIR`) whose text "
        "language model replaces the model's planner before training; the renderer's half then adapts "
        "the renderer to the new planner's hidden states. Empty: keep the model's planner",
    )
    out: str = setting("", "run directory: checkpoints, metrics.jsonl, the tuned model in model/ (required)")
    resume: bool = setting(False, "continue the run in `out` from its newest complete checkpoint")
    seed: int = setting(0, "seed of the prompt order, the plans' and pictures' noise and the adapter's init")

    # -- the schedule of the two halves ----------------------------------------------------------
    schedule: str = setting(
        "balanced",
        "balanced: planner and renderer both trained every step (T2G's best); staged: the planner for "
        "stage_steps, then the renderer; planner or renderer: that half alone",
    )
    stage_steps: int = setting(0, "staged: steps of the planner before the renderer's (0: half the steps)")

    # -- prompts and rollouts -------------------------------------------------------------------
    prompts: str = setting(
        "shapes-train", "shapes-train (the shapes world's train split) or a text file, a prompt a line"
    )
    prompts_per_step: int = setting(8, "prompts per optimizer step")
    group_size: int = setting(4, "trajectories per prompt (G): each its own sampled plan and picture")
    steps: int = setting(40, "optimizer steps")
    max_minutes: float = setting(0.0, "stop after the first step past this wall time (minutes), then save; 0: none")
    plan_temperature: float = setting(1.0, "temperature the plans are sampled at")
    cfg_scale: float = setting(0.0, "guidance scale of the pictures (0: the model's default)")
    sample_steps: int = setting(10, "steps of the stochastic (DDIM, eta > 0) sampler the pictures are drawn with")
    eta: float = setting(1.0, "DDIM eta of the training sampler: 1 is DDPM's variance, 0 would be deterministic")
    renderer_step_share: float = setting(
        1.0, "share of each picture's stochastic steps the renderer's loss takes (DanceGRPO trains a subset)"
    )

    # -- rewards ------------------------------------------------------------------------------------
    rewards: list[str] = setting(["checker", "plan_valid"], "the planner's rewards: the picture against the prompt")
    reward_weights: list[float] = setting([1.0, 0.25], "a weight per planner reward")
    renderer_rewards: list[str] = setting(
        ["plan_followed"], "the renderer's rewards: plan_followed (the picture against its plan) or any reward"
    )
    renderer_reward_weights: list[float] = setting([1.0], "a weight per renderer reward")
    preference_model: str = setting("", "reward model directory for the `preference` reward")
    scale_rewards: bool = setting(True, "divide advantages by the group's reward std (GRPO); off: Dr. GRPO")

    # -- optimisation -----------------------------------------------------------------------------
    planner_learning_rate: float = setting(5e-4, "AdamW learning rate of the planner's LoRA")
    renderer_learning_rate: float = setting(2e-5, "AdamW learning rate of the renderer's UNet (all its weights)")
    warmup_steps: int = setting(3, "linear warm-up steps of both learning rates")
    beta: float = setting(0.04, "weight of the planner's k3 KL to the planner without its LoRA")
    renderer_beta: float = setting(0.01, "weight of the renderer's KL to the UNet it started from (Gaussian means)")
    clip_range: float = setting(0.2, "PPO clip range of the probability ratio")
    max_grad_norm: float = setting(1.0, "gradient-norm clip per half (0: none)")
    lora_rank: int = setting(16, "LoRA rank on the planner's attention and MLP projections")
    lora_alpha: float = setting(32.0, "LoRA alpha")
    micro_batch: int = setting(16, "trajectories per forward/backward pass (memory)")

    # -- measuring and saving -----------------------------------------------------------------------
    eval_every: int = setting(0, "held-out think and direct accuracy every this many steps (and at the end); 0: never")
    eval_prompts: int = setting(64, "held-out prompts per evaluation")
    save_every: int = setting(10, "write a checkpoint every this many steps (and at the end)")
    keep_checkpoints: int = setting(2, "complete checkpoints kept; older ones are deleted")
    progress: bool = setting(True, "a progress bar on stderr")

    def __post_init__(self):
        need = requirement(self)
        need(bool(self.out), "out", "a run directory is required (--out runs/NAME)")
        need(self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}")
        need(self.max_minutes >= 0, "max_minutes", "must be 0 (no limit) or positive")
        for name in ("prompts_per_step", "steps", "micro_batch", "eval_prompts", "keep_checkpoints"):
            need(getattr(self, name) >= 1, name, "must be at least 1")
        need(self.group_size >= 2, "group_size", "a group needs at least 2 trajectories to compare")
        need(self.sample_steps >= 2, "sample_steps", "must be at least 2 (the last step is deterministic)")
        for name in ("stage_steps", "warmup_steps", "eval_every", "save_every", "beta", "renderer_beta"):
            need(getattr(self, name) >= 0, name, "must not be negative")
        need(self.max_grad_norm >= 0, "max_grad_norm", "must not be negative")
        need(self.stage_steps < self.steps or self.schedule != "staged", "stage_steps", "must be under steps")
        need(self.lora_rank >= 1, "lora_rank", "the planner trains a LoRA: rank at least 1")
        need(self.lora_alpha > 0, "lora_alpha", "must be positive")
        for name in ("planner_learning_rate", "renderer_learning_rate"):
            need(0 < getattr(self, name) < 1, name, "must be in (0, 1)")
        need(0 < self.clip_range < 1, "clip_range", "must be in (0, 1)")
        need(0 < self.plan_temperature <= 5, "plan_temperature", "must be in (0, 5]: GRPO needs sampled plans")
        need(0 < self.eta <= 1, "eta", "must be in (0, 1]: GRPO needs a stochastic sampler")
        need(0 < self.renderer_step_share <= 1, "renderer_step_share", "must be in (0, 1]")
        need(0 <= self.cfg_scale <= 20, "cfg_scale", "must be in [0, 20] (0: the model's default)")
        need(
            not self.planner_from or Path(self.planner_from, "config.json").is_file(),
            "planner_from",
            f"{self.planner_from!r} is not a model directory (no config.json)",
        )
        need(
            not unknown_prompt_sources(self.prompts),
            "prompts",
            f"{', '.join(unknown_prompt_sources(self.prompts))}: neither {' nor '.join(PROMPT_SOURCES)} nor a file",
        )
        for names, weights in (("rewards", "reward_weights"), ("renderer_rewards", "renderer_reward_weights")):
            need(len(getattr(self, names)) >= 1, names, "name at least one reward")
            for reward in getattr(self, names):
                known = reward in BUILT_IN_REWARDS or ":" in reward
                need(known, names, f"{reward!r} is not built in nor module:function")
            need(
                len(getattr(self, weights)) == len(getattr(self, names)),
                weights,
                f"{len(getattr(self, weights))} weights for {len(getattr(self, names))} rewards",
            )
        if "preference" in self.rewards + self.renderer_rewards:
            need(Path(self.preference_model).is_dir(), "preference_model", "the preference reward needs its directory")

    def trains(self, step: int) -> tuple[bool, bool]:
        """(planner, renderer): which halves optimizer step `step` (0-based) trains."""
        if self.schedule == "staged":
            first = self.stage_steps or self.steps // 2
            return step < first, step >= first
        return self.schedule in ("balanced", "planner"), self.schedule in ("balanced", "renderer")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"
