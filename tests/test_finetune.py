"""finetune/: BiCoT-GRPO on tiny random models and the bundled one (CPU, seeds fixed)."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

import reasoner.engine.fast as fast_engine
from finetune import checkpoints
from finetune.config import ConfigError, GRPOConfig, parse_config
from finetune.loss import group_advantages, grpo_loss
from finetune.rewards import RewardEnsemble, partial_credit, plan_valid
from finetune.rollouts import RolloutSettings, Trajectory, roll_out, think_guides
from finetune.scoring import ScoringBatch, TokenScorer
from finetune.trainer import GRPOTrainer, read_prompts, step_prompts
from reasoner.backends.janus import JanusBackend
from reasoner.models import CATALOG
from reasoner.pipeline import ReasonerPipeline
from reasoner.records import DrawSettings
from reasoner.shapes import parse_plan

REDNESS = "tests.finetune_rewards:redness"


def tiny_config(tmp_path, model_dir, **overrides) -> GRPOConfig:
    settings = dict(
        model=str(model_dir),
        out=str(tmp_path / "run"),
        prompts_per_step=2,
        group_size=3,
        steps=2,
        rollout="think",
        rewards=[REDNESS],
        reward_weights=[1.0],
        learning_rate=1e-2,
        lora_rank=4,
        micro_batch=4,
        save_every=1,
        progress=False,
    )
    settings.update(overrides)
    return GRPOConfig(**settings)


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, field",
    [
        (["--group_size", "1"], "group_size"),
        (["--train", "everything"], "train"),
        (["--rewards", "checker", "plan_valid", "--reward_weights", "1"], "reward_weights"),
        (["--rewards", "nonsense"], "rewards"),
        (["--plan_temperature", "0"], "plan_temperature"),
        (["--rollout", "direct", "--train", "plan"], "train"),
        (["--prompts", "/no/such/file.txt"], "prompts"),
        (["--prompts", "shapes-train,/no/such/file.txt"], "prompts"),  # every part is checked
        (["--learning_rate", "2"], "learning_rate"),
        (["--max_minutes", "-1"], "max_minutes"),
        (["--think_guides", "2"], "think_guides"),  # guides need direct groups (--rollout both)
    ],
)
def test_a_bad_setting_fails_with_one_line_naming_the_field(tmp_path, flags, field):
    with pytest.raises(ConfigError) as error:
        parse_config(["--out", str(tmp_path), *flags])
    message = str(error.value)
    assert message.startswith(f"{field}=") and "\n" not in message


def test_settings_come_from_a_yaml_file_and_flags_override_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"out: {tmp_path}/run\ngroup_size: 4\nrewards: [checker]\nreward_weights: [2.0]\nsteps: 7\n")
    config = parse_config(["--config", str(path), "--steps", "9"])
    assert (config.group_size, config.rewards, config.reward_weights, config.steps) == (4, ["checker"], [2.0], 9)
    path.write_text("out: x\nno_such_setting: 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        parse_config(["--config", str(path)])


def test_prompts_from_several_sources_are_read_one_after_another(tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("a red circle\n\na blue square\n")
    second.write_text("two yellow triangles\n")
    config = parse_config(["--out", str(tmp_path / "run"), "--prompts", f"{first},{second}"])
    assert read_prompts(config.prompts, seed=0) == ["a red circle", "a blue square", "two yellow triangles"]


# -- rewards and advantages -----------------------------------------------------------------------


def test_the_checker_gives_full_credit_only_to_an_exact_scene_and_ranks_the_rest():
    prompt = "a red circle left of a blue square"
    exact = parse_plan("red circle @ middle-left; blue square @ middle-right")
    swapped = parse_plan("blue square @ middle-left; red circle @ middle-right")
    one_missing = parse_plan("red circle @ middle-left")
    assert partial_credit(exact, prompt) == 1.0
    assert 0 < partial_credit(one_missing, prompt) < partial_credit(swapped, prompt) < 1.0
    assert plan_valid(
        [prompt, prompt, prompt],
        ["Plan: red circle @ middle-left; blue square @ middle-right", "Plan: red circle @ middle-left", "Plan: a cat"],
        [None] * 3,
    ) == [1.0, 0.5, 0.0]


def test_a_reward_given_as_module_function_is_loaded_and_weighted():
    ensemble = RewardEnsemble.of(["plan_valid", REDNESS], [2.0, 1.0])
    from PIL import Image

    red, grey = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (128, 128, 128))
    totals, parts = ensemble(["x", "x"], [None, None], [red, grey])
    assert parts["plan_valid"] == [1.0, 1.0] and parts[REDNESS][0] == pytest.approx(1.0)
    assert totals == pytest.approx([3.0, 2.0])
    with pytest.raises(ConfigError, match="no_such_module"):
        RewardEnsemble.of(["no_such_module:f"], [1.0])


def test_advantages_are_normalised_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.5, 5.0, 5.0, 5.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    advantages = group_advantages(rewards, groups, scale=True)
    assert advantages[:3].sum().abs() < 1e-6 and advantages[0] > advantages[2] > advantages[1]
    assert torch.equal(advantages[3:], torch.zeros(3))  # a group that agrees teaches nothing


def test_the_clipped_loss_stops_pushing_a_ratio_past_the_clip_range():
    logps = torch.tensor([[math.log(2.0)]], requires_grad=True)  # ratio 2 against old log 1 = 0
    old = torch.zeros(1, 1)
    parts = grpo_loss(logps, old, None, torch.tensor([1.0]), torch.ones(1, 1, dtype=torch.bool), 0.2, 0.0, 1)
    parts.loss.backward()
    assert parts.clipped == 1 and logps.grad.abs().sum() == 0  # clipped: no gradient for a positive advantage
    same = torch.zeros(1, 1, requires_grad=True)
    kl = grpo_loss(
        same, None, torch.tensor([[-0.5]]), torch.tensor([0.0]), torch.ones(1, 1, dtype=torch.bool), 0.2, 1.0, 1
    )
    assert kl.kl == pytest.approx(math.exp(-0.5) + 0.5 - 1)


# -- rollouts and log-probabilities ---------------------------------------------------------------


def test_rollouts_give_the_pipelines_tokens_for_the_same_seeds():
    backend = JanusBackend.from_pretrained(CATALOG["shapes"], name="shapes")
    pipeline = ReasonerPipeline(backend)
    prompts = ["a red circle left of a blue square", "two green triangles"]
    trajectories = roll_out(backend, prompts, RolloutSettings(3, "both", 1.0, 1.0, 1.0), run_seed=5, step=2)
    assert len(trajectories) == 12 and len({t.group for t in trajectories}) == 4
    for t in trajectories:
        plan = None
        if t.mode == "think":
            plan = pipeline.think(t.prompt, seed=t.plan_seed, temperature=1.0)
            assert plan.text == t.plan_text
        settings = DrawSettings(n=1, seed=t.image_seed, cfg_scale=1.0, temperature=1.0)
        drawn = pipeline.draw(t.prompt, plan, settings)[0]
        assert torch.equal(drawn.image_tokens, t.image_tokens)
    plans = {t.plan_text for t in trajectories if t.mode == "think"}
    assert len(plans) > 1  # each trajectory samples its own plan


def record_picks(monkeypatch):
    """Every token choice the fast engine makes, per engine call: [(scores chosen from, temperature, choice)]."""
    calls = []
    real_pick = fast_engine.pick

    def recording_pick(scores, noise, temperature, top_k):
        choice = real_pick(scores, noise, temperature, top_k)
        calls[-1].append(((scores / temperature).log_softmax(-1).gather(-1, choice[:, None])[:, 0], choice))
        return choice

    def marking(method):
        def call(self, *args, **kwargs):
            calls.append([])
            return method(self, *args, **kwargs)

        return call

    for module in list(sys.modules.values()):  # the engine's modules import `pick` by name
        if (
            getattr(module, "__name__", "").startswith("reasoner.engine.")
            and getattr(module, "pick", None) is real_pick
        ):
            monkeypatch.setattr(module, "pick", recording_pick)
    for name in ("_image_tokens", "_text_tokens"):
        monkeypatch.setattr(fast_engine.FastEngine, name, marking(getattr(fast_engine.FastEngine, name)))
    return calls


def engine_logps(calls, tokens_of_row) -> list[torch.Tensor]:
    """Per row of any call: the engine's log-probabilities of its choices, found by the tokens it chose."""
    rows = []
    for picks in calls:
        logps = torch.stack([logp for logp, _ in picks], dim=1)
        choices = torch.stack([choice for _, choice in picks], dim=1)
        rows += list(zip(choices.tolist(), logps))
    found = []
    for tokens in tokens_of_row:
        found.append(next(logp[: len(tokens)] for choice, logp in rows if choice[: len(tokens)] == tokens))
    return found


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_log_probs_equal_the_distribution_the_rollout_sampled_from(tiny_backend, monkeypatch, cfg_scale):
    backend = JanusBackend(
        tiny_backend.model, tiny_backend.tokenizer, tiny_backend.image_processor, tiny_backend.template, "tiny"
    )
    calls = record_picks(monkeypatch)
    settings = RolloutSettings(3, "think", 0.8, 0.25, cfg_scale)
    trajectories = roll_out(backend, ["two red squares"], settings, run_seed=0, step=0)
    monkeypatch.undo()
    image_calls = [c for c in calls if len(c) == backend.num_image_tokens]
    text_calls = [c for c in calls if c not in image_calls]
    scorer = TokenScorer(backend.model, cfg_scale, 0.8, 0.25)
    batch = ScoringBatch.of(trajectories, backend.special, guided=cfg_scale != 1)
    with torch.no_grad():
        plan_logps, image_logps = scorer(batch)
    expected_image = engine_logps(image_calls, [t.image_tokens.tolist() for t in trajectories])
    plan_tokens = [t.plan_ids + ([] if t.plan_stop is None else [t.plan_stop]) for t in trajectories]
    expected_plan = engine_logps(text_calls, plan_tokens)
    for row, tokens in enumerate(plan_tokens):
        torch.testing.assert_close(image_logps[row], expected_image[row], atol=2e-4, rtol=0)
        torch.testing.assert_close(plan_logps[row, : len(tokens)], expected_plan[row], atol=2e-4, rtol=0)
        assert not plan_logps[row, len(tokens) :].any()
    assert image_logps.std() > 0.03  # a random model is near uniform: sharpened, the rows differ


