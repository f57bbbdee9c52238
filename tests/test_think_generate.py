"""Think-then-generate on diffusers, through ReasonerPipeline on a tiny random model built in code:
the planner writes plans, the renderer draws them from the planner's own hidden states."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reasoner.backends.base import DrawnImage
from reasoner.backends.think_generate import NoReflectionError, ThinkGenerateBackend
from reasoner.cli import main
from reasoner.engine.progress import image_steps_to
from reasoner.errors import InvalidSettingError, ModelLoadError, PlanError
from reasoner.models.catalog import model_kind, resolve
from reasoner.models.random_think_generate import TINY_CONFIG, save_random_think_generate
from reasoner.pipeline import ReasonerPipeline
from reasoner.records import DrawSettings, Plan

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle in the top-left corner"
PERSON_PLAN = "red circle @ top-left"


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pictures(candidates):
    return [png_bytes(c.image) for c in candidates]


def assert_same_pictures(ours, theirs):
    """Alone and in a batch, a seed's picture is the same up to float rounding: the batch size
    changes the CPU kernels' order of summation, which moves a pixel by one level at most (seen
    with 2 threads: one pixel of 3 x 32 x 32 x 3)."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        difference = np.abs(np.asarray(a.image, dtype=np.int16) - np.asarray(b.image, dtype=np.int16))
        assert difference.max() <= 1 and difference.mean() < 0.01, (difference.max(), difference.mean())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_think_generate(tmp_path_factory.mktemp("tiny-think-generate"), seed=0)


@pytest.fixture(scope="module")
def pipeline(model_dir):
    return ReasonerPipeline.from_pretrained(str(model_dir))


@pytest.fixture
def broken_copy(model_dir, tmp_path):
    """A fresh copy of the tiny model to break."""
    return Path(shutil.copytree(model_dir, tmp_path / "model"))


def test_from_pretrained_picks_the_backend_by_reasoner_json_kind(pipeline, model_dir, tmp_path):
    assert isinstance(pipeline.backend, ThinkGenerateBackend)
    info = pipeline.info
    assert (info.kind, info.world, info.image_size, info.default_cfg_scale) == ("think-generate", "shapes", 32, 3.0)
    assert info.parameters > 0 and "think-generate" in info.summary()
    assert resolve(str(model_dir)).kind == "think-generate"
    # a Janus directory's reasoner.json names no kind: it stays with the Janus backend, as before
    (tmp_path / "reasoner.json").write_text(json.dumps({"world": "shapes"}))
    assert model_kind(tmp_path) == "janus" and model_kind(tmp_path / "nope") == "janus"


def test_think_writes_text_reproducibly_per_seed(pipeline):
    greedy = pipeline.think(PROMPT, seed=0, temperature=0.0)
    assert greedy.source == "model" and greedy.text
    assert pipeline.think(PROMPT, seed=9, temperature=0.0) == greedy  # greedy ignores the seed
    sampled = [pipeline.think(PROMPT, seed=s, temperature=1.0).text for s in (1, 1, 2)]
    assert sampled[0] == sampled[1] != sampled[2]
    batch = pipeline.backend.write_plans(PROMPT, [3, 4, 5], 1.0)
    assert batch == [pipeline.backend.write_plan(PROMPT, s, 1.0) for s in (3, 4, 5)]


def test_draw_gives_n_pictures_of_image_size(pipeline):
    plan = pipeline.think(PROMPT)
    candidates = pipeline.draw(PROMPT, plan, DrawSettings(n=3, seed=40))
    assert [(c.index, c.seed) for c in candidates] == [(0, 40), (1, 41), (2, 42)]
    for candidate in candidates:
        assert candidate.image.size == (32, 32) and candidate.image.mode == "RGB"
        assert candidate.image_tokens is None  # a diffusion model has no image tokens
    assert len(set(pictures(candidates))) == 3  # each seed its own noise


def test_same_seed_same_picture_alone_and_in_a_batch(pipeline):
    plan = pipeline.think(PROMPT)
    batch = pictures(pipeline.draw(PROMPT, plan, DrawSettings(n=3, seed=10)))
    assert pictures(pipeline.draw(PROMPT, plan, DrawSettings(n=3, seed=10))) == batch
    three = pipeline.draw(PROMPT, plan, DrawSettings(n=3, seed=10))
    assert_same_pictures(pipeline.draw(PROMPT, plan, DrawSettings(n=1, seed=11)), three[1:2])
    # without guidance too, and from the prompt alone
    alone = pipeline.draw(PROMPT, None, DrawSettings(n=1, seed=12, cfg_scale=1.0))
    assert_same_pictures(pipeline.draw(PROMPT, None, DrawSettings(n=2, seed=11, cfg_scale=1.0))[1:], alone)


