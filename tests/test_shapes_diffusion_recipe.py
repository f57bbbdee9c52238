"""The shapes-diffusion recipe (weights/recipe/diffusion.py) on tiny settings: a random tiny Janus
planner built in code, a few training steps of tiny diffusers parts. It runs end to end, writes a
directory the think-then-generate backend loads and draws from through ReasonerPipeline, resumes
from its UNet checkpoint exactly, and its training steps lower the renderer's loss on a fixed batch."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasoner.backends.think_generate import ThinkGenerateBackend
from reasoner.models.random_janus import save_random_janus
from reasoner.pipeline import ReasonerPipeline
from reasoner.records import DrawSettings, Plan
from weights.build import main as build_main
from weights.recipe import diffusion_parts as parts
from weights.recipe.diffusion import DiffusionRecipe, build_shapes_diffusion

PROMPT = "a red circle in the top-left corner"


@pytest.fixture(scope="module")
def janus_dir(tmp_path_factory):
    directory = save_random_janus(tmp_path_factory.mktemp("tiny-janus"), preset="tiny", seed=0)
    (directory / "reasoner.json").write_text(
        json.dumps({**json.loads((directory / "reasoner.json").read_text()), "max_plan_tokens": 24})
    )
    return directory


def tiny_recipe(janus_dir: Path, **changes) -> DiffusionRecipe:
    settings = dict(
        planner_from=str(janus_dir), pool_size=48, vae_channels="8,8,8,8", vae_groups=4, vae_steps=3, vae_batch=8,
        unet_channels="16,32", unet_groups=8, attention_head_dim=8, cross_attention_dim=32, unet_steps=4,
        unet_batch=8, checkpoint_every=2, sample_steps=2, condition_tokens=200, eval_prompts=4,
    )  # fmt: skip
    return DiffusionRecipe(**{**settings, **changes})


@pytest.fixture(scope="module")
def built(janus_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    taken = build_shapes_diffusion(tiny_recipe(janus_dir), root / "work", root / "model")
    return root, taken


def test_recipe_writes_a_model_the_pipeline_draws_with(built):
    root, taken = built
    out = root / "model"
    pipeline = ReasonerPipeline.from_pretrained(str(out))
    assert isinstance(pipeline.backend, ThinkGenerateBackend)
    assert (pipeline.info.kind, pipeline.info.world, pipeline.info.image_size) == ("think-generate", "shapes", 72)
    candidates = pipeline.draw(PROMPT, Plan("red circle @ top-left", "person"), DrawSettings(n=2, seed=3))
    assert [c.image.size for c in candidates] == [(72, 72)] * 2
    again = pipeline.draw(PROMPT, Plan("red circle @ top-left", "person"), DrawSettings(n=2, seed=3))
    assert [c.image.tobytes() for c in candidates] == [c.image.tobytes() for c in again]
    # everything it ships is float16, with the recipe and a card holding the figures
    for path in out.rglob("*.safetensors"):
        assert {t.dtype for t in load_file(str(path)).values()} == {torch.float16}, path
    card = (out / "README.md").read_text()
    assert "## Data" in card and "## Recipe" in card and "| think |" in card and "| direct |" in card
    assert taken["eval"]["prompts"] == 4 and 0 <= taken["eval"]["think"]["overall"] <= 1
    assert taken["eval"]["seconds_4_candidates"] > 0
    assert json.loads((out / "recipe.json").read_text())["taken"]["unet"]["steps"] == 4


def test_planner_is_the_janus_language_model(janus_dir, built):
    """The planner writes what the Janus model writes (same weights, same context, it stops at begin-of-image)."""
    from reasoner.backends.janus import JanusBackend

    root, _ = built
    janus = JanusBackend.from_pretrained(janus_dir)
    planner = ThinkGenerateBackend.from_pretrained(root / "model", dtype=torch.float32)
    for prompt in ("a red circle", "two blue squares"):
        assert planner.write_plan(prompt, 0, 0.0) == janus.write_plan(prompt, 0, 0.0)
        # the renderer reads the plan as the Janus model does before drawing: context, plan, begin-of-image
        plan = "red circle @ top-left"
        context, text = planner.condition_ids(planner.think_context(prompt), plan)
        assert context + text == janus.draw_context_ids(prompt, plan)


def test_resume_continues_from_the_checkpoint_exactly(janus_dir, built, tmp_path):
    _, taken = built
    recipe = tiny_recipe(janus_dir, eval_prompts=0)
    build_shapes_diffusion(replace(recipe, unet_stop_at=2), tmp_path / "work", tmp_path / "half")
    assert json.loads((tmp_path / "work" / "unet-checkpoint" / "progress.json").read_text())["step"] == 2
    with pytest.raises(SystemExit, match="--resume"):
        build_shapes_diffusion(recipe, tmp_path / "work", tmp_path / "model")
    resumed = build_shapes_diffusion(recipe, tmp_path / "work", tmp_path / "model", resume=True)
    assert resumed["unet"]["steps"] == 4
    # steps 3-4 after the checkpoint give what the uninterrupted run's steps 1-4 gave
    assert resumed["unet"]["last_loss"] == pytest.approx(taken["unet"]["last_loss"], rel=1e-5)
    whole = load_file(str(built[0] / "work" / "unet-checkpoint" / "ema.safetensors"))
    split = load_file(str(tmp_path / "work" / "unet-checkpoint" / "ema.safetensors"))
    assert all(torch.allclose(whole[k], split[k], atol=1e-6) for k in whole)


def test_training_steps_lower_the_loss_on_a_fixed_batch(janus_dir, built):
    root, _ = built
    recipe = tiny_recipe(janus_dir, unet_steps=30, unet_lr=3e-3)
    backend = ThinkGenerateBackend.from_pretrained(root / "model", dtype=torch.float32)
    rows = parts.training_rows(16, 0, backend.config, recipe.direct_share, recipe.unrelated_share)
    vae = backend.renderer.vae
    latents = parts.encode_latents(vae, parts.pictures_of(rows, 1), "cpu") * vae.config.scaling_factor
    hidden, lengths = parts.hidden_states(backend, rows)
    negative, _ = parts.hidden_states(backend, [parts.Row("", "", None)])
    data = parts.UnetData(latents, hidden, lengths, negative[0, :1], recipe.condition_tokens)
    torch.manual_seed(0)
    unet = parts.new_unet((16, 32), 4, 9, 32, 8, 8)
    projection = type(backend.projection)(backend.projection.config)
    before = parts.fixed_batch_loss(unet, projection, data, 0, 16, "cpu")
    parts.train_unet(unet, projection, data, recipe, "cpu", root / "fixed-batch-checkpoint", parts.Clock(None))
    after = parts.fixed_batch_loss(unet, projection, data, 0, 16, "cpu")
    assert after < 0.8 * before


def test_command_line_builds_and_refuses_bad_settings(janus_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_main(["shapes-diffusion", "--planner-from", str(janus_dir), "--direct-share", "1.5"])
    assert exit_info.value.code == 2 and "direct_share" in capsys.readouterr().err
    argv = ["shapes-diffusion", "--out", str(tmp_path / "model"), "--work", str(tmp_path / "work")]
    settings = {
        "planner-from": janus_dir, "pool-size": 24, "vae-channels": "8,8,8,8", "vae-groups": 4, "vae-steps": 1,
        "vae-batch": 4, "unet-channels": "16,32", "unet-groups": 8, "attention-head-dim": 8,
        "cross-attention-dim": 32, "unet-steps": 1, "unet-batch": 4, "sample-steps": 1, "condition-tokens": 200,
        "eval-prompts": 0,
    }  # fmt: skip
    for key, value in settings.items():
        argv += [f"--{key}", str(value)]
    assert build_main(argv) == 0
    assert ThinkGenerateBackend.from_pretrained(tmp_path / "model").info.image_size == 72


def test_catalog_lists_shapes_diffusion_once_built(built, monkeypatch, tmp_path):
    from reasoner.errors import ModelLoadError
    from reasoner.models import catalog

    monkeypatch.setitem(catalog.CATALOG, "shapes-diffusion", tmp_path / "not-built-yet")
    assert "shapes-diffusion" not in catalog.catalog_names()
    with pytest.raises(ModelLoadError, match="not been built yet.*weights.build shapes-diffusion"):
        catalog.resolve("shapes-diffusion")
    monkeypatch.setitem(catalog.CATALOG, "shapes-diffusion", built[0] / "model")
    assert "shapes-diffusion" in catalog.catalog_names()
    source = catalog.resolve("shapes-diffusion")
    assert (source.directory, source.kind) == (built[0] / "model", "think-generate")