# -- training -------------------------------------------------------------------------------------


def surrogate(trainer: GRPOTrainer, batch: ScoringBatch, old: torch.Tensor, advantages: torch.Tensor) -> float:
    with torch.no_grad():
        logps = torch.cat(trainer.scorer(batch), dim=1)
        mask = trainer.trained_mask(batch, True, True)
        return float(grpo_loss(logps, old, None, advantages, mask, 10.0 - 9.9, 0.0, int(mask.sum())).loss)


def test_two_grpo_steps_change_the_adapter_and_lower_the_loss_on_a_fixed_batch(tmp_path, tiny_model_dir):
    trainer = GRPOTrainer(tiny_config(tmp_path, tiny_model_dir, beta=0.0))
    trajectories = roll_out(
        trainer.backend, ["three blue circles", "a yellow square"], trainer.rollout_settings(), 0, 0
    )
    totals, _ = trainer.rewards(
        [t.prompt for t in trajectories], [t.plan_text for t in trajectories], [t.picture for t in trajectories]
    )
    advantages = group_advantages(torch.tensor(totals), torch.tensor([t.group for t in trajectories]), True)
    assert advantages.abs().sum() > 0
    batch = ScoringBatch.of(trajectories, trainer.backend.special, guided=False)
    with torch.no_grad():
        old = torch.cat(trainer.scorer(batch), dim=1)
    lora_b = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if "lora_B" in n}
    before = surrogate(trainer, batch, old, advantages)
    for _ in range(2):
        trainer.optimise(trajectories, advantages)
    after = surrogate(trainer, batch, old, advantages)
    assert after < before - 1e-4
    changed = [n for n, p in trainer.policy.named_parameters() if "lora_B" in n and not torch.equal(p, lora_b[n])]
    assert len(changed) == len(lora_b)
    assert all(not p.requires_grad for n, p in trainer.policy.named_parameters() if "lora_" not in n)


