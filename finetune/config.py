"""`GRPOConfig`: every setting of a BiCoT-GRPO run, with a help string each and strict checks.

Settings come from flags, a JSON or YAML file (`--config FILE`), or both (flags win), parsed by
transformers' `HfArgumentParser` from the dataclass below. A bad value fails with one line that
names the field (`ConfigError`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from reasoner.errors import ReasonerError

TRAINABLE = ("plan", "image", "both")
ROLLOUT_MODES = ("think", "direct", "both")
ROLLOUT_ENGINES = ("fast", "hf")  # onnx would re-export the model after every optimizer step
PROMPT_SOURCES = ("shapes-train",)


def unknown_prompt_sources(value: str) -> list[str]:
    """The comma-separated parts of a `prompts` setting that are neither a built-in source nor a file."""
    return [part for part in value.split(",") if part not in PROMPT_SOURCES and not Path(part).is_file()]


BUILT_IN_REWARDS = ("checker", "plan_valid", "plan_followed", "preference")


def requirement(settings):
    """`need(condition, name, why)` for validating `settings`: a ConfigError naming the field and
    its value when `condition` fails (every settings dataclass of finetune/ validates this way)."""

    def need(condition: bool, name: str, why: str) -> None:
        if not condition:
            raise ConfigError(f"{name}={getattr(settings, name)!r}: {why}")

    return need


class ConfigError(ReasonerError):
    """A GRPO setting is out of range or names something that does not exist."""


def setting(default, help: str):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class GRPOConfig:
    # -- what to train, where to write it -------------------------------------------------------
    model: str = setting("shapes", "catalog name or Janus model directory to start from")
    adapter: str = setting("", "a LoRA adapter directory to continue from (empty: a fresh adapter)")
    out: str = setting("", "run directory: checkpoints, metrics.jsonl, the final adapter (required)")
    resume: bool = setting(False, "continue the run in `out` from its newest complete checkpoint")
    seed: int = setting(0, "seed of the prompt order, the rollouts' seeds and the adapter's init")
    device: str = setting("cpu", "cpu or cuda; with `accelerate launch` the process's own device wins")
    bf16: bool = setting(False, "bf16 weights and autocast (GPUs); the CPU trains in float32")

    # -- prompts and rollouts -------------------------------------------------------------------
    prompts: str = setting(
        "shapes-train",
        "shapes-train (the shapes world's train split) or a text file, a prompt a line; several joined by"
        " commas are read one after another",
    )
    prompts_per_step: int = setting(16, "prompts per optimizer step")
    group_size: int = setting(8, "trajectories per prompt (G): each its own plan and its own picture")
    rollout: str = setting("think", "think: plan then draw; direct: draw from the prompt; both: one group of each")
    rollout_engine: str = setting("fast", "engine the rollouts decode on: fast (static KV cache) or hf")
    plan_temperature: float = setting(1.0, "temperature plans are sampled at")
    image_temperature: float = setting(1.0, "temperature image tokens are sampled at")
    cfg_scale: float = setting(0.0, "classifier-free guidance of the image tokens; 0: the model's own default")

    # -- the objective ---------------------------------------------------------------------------
    train: str = setting("both", "which tokens get the policy gradient: plan, image or both")
    steps: int = setting(100, "optimizer steps")
    max_minutes: float = setting(0.0, "stop after the first step past this wall time (minutes), then save; 0: no limit")
    iterations: int = setting(1, "optimizer passes over each batch of rollouts (GRPO's mu)")
    learning_rate: float = setting(1e-4, "AdamW learning rate (constant after warm-up)")
    warmup_steps: int = setting(0, "steps of linear learning-rate warm-up")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    max_grad_norm: float = setting(1.0, "gradient clipping norm; 0: none")
    beta: float = setting(0.01, "weight of the k3 KL to the reference model; 0: no reference pass")
    clip_range: float = setting(0.2, "PPO clip range epsilon of the probability ratio")
    scale_rewards: bool = setting(True, "divide advantages by the group's reward std (GRPO); off: Dr. GRPO")
    skip_uniform_groups: bool = setting(
        False,
        "leave groups whose rewards are all equal (advantage 0) out of the loss pass, as DAPO's dynamic"
        " sampling does: the step scores only groups that teach something, and the KL covers those alone",
    )
    think_guides: int = setting(
        0,
        "with rollout both: add to each direct group up to this many of its prompt's think pictures that"
        " beat every picture the group drew, scored in the direct context without their plans (off-policy"
        " guidance, as LUFFY); 0: none",
    )
    rewards: list[str] = setting(
        ["checker", "plan_valid"],
        "reward functions: checker, plan_valid, preference (needs preference_model),"
        " or module:function taking (prompts, plans, pictures)",
    )
    reward_weights: list[float] = setting([1.0, 0.25], "one weight per reward, in order")
    preference_model: str = setting(
        "",
        "reward model directory (python -m finetune reward-model) the preference reward scores pictures with;"
        " required when rewards include preference",
    )

    # -- what is adapted, and memory --------------------------------------------------------------
    lora_rank: int = setting(16, "LoRA rank; 0: full fine-tuning of the language model")
    lora_alpha: float = setting(32.0, "LoRA alpha (the update is scaled by alpha / rank)")
    lora_targets: str = setting(
        "language_model_projections",
        "modules the LoRA adapts: language_model_projections (q/k/v/o/gate/up/down of every layer) or a regex",
    )
    micro_batch: int = setting(32, "trajectories per forward/backward pass (memory); gradients accumulate")
    gradient_checkpointing: bool = setting(False, "recompute layer activations in the backward pass (memory)")

    # -- measuring and saving -----------------------------------------------------------------------
    eval_every: int = setting(0, "dev-suite accuracy every this many steps (and at the end); 0: never")
    eval_prompts: int = setting(64, "dev-suite prompts per evaluation, balanced over categories")
    save_every: int = setting(25, "write a checkpoint every this many steps (and at the end)")
    keep_checkpoints: int = setting(2, "complete checkpoints kept; older ones are deleted")
    compare_engines: bool = setting(False, "time the first step's rollouts on hf as well (tokens must agree)")
    progress: bool = setting(True, "a progress bar on stderr")

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        need = requirement(self)

        need(bool(self.out), "out", "a run directory is required (--out runs/NAME)")
        need(self.max_minutes >= 0, "max_minutes", "must be 0 (no limit) or positive")
        for name in ("prompts_per_step", "group_size", "steps", "iterations", "micro_batch", "eval_prompts"):
            need(getattr(self, name) >= 1, name, "must be at least 1")
        need(self.group_size >= 2, "group_size", "a group needs at least 2 trajectories to compare")
        for name in ("warmup_steps", "eval_every", "save_every", "lora_rank", "beta", "weight_decay", "max_grad_norm"):
            need(getattr(self, name) >= 0, name, "must not be negative")
        need(self.keep_checkpoints >= 1, "keep_checkpoints", "must be at least 1")
        need(0 < self.learning_rate < 1, "learning_rate", "must be in (0, 1)")
        need(0 < self.clip_range < 1, "clip_range", "must be in (0, 1)")
        need(0 < self.plan_temperature <= 5, "plan_temperature", "must be in (0, 5]: GRPO needs sampled plans")
        need(0 < self.image_temperature <= 5, "image_temperature", "must be in (0, 5]: GRPO needs sampled pictures")
        need(0 <= self.cfg_scale <= 20, "cfg_scale", "must be in [0, 20] (0: the model's default)")
        need(self.lora_alpha > 0, "lora_alpha", "must be positive")
        need(self.train in TRAINABLE, "train", f"must be one of {', '.join(TRAINABLE)}")
        need(self.rollout in ROLLOUT_MODES, "rollout", f"must be one of {', '.join(ROLLOUT_MODES)}")
        need(self.rollout_engine in ROLLOUT_ENGINES, "rollout_engine", f"must be one of {', '.join(ROLLOUT_ENGINES)}")
        need(
            not (self.rollout == "direct" and self.train == "plan"),
            "train",
            "direct rollouts have no plan to train; use --train image or --rollout think",
        )
        need(
            not unknown_prompt_sources(self.prompts),
            "prompts",
            f"{', '.join(unknown_prompt_sources(self.prompts))}: neither {' nor '.join(PROMPT_SOURCES)} nor a file",
        )
        need(self.think_guides >= 0, "think_guides", "must not be negative")
        need(
            self.think_guides <= self.group_size,
            "think_guides",
            f"a think group holds {self.group_size} pictures (group_size)",
        )
        need(
            not self.think_guides or (self.rollout == "both" and self.train != "plan"),
            "think_guides",
            "guides are think pictures scored in direct groups: needs --rollout both and image tokens trained",
        )
        need(len(self.rewards) >= 1, "rewards", "name at least one reward")
        for reward in self.rewards:
            need(
                reward in BUILT_IN_REWARDS or ":" in reward,
                "rewards",
                f"{reward!r} is not built in nor module:function",
            )
        if "preference" in self.rewards:
            need(
                bool(self.preference_model),
                "preference_model",
                "the preference reward needs a reward model directory (--preference_model RM_DIR)",
            )
            need(Path(self.preference_model).is_dir(), "preference_model", "does not exist")
        need(
            len(self.reward_weights) == len(self.rewards),
            "reward_weights",
            f"{len(self.reward_weights)} weights for {len(self.rewards)} rewards",
        )
        need(self.device in ("cpu", "cuda") or self.device.startswith("cuda:"), "device", "must be cpu or cuda[:N]")

    @property
    def uses_lora(self) -> bool:
        return self.lora_rank > 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


CONFIG_FILE_FLAG = "--config"


def parse_config(argv: list[str], cls=None, prog: str = "python -m finetune grpo"):
    """A GRPOConfig (or another settings dataclass, `cls`) from flags, and from `--config FILE`
    (JSON or YAML) under them."""
    from transformers import HfArgumentParser

    cls = cls or GRPOConfig
    description = sys.modules[cls.__module__].__doc__ or ""  # the settings module's first line
    parser = HfArgumentParser(cls, prog=prog, description=description.strip().splitlines()[0])
    parser.add_argument(CONFIG_FILE_FLAG, default=None, help="a JSON or YAML file of settings; flags override it")
    argv = list(argv)
    if CONFIG_FILE_FLAG in argv:
        where = argv.index(CONFIG_FILE_FLAG)
        if where + 1 >= len(argv):
            raise ConfigError(f"{CONFIG_FILE_FLAG} needs a file")
        values = read_config_file(Path(argv[where + 1]))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{argv[where + 1]}: unknown setting {unknown[0]!r}")
        parser.set_defaults(**values)
    return settings_from(parser, cls, argv)


def settings_from(parser, cls, argv: list[str]):
    """`cls` (a settings dataclass) from `argv` through its HfArgumentParser; a flag that cannot
    be read is a ConfigError (argparse has printed its own one-line message)."""
    try:
        namespace = parser.parse_args(list(argv))
    except SystemExit as stop:
        if stop.code:
            raise ConfigError("the flags above could not be read") from None
        raise
    return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls)})


def parse_settings(cls, argv: list[str], prog: str, description: str):
    """`cls` from flags alone (the reward model's and learn's settings)."""
    from transformers import HfArgumentParser

    return settings_from(HfArgumentParser(cls, prog=prog, description=description), cls, argv)


def read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:  # yaml and json raise their own kinds; both mean "cannot read"
        raise ConfigError(f"config file {path} could not be read ({' '.join(str(error).split())[:200]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting: value")
    return values


def main_parse(argv: list[str] | None = None) -> GRPOConfig:
    return parse_config(sys.argv[1:] if argv is None else argv)
