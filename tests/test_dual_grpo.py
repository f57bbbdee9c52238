"""Dual-GRPO (finetune/dual_grpo.py) on a tiny random think-then-generate model built in code:
the stochastic sampler's log-probs, both halves' losses, the schedules, resume and the command."""

import shutil

import numpy as np
import pytest
import torch

from finetune.__main__ import main as finetune_main
from finetune.config import ConfigError
from finetune.diffusion_sampler import StochasticSampler
from finetune.dual_config import DualGRPOConfig
from finetune.dual_grpo import DualGRPOTrainer, plan_batch
from finetune.rewards import plan_followed
from reasoner.backends.think_generate import ThinkGenerateBackend
from reasoner.models.random_think_generate import save_random_think_generate
from reasoner.shapes import parse_plan, render_scene


def brightness(prompts, plans, pictures):
    """A reward any picture size has: its mean brightness (the tiny model draws 32 px)."""
    return [float(np.asarray(p, dtype=np.float32).mean()) / 255 for p in pictures]


BRIGHTNESS = "tests.test_dual_grpo:brightness"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_think_generate(tmp_path_factory.mktemp("tiny-dual"), seed=0)


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("a red circle\ntwo blue squares\na green triangle left of a red square\n")
    return path


def settings(model_dir, prompts_file, out, **overrides):
    values = dict(
        model=str(model_dir), out=str(out), prompts=str(prompts_file), steps=2, prompts_per_step=2, group_size=3,
        sample_steps=4, progress=False, rewards=[BRIGHTNESS], reward_weights=[1.0], renderer_rewards=[BRIGHTNESS],
        renderer_reward_weights=[1.0], planner_learning_rate=1e-2, renderer_learning_rate=1e-3, warmup_steps=0,
        micro_batch=4, save_every=1,
    )  # fmt: skip
    values.update(overrides)
    return DualGRPOConfig(**values)


def lora_weights(trainer):
    return {n: p.detach().clone() for n, p in trainer.planner.named_parameters() if "lora_B" in n}


def unet_weights(trainer):
    return {n: p.detach().clone() for n, p in trainer.unet.named_parameters()}


def changed(before, after):
    return any(not torch.equal(before[n], after[n]) for n in before)


def test_the_sampler_keeps_the_log_prob_of_the_distribution_it_sampled_from(model_dir):
    backend = ThinkGenerateBackend.from_pretrained(model_dir)
    sampler = StochasticSampler(backend.renderer.scheduler.config, steps=4, eta=1.0, cfg_scale=3.0)
    conditions = torch.cat([backend.plan_condition("a red circle", p) for p in ("red circle @ top-left", "blue")])
    negative = backend.negative_condition()
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    trajectory = sampler.sample(backend.renderer.unet, conditions, negative, generators, latent_size=16)
    # 4 steps: the first 2 sample; the 3rd is narrower than MIN_STD and the last gives the clean latents
    assert [sampler.std(step) > 0 for step in range(4)] == [True, True, False, False]
    assert trajectory.latents.shape == (2, 5, 4, 16, 16) and trajectory.log_probs.shape == (2, 2)
    again, kl = sampler.step_log_probs(
        backend.renderer.unet, trajectory, [0, 1], conditions, negative, reference=backend.renderer.unet
    )
    torch.testing.assert_close(again, trajectory.log_probs, rtol=1e-5, atol=1e-2)
    assert float(kl.detach().abs().max()) == 0.0  # the same UNet as its reference
    # a seed gives its row the same trajectory alone or in a batch
    alone = sampler.sample(
        backend.renderer.unet, conditions[1:], negative, [torch.Generator().manual_seed(2)], latent_size=16
    )
    torch.testing.assert_close(alone.latents[0], trajectory.latents[1], rtol=1e-4, atol=1e-4)