def test_skip_uniform_groups_scores_only_the_groups_whose_rewards_differ(tmp_path, tiny_model_dir, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a yellow square\nthree blue circles\n")
    settings = dict(prompts=str(prompts), rewards=["tests.finetune_rewards:redness_of_circles"])
    trainer = GRPOTrainer(tiny_config(tmp_path, tiny_model_dir, skip_uniform_groups=True, **settings))
    scored = []
    optimise = trainer.optimise
    monkeypatch.setattr(trainer, "optimise", lambda rows, advantages: scored.append(rows) or optimise(rows, advantages))
    metrics = trainer.train_step()
    assert metrics["groups_trained"] == 1
    assert [t.prompt for t in scored[0]] == ["three blue circles"] * 3
    assert trainer.optimizer.state  # the informative group took an optimizer step

    # every group uniform (a shapes checker never satisfied by a random model): no step at all
    uniform = GRPOTrainer(tiny_config(tmp_path / "u", tiny_model_dir, skip_uniform_groups=True, rewards=["checker"]))
    metrics = uniform.train_step()
    assert metrics["groups_trained"] == 0 and not uniform.optimizer.state
    kept = GRPOTrainer(tiny_config(tmp_path / "k", tiny_model_dir, rewards=["checker"]))
    kept.train_step()
    assert kept.optimizer.state  # without the setting the same step runs the loss pass


def test_think_guides_join_only_the_direct_groups_that_drew_nothing_as_good():
    def row(prompt, group, mode, token):
        context = [1, 2] if mode == "direct" else [1, 2, 3]
        return Trajectory(prompt, group, mode, 0, 0, context, [], None, None, torch.tensor([token]))

    # prompt a: direct drew nothing right, think did twice; prompt b: direct already drew right
    think = [row("a", 0, "think", t) for t in (10, 11, 12)] + [row("b", 1, "think", t) for t in (13, 14, 15)]
    direct = [row("a", 2, "direct", t) for t in (20, 21, 22)] + [row("b", 3, "direct", t) for t in (23, 24, 25)]
    reward_of_token = {10: 0.5, 11: 1.0, 12: 0.75, 13: 1.0, 14: 1.0, 15: 0.0}
    rewards = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0] + [0.25, 0.0, 0.5, 1.0, 0.5, 0.5]  # think rows as rolled, then direct

    def score(rows):  # as direct rows: in this world, the picture's reward does not depend on the plan
        return [reward_of_token[int(r.image_tokens[0])] for r in rows]

    guides, guide_rewards = think_guides(think + direct, rewards, 2, score)
    assert [int(g.image_tokens[0]) for g in guides] == [11, 12]  # the best two of a's that beat 0.5
    assert guide_rewards == [1.0, 0.75]
    assert all(g.group == 2 and g.guide and g.context_ids == [1, 2] and g.plan_ids == [] for g in guides)
    assert think_guides(think + direct, rewards, 1, score)[0][0].image_tokens.tolist() == [11]


