"""`python -m finetune learn`: learn a person's taste from the studio's store, as one adapter.

    python -m finetune learn --data-dir studio-data --out studio-data/adapters/mine [--minutes 15]

1. read the store's verdicts and train a preference reward model on them (`reward_model.py`,
   Bradley-Terry on the pictures, held-out accuracy by prompt);
2. write the prompts to train on: the ones people used, plus as many from the shapes world's train
   split (so the taste is learnt across prompts, not only for the ones seen);
3. BiCoT-GRPO (`trainer.py`) with reward = preference model + 2 x checker: the preference score is
   standardised and bounded in (0, 1), so with the checker's weight of 2 no wrong picture outscores
   a right one and the taste only orders the right ones; both weights are options; think rollouts,
   so each candidate is its own plan and picture, as the studio's varied candidates are;
4. the adapter, the reward model and `provenance.json` (base model and its weights' hash, the
   preferences used, the settings, the figures), written to a temporary directory and renamed to
   `--out` at the end: a job killed midway leaves no adapter, and whatever served before serves on.

`status.json` in the temporary directory (and then in `--out`) tells a watcher (the studio's
`/learn_status`) the phase, the step and the figures so far.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from .config import GRPOConfig, parse_settings, requirement, setting

PROVENANCE = "provenance.json"
STATUS = "status.json"


@dataclass
class LearnConfig:
    data_dir: str = setting("", "the studio's data directory, whose store holds the preferences (required)")
    out: str = setting("", "the adapter directory to write (required; must not exist yet)")
    model: str = setting("shapes", "catalog name or Janus model directory the adapter is for")
    adapter: str = setting(
        "", "a LoRA adapter the model draws with, continued by the learning (empty: a new adapter on the model)"
    )
    minutes: float = setting(15.0, "wall-time budget of the GRPO part (the reward model takes about a minute more)")
    steps: int = setting(400, "at most this many GRPO steps (the budget usually ends the run first)")
    preference_weight: float = setting(1.0, "weight of the preference reward model's score in the reward")
    checker_weight: float = setting(
        2.0,
        "weight of the shapes checker in the reward; at 2 or more a wrong picture (partial credit <= 0.5)"
        " never outscores a right one, as the preference reward lies in (0, 1)",
    )
    train_split_prompts: int = setting(
        0, "prompts from the shapes train split added to the people's (0: as many as the people used)"
    )
    prompts_per_step: int = setting(8, "prompts per GRPO step")
    group_size: int = setting(8, "trajectories per prompt, each its own plan and picture")
    # measured (benchmarks/RESULTS.md, "Learning from choices"): lr 1e-3 with beta 0.01 drifted
    # (KL 0.6-0.9) and cost 8.5 points of checker accuracy; 5e-4 with 0.1 kept KL near 0.03 and the
    # taste was learnt as well
    learning_rate: float = setting(5e-4, "AdamW learning rate of the LoRA adapter")
    beta: float = setting(0.1, "weight of the KL to the base model (it keeps what the taste does not ask to change)")
    lora_rank: int = setting(16, "LoRA rank")
    rm_epochs: int = setting(30, "passes of the reward model over the preference pairs")
    seed: int = setting(0, "seed of the reward model's split, the prompt order and the rollouts")
    device: str = setting("cpu", "cpu or cuda")
    progress: bool = setting(True, "progress bars on stderr")

    def __post_init__(self):
        need = requirement(self)

        need(bool(self.data_dir), "data_dir", "the studio's data directory is required (--data-dir DIR)")
        need(Path(self.data_dir).expanduser().is_dir(), "data_dir", "no such directory")
        need(bool(self.out), "out", "the adapter directory to write is required (--out DIR)")
        need(not Path(self.out).expanduser().exists(), "out", "already exists; choose a new --out")
        need(self.minutes > 0, "minutes", "must be positive")
        need(self.steps >= 1, "steps", "must be at least 1")
        need(self.preference_weight > 0, "preference_weight", "must be positive (the taste is what is learnt)")
        need(self.checker_weight >= 0, "checker_weight", "must not be negative")
        need(self.train_split_prompts >= 0, "train_split_prompts", "must not be negative")


def parse_learn_config(argv: list[str]) -> LearnConfig:
    return parse_settings(LearnConfig, argv, "python -m finetune learn", __doc__.splitlines()[0])


def file_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def weights_digest(directory: Path) -> str:
    """sha256 over a model or adapter directory's safetensors files: which weights, exactly."""
    return file_digest(list(Path(directory).glob("*.safetensors")))