def test_right_padded_plan_log_probs_equal_each_row_read_alone(model_dir, prompts_file, tmp_path):
    trainer = DualGRPOTrainer(settings(model_dir, prompts_file, tmp_path / "run"))
    rows = [(0, [1, 5, 6], [7, 8, 9, 2], "x"), (0, [1, 5], [7, 2], "y")]
    ids, mask, positions = plan_batch(rows, trainer.backend.pad_id)
    with torch.no_grad():
        together = trainer.plan_log_probs(ids, positions)
        for k, row in enumerate(rows):
            one_ids, _, one_positions = plan_batch([row], trainer.backend.pad_id)
            alone = trainer.plan_log_probs(one_ids, one_positions)[0]
            torch.testing.assert_close(together[k, : len(row[2])], alone, rtol=1e-5, atol=1e-5)
    assert mask.tolist() == [[True] * 4, [True, True, False, False]]
    # and a log-prob is the log-softmax of the planner's logits at the plan temperature
    with torch.no_grad():
        logits = trainer.planner(input_ids=torch.tensor([[1, 5, 6]])).logits[0, -1]  # what predicts token 7
        expected = torch.log_softmax(logits / trainer.config.plan_temperature, -1)[7]
        ids, _, positions = plan_batch([(0, [1, 5, 6], [7], "")], 0)
        torch.testing.assert_close(trainer.plan_log_probs(ids, positions)[0, 0], expected)


def test_balanced_steps_train_both_halves_and_lower_the_loss_on_a_fixed_batch(model_dir, prompts_file, tmp_path):
    trainer = DualGRPOTrainer(settings(model_dir, prompts_file, tmp_path / "run"))
    lora, unet = lora_weights(trainer), unet_weights(trainer)
    metrics = trainer.train_step()
    assert metrics["trained"] == "planner+renderer"
    assert changed(lora, lora_weights(trainer)) and changed(unet, unet_weights(trainer))
    # a fixed batch: the renderer's surrogate loss falls after a step on it
    torch.manual_seed(0)
    backend = trainer.backend
    conditions = torch.cat([backend.plan_condition("a red circle", "red circle @ top-left")] * 4)
    generators = [torch.Generator().manual_seed(s) for s in range(4)]
    trajectory = trainer.sampler.sample(trainer.unet, conditions, None, generators, trainer.latent_size)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])

    @torch.no_grad()
    def surrogate():
        logps, _ = trainer.sampler.step_log_probs(trainer.unet, trajectory, [0, 1], conditions, None)
        return float(-(advantages[:, None] * logps).mean())

    before = surrogate()
    for _ in range(3):
        trainer.renderer_loss(trajectory, conditions, None, advantages)
        trainer.optimizer_step(planner=False, renderer=True)
    assert surrogate() < before


def test_the_staged_schedule_trains_the_planner_then_the_renderer(model_dir, prompts_file, tmp_path):
    trainer = DualGRPOTrainer(settings(model_dir, prompts_file, tmp_path / "run", schedule="staged", stage_steps=1))
    lora, unet = lora_weights(trainer), unet_weights(trainer)
    assert trainer.train_step()["trained"] == "planner"
    assert changed(lora, lora_weights(trainer)) and not changed(unet, unet_weights(trainer))
    lora = lora_weights(trainer)
    assert trainer.train_step()["trained"] == "renderer"
    assert not changed(lora, lora_weights(trainer)) and changed(unet, unet_weights(trainer))


def test_resume_gives_the_parameters_of_an_uninterrupted_run(model_dir, prompts_file, tmp_path):
    whole = DualGRPOTrainer(settings(model_dir, prompts_file, tmp_path / "whole"))
    whole.train()
    first = DualGRPOTrainer(settings(model_dir, prompts_file, tmp_path / "parts", steps=1))
    first.train()
    second = DualGRPOTrainer(settings(model_dir, prompts_file, tmp_path / "parts", steps=2, resume=True))
    second.train()
    for name, value in whole.trained.state_dict().items():
        torch.testing.assert_close(second.trained.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_the_command_writes_a_whole_tuned_model_the_pipeline_loads(model_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--model", str(model_dir), "--out", str(out), "--prompts", str(prompts_file), "--steps", "1"]
    flags += ["--prompts_per_step", "1", "--group_size", "2", "--sample_steps", "3", "--progress", "false"]
    flags += ["--rewards", BRIGHTNESS, "--reward_weights", "1", "--renderer_rewards", BRIGHTNESS]
    assert finetune_main(["dual-grpo", *flags]) == 0
    tuned = ThinkGenerateBackend.from_pretrained(out / "model")
    base = ThinkGenerateBackend.from_pretrained(model_dir)
    assert tuned.write_plan("a red circle", 0, 0.0) is not None
    diff = max(
        float((a - b).abs().max())
        for a, b in zip(tuned.renderer.unet.state_dict().values(), base.renderer.unet.state_dict().values())
    )
    assert diff > 0  # the renderer's new weights were written
    shutil.rmtree(out)
    # faults are one line naming the setting
    assert finetune_main(["dual-grpo", *flags, "--schedule", "sideways"]) == 2
    assert "schedule='sideways'" in capsys.readouterr().err
    assert finetune_main(["dual-grpo", "--model", "shapes", "--out", str(out)]) == 2
    assert "think-then-generate" in capsys.readouterr().err


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("group_size", 1, "at least 2"),
        ("eta", 0.0, "stochastic"),
        ("sample_steps", 1, "deterministic"),
        ("renderer_reward_weights", [1.0, 2.0], "2 weights for 1 rewards"),
        ("renderer_step_share", 1.5, "(0, 1]"),
    ],
)
def test_bad_settings_name_the_field(tmp_path, field, value, words):
    with pytest.raises(ConfigError, match=rf"^{field}=.*{words}" if "(" not in words else rf"^{field}="):
        DualGRPOConfig(out=str(tmp_path), **{field: value})


