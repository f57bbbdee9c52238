"""The fast engine's CPU default: decode steps compiled ahead of time (reasoner/engine/fast_aot.py).

On the tiny model: the packages are built once in a child process into a cache of this module's own,
loaded in the background, and then give the reference's tokens (image and text, greedy and sampled,
batch sizes and mixed lengths from one package, reflections); a second engine loads them without
building; new weights are bound again; a cache that cannot be written leaves the eager step serving.
"""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from reasoner.backends.janus import JanusBackend
from reasoner.engine.fast import FastEngine
from reasoner.engine.fast_aot import KINDS, package_key

PROMPT = "a circle the color of the sky"
PLAN = "red circle @ top-left; blue square @ middle-center"
BUILD_TIMEOUT_S = 900  # a shared 2-core machine builds each package in 15-40 s


def over(backend: JanusBackend, engine: str, model=None) -> JanusBackend:
    model = backend.model if model is None else model
    return JanusBackend(model, backend.tokenizer, backend.image_processor, backend.template, name="t", engine=engine)


@pytest.fixture(scope="module")
def aot_env(tmp_path_factory):
    """The fast engine's default mode (REASONER_FAST_COMPILE=aot), with a package cache of this module's own."""
    cache = tmp_path_factory.mktemp("fast-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REASONER_FAST_COMPILE", "aot")
        patch.setenv("REASONER_FAST_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def pair(tiny_backend, aot_env):
    hf, fast = over(tiny_backend, "hf"), over(tiny_backend, "fast")
    steps = fast.runner.aot
    assert steps is not None, "the CPU default is the compiled-ahead step"
    assert steps.wait(BUILD_TIMEOUT_S), steps.failures
    assert all(steps.timings[kind]["build_s"] > 0 for kind in KINDS)  # built here, in the child process
    assert sorted(p.name.split("-")[0] for p in aot_env.glob("*.pt2")) == ["image", "text"]
    return hf, fast


def same_pictures(hf, fast, context, seeds, cfg_scale, temperature, top_k=0) -> bool:
    expected = hf.generate_image_tokens(context, seeds, cfg_scale, temperature, top_k)
    return torch.equal(fast.generate_image_tokens(context, seeds, cfg_scale, temperature, top_k), expected)


def used(fast: JanusBackend, kind: str) -> bool:
    """The compiled-ahead step of `kind` ran (it is bound when a token loop takes it)."""
    return fast.runner.aot.loaded[kind].generation == fast.runner.generation


@pytest.mark.slow  # builds the two packages (30-60 s)
def test_image_tokens_match_the_reference_at_every_batch_size(pair):
    hf, fast = pair
    context = hf.draw_context_ids(PROMPT, PLAN)
    for seeds in ([0], [1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11]):  # one package for every row count
        for cfg_scale, temperature in ((5.0, 0.0), (5.0, 1.0), (1.0, 1.0)):
            assert same_pictures(hf, fast, context, seeds, cfg_scale, temperature)
    assert used(fast, "image")
    direct = hf.draw_context_ids(PROMPT, None)  # another context length
    assert same_pictures(hf, fast, direct, [7], 5.0, 1.0)


@pytest.mark.slow  # builds the two packages (30-60 s)
def test_plans_and_reflections_match_the_reference(pair):
    hf, fast = pair
    for temperature in (0.0, 1.0):
        assert fast.write_plan(PROMPT, 3, temperature) == hf.write_plan(PROMPT, 3, temperature)
    assert used(fast, "text")
    picture = Image.new("RGB", (72, 72), (30, 30, 200))
    assert fast.write_reflection(PROMPT, PLAN, picture, 0, 0.0) == hf.write_reflection(PROMPT, PLAN, picture, 0, 0.0)


@pytest.mark.slow  # builds the two packages (30-60 s)
def test_mixed_lengths_take_the_same_package(pair):
    hf, fast = pair
    draw = [hf.draw_context_ids("a red circle", "red circle @ top-left"), hf.draw_context_ids(PROMPT, None)]
    draw.append(hf.draw_context_ids(PROMPT, PLAN))
    assert len({len(c) for c in draw}) == 3
    rows = fast.generate_image_token_rows(draw, [3, 4, 5], 3.0, 1.0, 0)
    alone = [hf.generate_image_tokens(c, [s], 3.0, 1.0, 0) for c, s in zip(draw, [3, 4, 5])]
    assert torch.equal(rows, torch.cat(alone))
    think = [hf.think_context_ids(p) for p in ("a red circle", PROMPT, "two green squares")]
    stops = [hf.eos_id, hf.boi_id]
    assert fast.generate_text_ids(think, None, [1, 2, 3], 1.0, 24, stops) == hf.generate_text_ids(
        think, None, [1, 2, 3], 1.0, 24, stops
    )


@pytest.mark.slow  # builds the two packages (30-60 s)
def test_top_k_runs_the_eager_step(pair):
    hf, fast = pair
    context = hf.draw_context_ids(PROMPT, PLAN)
    assert same_pictures(hf, fast, context, [0, 1], 5.0, 1.0, top_k=3)


@pytest.mark.slow  # builds the two packages (30-60 s)
def test_a_second_engine_loads_the_packages_and_follows_new_weights(pair, tiny_backend):
    """Nothing is built again (another model of the same shape shares the packages: no weights in them),
    and weights changed in place are bound again on the next token loop."""
    model = copy.deepcopy(tiny_backend.model)
    hf, fast = over(tiny_backend, "hf", model), over(tiny_backend, "fast", model)
    steps = fast.runner.aot
    assert steps.wait(60) and all(steps.timings[kind]["build_s"] == 0 for kind in KINDS)
    context = hf.draw_context_ids(PROMPT, PLAN)
    before = fast.generate_image_tokens(context, [0, 1], 5.0, 0.0, 0)
    assert torch.equal(before, hf.generate_image_tokens(context, [0, 1], 5.0, 0.0, 0))
    with torch.no_grad():
        model.model.generation_head.vision_head.weight.mul_(-1.0)
        for layer in model.model.language_model.layers:
            layer.mlp.up_proj.weight.mul_(-3.0)
    after = fast.generate_image_tokens(context, [0, 1], 5.0, 0.0, 0)
    assert fast.runner.generation == 1 and used(fast, "image")
    assert not torch.equal(before, after)
    assert torch.equal(after, hf.generate_image_tokens(context, [0, 1], 5.0, 0.0, 0))


def test_a_cache_that_cannot_be_written_leaves_the_eager_step_serving(tiny_backend, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("REASONER_FAST_CACHE", str(blocker / "fast"))
    engine = FastEngine(tiny_backend.model, over(tiny_backend, "hf").special, ahead_of_time=True)
    assert engine.aot is not None and not engine.aot.wait(60)
    assert set(engine.aot.failures) == set(KINDS) and not engine.aot.loaded
    hf, fast = over(tiny_backend, "hf"), over(tiny_backend, "fast")
    fast._runner = engine
    context = hf.draw_context_ids(PROMPT, PLAN)
    assert same_pictures(hf, fast, context, [2], 5.0, 1.0)


def test_packages_are_keyed_on_the_models_shape_and_kind(tiny_backend):
    model = tiny_backend.model
    assert package_key(model, "image") != package_key(model, "text")
    other = copy.deepcopy(model)
    assert package_key(other, "image") == package_key(model, "image")  # weights do not count
    other.config.text_config.num_hidden_layers += 1
    assert package_key(other, "image") != package_key(model, "image")