def test_think_guides_in_a_step_are_scored_in_their_direct_groups(tmp_path, tiny_model_dir, monkeypatch):
    trainer = GRPOTrainer(tiny_config(tmp_path, tiny_model_dir, rollout="both", train="image", think_guides=2))
    rows = []
    optimise = trainer.optimise
    monkeypatch.setattr(trainer, "optimise", lambda batch, a: rows.extend(batch) or optimise(batch, a))
    metrics = trainer.train_step()
    guides = [t for t in rows if t.guide]
    assert metrics["guides"] == len(guides) and trainer.optimizer.state
    assert len(rows) == 2 * 2 * 3 + len(guides)  # 2 prompts x (a think and a direct group of 3), then guides
    sampled_rewards = trainer.score([t for t in rows if not t.guide])[0]
    for guide, reward in zip(guides, trainer.score(guides)[0]):
        group = [r for r, t in zip(sampled_rewards, rows) if t.group == guide.group]
        assert len(group) == 3 and reward > max(group)
        assert any(torch.equal(guide.image_tokens, t.image_tokens) for t in rows if t.mode == "think")


def test_a_run_writes_metrics_checkpoints_and_an_adapter_and_resume_continues_exactly(tmp_path, tiny_model_dir):
    whole = GRPOTrainer(tiny_config(tmp_path / "whole", tiny_model_dir, steps=3))
    whole.train()
    lines = [json.loads(line) for line in (tmp_path / "whole" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3]
    assert {f"reward/{REDNESS}", "kl", "loss", "clip_fraction", "rollout_seconds"} <= set(lines[0])
    assert (tmp_path / "whole" / "run" / "adapter" / "adapter_model.safetensors").is_file()
    kept = checkpoints.complete_checkpoints(tmp_path / "whole" / "run")
    assert [p.name for p in kept] == ["checkpoint-2", "checkpoint-3"]  # keep_checkpoints=2

    interrupted = GRPOTrainer(tiny_config(tmp_path / "parts", tiny_model_dir, steps=1))
    interrupted.train()
    metrics = tmp_path / "parts" / "run" / "metrics.jsonl"
    with open(metrics, "a") as handle:  # a step the interrupted run logged but never saved
        handle.write(json.dumps({"step": 2, "reward": -1.0}) + "\n")
    resumed = GRPOTrainer(tiny_config(tmp_path / "parts", tiny_model_dir, steps=3, resume=True))
    resumed.train()
    assert resumed.step == 3
    steps = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [m["step"] for m in steps] == [1, 2, 3] and steps[1]["reward"] != -1.0
    for (name, a), (_, b) in zip(whole.policy.named_parameters(), resumed.policy.named_parameters()):
        assert torch.equal(a, b), name


def test_a_crash_while_saving_leaves_the_previous_checkpoint_loadable(tmp_path, tiny_model_dir, monkeypatch):
    trainer = GRPOTrainer(tiny_config(tmp_path, tiny_model_dir, steps=1))
    trainer.train()
    trainer.train_step()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "sync_directory", full_disk)
    from reasoner.errors import OutputError

    with pytest.raises(OutputError, match="No space left"):
        trainer.save()
    monkeypatch.undo()
    run = tmp_path / "run"
    assert checkpoints.latest_checkpoint(run).name == "checkpoint-1"
    assert not list(run.glob(".checkpoint-*"))
    fresh = GRPOTrainer(tiny_config(tmp_path, tiny_model_dir, steps=1, resume=True))
    fresh.resume()
    assert fresh.step == 1