def test_plan_followed_scores_the_picture_against_its_own_plan():
    plan = "needed: 1 red circle. Plan: red circle @ top-left"
    right = render_scene(parse_plan("red circle @ top-left"))
    wrong = render_scene(parse_plan("red circle @ top-left; blue square @ middle-center"))
    elsewhere = render_scene(parse_plan("green triangle @ bottom-right"))
    scores = plan_followed(["a red circle"] * 3, [plan] * 3, [right, wrong, elsewhere])
    assert scores == [1.0, 0.25, 0.0]


def test_the_tuned_model_records_no_local_path(model_dir, prompts_file, tmp_path):
    trainer = DualGRPOTrainer(settings(model_dir, prompts_file, tmp_path / "run", steps=1))
    final = trainer.finish()
    for path in (final / "renderer").glob("*/config.json"):
        assert "_name_or_path" not in path.read_text(), path


def test_planner_from_trains_a_new_planner_with_the_model_s_renderer(prompts_file, tmp_path):
    # a think-then-generate model whose planner came out of a Janus model, as the recipe builds it
    from reasoner.backends.think_generate_loading import planner_from_janus
    from reasoner.models.random_janus import save_random_janus
    from reasoner.models.random_think_generate import (
        RandomThinkGenerate,
        build_random_think_generate,
        save_think_generate_dir,
    )

    first, second = save_random_janus(tmp_path / "janus-0", seed=0), save_random_janus(tmp_path / "janus-1", seed=1)
    planner, tokenizer = planner_from_janus(first)
    parts = build_random_think_generate(seed=0)
    model = save_think_generate_dir(
        tmp_path / "model", RandomThinkGenerate(planner, tokenizer, parts.renderer, parts.projection, parts.config)
    )
    trainer = DualGRPOTrainer(settings(model, prompts_file, tmp_path / "run", steps=1, planner_from=str(second)))
    wanted = planner_from_janus(second)[0].state_dict()
    with trainer.planner.disable_adapter():
        base = trainer.planner.get_base_model().state_dict()
    name = "model.layers.0.self_attn.q_proj.weight"
    key = next(k for k in base if k.endswith(name) or k.endswith(name.replace(".weight", ".base_layer.weight")))
    assert torch.equal(base[key], wanted[name]) and not torch.equal(wanted[name], planner.state_dict()[name])
    trainer.train_step()
    final = trainer.finish()
    tuned = ThinkGenerateBackend.from_pretrained(final)
    assert tuned.write_plan("a red circle", 0, 0.0) is not None
    # a planner the projection cannot read is one line naming the setting
    bigger = save_random_janus(tmp_path / "janus-shapes", preset="shapes", seed=0)
    with pytest.raises(ConfigError, match=r"^planner_from=.*hidden size 256, the projection reads 64"):
        DualGRPOTrainer(settings(model, prompts_file, tmp_path / "run2", planner_from=str(bigger)))
    with pytest.raises(ConfigError, match=r"^planner_from=.*not a model directory"):
        settings(model, prompts_file, tmp_path / "run3", planner_from=str(tmp_path / "nowhere"))