def test_varied_plans_each_candidate_reproduces_from_its_own_plan_and_seed(pipeline):
    candidates = pipeline.draw(PROMPT, None, DrawSettings(n=3, seed=20, vary_plans=True))
    plans = [c.plan for c in candidates]
    assert all(p.source == "model" and p.text for p in plans) and len({p.text for p in plans}) == 3
    for candidate in candidates:
        assert candidate.plan == pipeline.think(PROMPT, candidate.seed, temperature=1.0)
        again = pipeline.draw(PROMPT, candidate.plan, DrawSettings(n=1, seed=candidate.seed))
        assert_same_pictures(again, [candidate])


def test_a_persons_plan_is_drawn_as_written_and_conditions_the_picture(pipeline):
    settings = DrawSettings(n=1, seed=3)
    drawn = pictures(pipeline.draw(PROMPT, PERSON_PLAN, settings))
    # exactly what the backend draws from the text the model reads for that plan
    text = pipeline.model_text(Plan(PERSON_PLAN, source="person"))
    assert PERSON_PLAN in text
    direct = pipeline.backend.draw_images(PROMPT, text, [3], 3.0, 1.0, 0)
    assert pictures(direct) == drawn
    # another plan, the same seed: another picture; so is no plan at all
    assert pictures(pipeline.draw(PROMPT, "blue square @ bottom-right", settings)) != drawn
    assert pictures(pipeline.draw(PROMPT, None, settings)) != drawn
    with pytest.raises(PlanError):  # a person's plan is checked against the shapes grammar first
        pipeline.draw(PROMPT, "red circle @ nowhere", settings)


def test_guidance_counts_and_image_temperature_and_top_k_are_ignored(pipeline):
    plan = pipeline.think(PROMPT)
    guided = pictures(pipeline.draw(PROMPT, plan, DrawSettings(n=2, seed=5, cfg_scale=3.0)))
    assert pictures(pipeline.draw(PROMPT, plan, DrawSettings(n=2, seed=5, cfg_scale=1.0))) != guided
    same = DrawSettings(n=2, seed=5, cfg_scale=3.0, temperature=0.0, top_k=7)
    assert pictures(pipeline.draw(PROMPT, plan, same)) == guided


def test_the_studio_hears_each_denoising_step(pipeline):
    heard = []
    with image_steps_to(lambda done, total: heard.append((done, total))):
        pipeline.draw(PROMPT, PERSON_PLAN, DrawSettings(n=2))
    assert heard == [(step, 4) for step in range(1, 5)]


def test_a_whole_turn_and_the_default_guidance(pipeline):
    turn = pipeline(PROMPT, DrawSettings(n=2, seed=1))
    assert turn.plan.text and turn.settings.cfg_scale == TINY_CONFIG.default_cfg_scale
    assert len(turn.candidates) == 2 and turn.rounds == []


def test_a_plan_longer_than_the_condition_is_one_line_not_cut(pipeline):
    with pytest.raises(PlanError, match="tokens long; this model reads at most 159") as error:
        pipeline.backend.draw_images(PROMPT, "circle " * 200, [0], 1.0, 1.0, 0)
    assert "\n" not in str(error.value)


def test_reflect_is_one_line_no_reflection_error(pipeline):
    candidate = pipeline.draw(PROMPT, PERSON_PLAN, DrawSettings(n=1))[0]
    assert pipeline.backend.supports_reflection is False
    with pytest.raises(NoReflectionError, match="does not reflect") as error:
        pipeline.reflect(PROMPT, PERSON_PLAN, candidate.image)
    assert "\n" not in str(error.value) and isinstance(error.value, InvalidSettingError)
    with pytest.raises(NoReflectionError):
        pipeline(PROMPT, DrawSettings(n=1), reflect=True)


def test_every_engine_name_runs_the_same_code_and_unknown_ones_are_refused(pipeline):
    pipeline.use_engine("fast")
    pipeline.use_engine("onnx")
    assert pipeline.engine == "hf"
    with pytest.raises(InvalidSettingError, match="not one of hf, fast, onnx"):
        pipeline.use_engine("tensorrt")