def test_a_run_refuses_to_overwrite_checkpoints_without_resume(tmp_path, tiny_model_dir):
    GRPOTrainer(tiny_config(tmp_path, tiny_model_dir, steps=1)).train()
    with pytest.raises(ConfigError, match="--resume"):
        GRPOTrainer(tiny_config(tmp_path, tiny_model_dir, steps=2)).train()


def test_the_prompt_order_is_a_function_of_the_step():
    prompts = [f"p{i}" for i in range(10)]
    first = [step_prompts(prompts, step, 4, seed=3) for step in range(5)]
    assert first == [step_prompts(prompts, step, 4, seed=3) for step in range(5)]
    assert sorted(sum(first[:2], []) + first[2][:2]) == sorted(prompts)  # one epoch covers every prompt once


def test_the_shipped_run_config_parses():
    config = parse_config(["--config", "finetune/configs/shapes-grpo.yaml", "--out", "runs/x"])
    assert (config.rollout, config.train, config.group_size, config.steps) == ("think", "both", 8, 80)


def test_a_time_budget_stops_the_run_after_the_step_that_spends_it_and_saves(tmp_path, tiny_model_dir):
    trainer = GRPOTrainer(tiny_config(tmp_path, tiny_model_dir, steps=50, save_every=25, max_minutes=1e-6))
    final = trainer.train()
    assert trainer.step == 1 and (final / "adapter_model.safetensors").exists()
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1]
    assert checkpoints.latest_checkpoint(tmp_path / "run").name.endswith("-1")