def write_json(path: Path, value: dict) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


def learn(config: LearnConfig) -> Path:
    from reasoner.models import resolve
    from reasoner.shapes import make_suite

    from .preferences import read_preferences
    from .reward_model import RewardModelConfig, save_reward_model, train_reward_model
    from .trainer import GRPOTrainer

    started = time.monotonic()
    out = Path(config.out).expanduser()
    work = out.parent / f".{out.name}.learning"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    status = {"phase": "reward model", "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(work / STATUS, status)

    # 1. The reward model of the store's preferences
    preferences = read_preferences(config.data_dir)
    rm_config = RewardModelConfig(
        data_dir=config.data_dir,
        out=str(work / "reward_model"),
        epochs=config.rm_epochs,
        seed=config.seed,
        device=config.device,
        progress=config.progress,
    )
    reward_model, rm_metrics = train_reward_model(rm_config)
    save_reward_model(reward_model, rm_config.out, asdict(rm_config), rm_metrics)
    log(
        f"reward model: held-out pair accuracy {rm_metrics['heldout_accuracy']:.3f} "
        f"({rm_metrics['heldout_pairs']} pairs of {rm_metrics['heldout_prompts']} prompts)"
    )

    # 2. The prompts: the people's, and as many again from the train split
    people = preferences.prompts
    extra = config.train_split_prompts or len(people)
    prompts = people + [p.prompt for p in make_suite("train", extra, config.seed)]
    (work / "prompts.txt").write_text("\n".join(prompts) + "\n")

    # 3. GRPO on preference + checker
    grpo = GRPOConfig(
        model=config.model,
        adapter=config.adapter,
        out=str(work / "run"),
        prompts=str(work / "prompts.txt"),
        rollout="think",
        train="both",
        rewards=["preference", "checker"],
        reward_weights=[config.preference_weight, config.checker_weight],
        preference_model=rm_config.out,
        steps=config.steps,
        max_minutes=config.minutes,
        prompts_per_step=config.prompts_per_step,
        group_size=config.group_size,
        learning_rate=config.learning_rate,
        warmup_steps=3,
        beta=config.beta,
        lora_rank=config.lora_rank,
        lora_alpha=2.0 * config.lora_rank,
        save_every=25,
        seed=config.seed,
        device=config.device,
        progress=config.progress,
    )
    write_json(work / STATUS, status | {"phase": "grpo", "steps": config.steps, "minutes": config.minutes})
    trainer = GRPOTrainer(grpo)
    adapter = trainer.train()

    # 4. The adapter at the top of the directory, with what made it
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(adapter / name, work / name)
    metrics = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    base = resolve(config.model).directory
    provenance = {
        "base_model": config.model,
        "continued_adapter": config.adapter or None,
        "base_weights_sha256": weights_digest(base),
        "adapter_sha256": weights_digest(work),
        "preferences": {
            "data_dir": str(Path(config.data_dir).expanduser().resolve()),
            "verdicts": preferences.verdicts,
            "pairs": len(preferences.pairs),
            "prompts": len(people),
            "pairs_sha256": hashlib.sha256(
                "\n".join(f"{p.prompt}\t{p.chosen}\t{p.rejected}" for p in preferences.pairs).encode()
            ).hexdigest(),
        },
        "config": asdict(config),
        "grpo_config": json.loads(grpo.to_json()),
        "figures": {
            "reward_model": rm_metrics,
            "grpo_steps": trainer.step,
            "last_steps": summarise(metrics[-10:]),
            "first_steps": summarise(metrics[:10]),
            "minutes": round((time.monotonic() - started) / 60, 2),
        },
        "command": " ".join(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(work / PROVENANCE, provenance)
    write_json(work / STATUS, status | {"phase": "done", "steps": trainer.step, "figures": provenance["figures"]})
    for path in (work / "adapter_model.safetensors", work / PROVENANCE):
        with open(path, "rb") as file:
            os.fsync(file.fileno())
    work.rename(out)
    log(f"wrote {out} ({trainer.step} GRPO steps in {provenance['figures']['minutes']} min)")
    return out


def summarise(rows: list[dict]) -> dict:
    """Mean of each reward component and the KL over some steps' metrics."""
    keys = sorted({k for row in rows for k in row if k.startswith("reward") or k == "kl"})
    return {k: round(sum(row.get(k, 0.0) for row in rows) / max(1, len(rows)), 4) for k in keys}


def log(message: str) -> None:
    print(f"[learn] {message}", file=sys.stderr, flush=True)