def corrupt(path: Path) -> None:
    path.write_bytes(b"this is not a safetensors file")


@pytest.mark.parametrize(
    "breakage, fragment",
    [
        (lambda d: (d / "reasoner.json").unlink(), "has no reasoner.json"),
        (lambda d: (d / "reasoner.json").write_text("{not json"), "reasoner.json is not valid JSON"),
        (lambda d: (d / "reasoner.json").write_text('{"kind": "think-generate", "colour": 1}'), "unknown keys"),
        (lambda d: shutil.rmtree(d / "planner"), "has no planner/"),
        (lambda d: shutil.rmtree(d / "renderer"), "has no renderer/"),
        (lambda d: (d / "projection.safetensors").unlink(), "has no projection.safetensors"),
        (lambda d: corrupt(d / "planner" / "model.safetensors"), "model.safetensors is not a readable safetensors"),
        (
            lambda d: corrupt(next((d / "renderer" / "unet").glob("*.safetensors"))),
            "is not a readable safetensors",
        ),
        (lambda d: corrupt(d / "projection.safetensors"), "projection.safetensors is not a readable safetensors"),
        (lambda d: (d / "renderer" / "model_index.json").write_text("[oops"), "model_index.json is not valid JSON"),
        (lambda d: (d / "renderer" / "model_index.json").unlink(), "has no model_index.json"),
    ],
)
def test_a_broken_directory_is_one_line_naming_the_fault(broken_copy, breakage, fragment):
    breakage(broken_copy)
    with pytest.raises(ModelLoadError) as error:
        ReasonerPipeline.from_pretrained(str(broken_copy))
    message = str(error.value)
    assert fragment in message and "\n" not in message, message


def test_an_adapter_is_refused_in_one_line(model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="adapters for it are not built yet"):
        ReasonerPipeline.from_pretrained(str(model_dir), adapter=tmp_path)


def test_generate_command_draws_through_it(model_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["generate", "--prompt", PROMPT, "--model", str(model_dir), "--n", "2", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1] and all(r["plan"] for r in rows)
    assert all((out / r["image"]).is_file() for r in rows)


def test_generate_on_a_missing_renderer_exits_2_with_one_line(broken_copy, tmp_path):
    shutil.rmtree(broken_copy / "renderer")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "reasoner", "generate", "--prompt", PROMPT, "--model", str(broken_copy)]
        + ["--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("error: ") and "has no renderer/" in lines[-1], lines


def test_batched_plans_and_pictures_are_what_the_pipeline_gives_each_prompt(pipeline):
    from reasoner.batched import draw_pictures, write_plans

    backend = pipeline.backend
    prompts = [PROMPT, "two blue squares", PROMPT]
    seeds = [3, 4, 5]
    plans = write_plans(backend, prompts, seeds, 1.0)
    assert plans == [backend.write_plan(p, s, 1.0) for p, s in zip(prompts, seeds)]
    batched = draw_pictures(backend, prompts, [plans[0], None, PERSON_PLAN], seeds, 3.0, 1.0, batch_size=2)
    alone = [
        backend.draw_images(PROMPT, plans[0], [3], 3.0, 1.0, 0)[0],
        backend.draw_images("two blue squares", None, [4], 3.0, 1.0, 0)[0],
        backend.draw_images(PROMPT, PERSON_PLAN, [5], 3.0, 1.0, 0)[0],
    ]
    assert_same_pictures([DrawnImage(p, None) for p in batched], alone)


def test_eval_command_scores_a_think_generate_model_and_refuses_reflect(tmp_path, capsys):
    from dataclasses import replace

    from reasoner.models.random_think_generate import TINY, build_random_think_generate, save_think_generate_dir

    # the shapes checker reads 72 px pictures
    model = build_random_think_generate(0, replace(TINY, image_size=72), replace(TINY_CONFIG, image_size=72))
    directory = save_think_generate_dir(tmp_path / "tiny72", model)
    figures = tmp_path / "eval.json"
    flags = ["eval", "--model", str(directory), "--prompts", "8", "--json", str(figures)]
    assert main([*flags, "--modes", "direct,think,follow"]) == 0
    accuracy = json.loads(figures.read_text())["modes"]
    assert set(accuracy) == {"direct", "think", "follow"}
    assert 0 <= accuracy["think"]["overall"] <= 1 and len(accuracy["think"]) > 2  # per category
    assert main([*flags, "--modes", "think,reflect"]) == 2
    assert "does not reflect" in capsys.readouterr().err
