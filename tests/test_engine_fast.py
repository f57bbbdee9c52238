"""The fast engine against the reference (transformers' generate) on the tiny random Janus.

Token parity for greedy settings (image tokens with guidance, plans, reflections), the sampling
distribution, per-candidate seeds, and the engine choice through the command line.
"""

import copy
import dataclasses
import json

import pytest
import torch
from PIL import Image

from reasoner.backends.janus import JanusBackend
from reasoner.cli import main
from reasoner.engine import BUILT_ENGINES, DEFAULT_ENGINE, ENGINES, check_engine
from reasoner.errors import InvalidSettingError

PROMPT = "a circle the color of the sky"
PLAN = "red circle @ top-left; blue square @ middle-center"


def engine_backend(backend, engine, model=None):
    """Another backend over the same (or the given) model with another engine."""
    return JanusBackend(
        model or backend.model, backend.tokenizer, backend.image_processor, backend.template, name="tiny", engine=engine
    )


@pytest.fixture(scope="module")
def pair(tiny_backend):
    return engine_backend(tiny_backend, "hf"), engine_backend(tiny_backend, "fast")


def test_engine_names():
    assert set(BUILT_ENGINES) == set(ENGINES) == {"hf", "fast", "onnx"} and DEFAULT_ENGINE == "fast"
    with pytest.raises(InvalidSettingError, match="not one of"):
        check_engine("tensorrt")


@pytest.mark.parametrize("cfg_scale", [1.0, 5.0])
def test_greedy_image_tokens_match_the_reference(pair, cfg_scale):
    hf, fast = pair
    context = hf.draw_context_ids(PROMPT, PLAN)
    expected = hf.generate_image_tokens(context, [0, 1, 2], cfg_scale, 0.0, 0)
    assert torch.equal(fast.generate_image_tokens(context, [0, 1, 2], cfg_scale, 0.0, 0), expected)
    direct = hf.draw_context_ids(PROMPT, None)  # another context length: the cache is reused
    assert torch.equal(
        fast.generate_image_tokens(direct, [7], cfg_scale, 0.0, 0),
        hf.generate_image_tokens(direct, [7], cfg_scale, 0.0, 0),
    )


@pytest.mark.parametrize("reads", ["vision", "image_tokens"])
def test_greedy_plans_and_reflections_match_the_reference(pair, reads):
    hf, fast = (copy.copy(backend) for backend in pair)
    for backend in (hf, fast):
        backend.template = dataclasses.replace(backend.template, reflect_reads=reads)
    for prompt in (PROMPT, "two green triangles"):
        assert fast.write_plan(prompt, 0, 0.0) == hf.write_plan(prompt, 0, 0.0)
    picture = hf.decode_images(hf.generate_image_tokens(hf.draw_context_ids(PROMPT, PLAN), [3], 5.0, 1.0, 0))[0]
    # the reflection's prefill carries the picture, read through the vision tower or as VQ codes
    assert fast.write_reflection(PROMPT, PLAN, picture, 0, 0.0) == hf.write_reflection(PROMPT, PLAN, picture, 0, 0.0)


def test_sampling_draws_the_references_tokens_for_the_same_seeds(pair):
    """The pick is torch.multinomial's own draw (argmax p / Exp(1) noise from the row's generator)."""
    hf, fast = pair
    context = hf.draw_context_ids(PROMPT, PLAN)
    for temperature, top_k in ((1.0, 0), (0.7, 5)):
        expected = hf.generate_image_tokens(context, [11, 12], 3.0, temperature, top_k)
        assert torch.equal(fast.generate_image_tokens(context, [11, 12], 3.0, temperature, top_k), expected)
    assert [fast.write_plan(PROMPT, s, 1.0) for s in (1, 2)] == [hf.write_plan(PROMPT, s, 1.0) for s in (1, 2)]


def test_sampled_frequencies_follow_the_guided_distribution(pair):
    """Statistically: over 600 seeds, first image tokens fall as the guided softmax says."""
    hf, fast = pair
    context = hf.draw_context_ids(PROMPT, PLAN)
    cfg, temperature, draws = 2.0, 1.5, 600
    tokens = fast.generate_image_tokens(context, list(range(draws)), cfg, temperature, 0)
    # the guided distribution of the first token, from a plain forward pass of the reference model
    uncond = [t if t in (hf.bos_id, hf.boi_id) else hf.pad_id for t in context]
    with torch.no_grad():
        hidden = hf.model.model.language_model(input_ids=torch.tensor([context, uncond])).last_hidden_state[:, -1]
        logits = hf.model.model.generation_head(hidden).float()
    probs = torch.softmax((logits[1] + cfg * (logits[0] - logits[1])) / temperature, -1)
    vocab = probs.shape[0]
    frequencies = torch.bincount(tokens[:, 0], minlength=vocab).float() / draws
    # per-token binomial standard error sqrt(p(1-p)/n); 5 sigma plus a floor for rare tokens
    tolerance = 5 * (probs * (1 - probs) / draws).sqrt() + 0.01
    assert ((frequencies - probs).abs() <= tolerance).all(), (frequencies, probs)
    # total variation between the two engines' token histograms over every position
    reference = hf.generate_image_tokens(context, list(range(200)), cfg, temperature, 0)
    ours = torch.bincount(tokens[:200].flatten(), minlength=vocab).float() / reference.numel()
    theirs = torch.bincount(reference.flatten(), minlength=vocab).float() / reference.numel()
    assert 0.5 * (ours - theirs).abs().sum() < 0.05


def test_top_k_keeps_to_the_k_best(pair):
    hf, fast = pair
    context = hf.draw_context_ids(PROMPT, PLAN)
    tokens = fast.generate_image_tokens(context, list(range(64)), 5.0, 3.0, 3)
    uncond = [t if t in (hf.bos_id, hf.boi_id) else hf.pad_id for t in context]
    with torch.no_grad():
        hidden = hf.model.model.language_model(input_ids=torch.tensor([context, uncond])).last_hidden_state[:, -1]
        logits = hf.model.model.generation_head(hidden).float()
    best = set((logits[1] + 5.0 * (logits[0] - logits[1])).topk(3).indices.tolist())
    assert set(tokens[:, 0].tolist()) <= best


def test_a_candidate_reproduces_alone_from_its_seed(pair):
    _, fast = pair
    context = fast.draw_context_ids(PROMPT, PLAN)
    batch = fast.generate_image_tokens(context, [20, 21, 22, 23], 5.0, 1.0, 0)
    assert torch.equal(fast.generate_image_tokens(context, [22], 5.0, 1.0, 0)[0], batch[2])
    assert torch.equal(fast.generate_image_tokens(context, [20, 21, 22, 23], 5.0, 1.0, 0), batch)


def test_the_engine_follows_weights_changed_in_place(tiny_backend):
    """Training updates weights in place; the fast engine's CPU copies of them must follow."""
    model = copy.deepcopy(tiny_backend.model)
    hf, fast = engine_backend(tiny_backend, "hf", model), engine_backend(tiny_backend, "fast", model)
    context = hf.draw_context_ids(PROMPT, PLAN)
    before = fast.generate_image_tokens(context, [0], 5.0, 0.0, 0)
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.mlp.up_proj.weight.mul_(-3.0)
            layer.self_attn.q_proj.weight.add_(0.5)
        model.model.generation_head.vision_head.weight.mul_(-1.0)
    after = fast.generate_image_tokens(context, [0], 5.0, 0.0, 0)
    assert not torch.equal(before, after)
    assert torch.equal(after, hf.generate_image_tokens(context, [0], 5.0, 0.0, 0))


def test_the_step_compiled_on_a_cpu_gives_the_references_tokens_and_follows_new_weights(tiny_backend):
    """Inductor's freezing folds what a compiled CPU step reads through the module into constants:
    the position, noise and sampling settings must stay inputs, and new weights need a new step."""
    model = copy.deepcopy(tiny_backend.model)
    hf = engine_backend(tiny_backend, "hf", model)
    compiled = JanusBackend(
        model, hf.tokenizer, hf.image_processor, hf.template, name="tiny", engine="fast", fast_compile=True
    )
    assert compiled.runner.compile
    context = hf.draw_context_ids(PROMPT, PLAN)
    before = compiled.generate_image_tokens(context, [0, 1], 5.0, 0.0, 0)
    assert torch.equal(before, hf.generate_image_tokens(context, [0, 1], 5.0, 0.0, 0))
    assert torch.equal(
        compiled.generate_image_tokens(context, [4, 5], 5.0, 1.0, 0),
        hf.generate_image_tokens(context, [4, 5], 5.0, 1.0, 0),
    )
    with torch.no_grad():
        model.model.generation_head.vision_head.weight.mul_(-1.0)
        for layer in model.model.language_model.layers:
            layer.mlp.up_proj.weight.mul_(-3.0)
    after = compiled.generate_image_tokens(context, [0, 1], 5.0, 0.0, 0)
    assert not torch.equal(before, after)
    assert torch.equal(after, hf.generate_image_tokens(context, [0, 1], 5.0, 0.0, 0))


def results(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_the_engines_run_through_the_command_line(tiny_model_dir, tmp_path):
    rows = {}
    for engine in ("hf", None):  # None: the default
        out = tmp_path / str(engine)
        args = [
            "generate",
            "--prompt",
            "a red circle",
            "--model",
            str(tiny_model_dir),
            "--n",
            "2",
            "--seed",
            "3",
            "--no-think",
            "--out",
            str(out),
        ]
        assert main(args + (["--engine", engine] if engine else [])) == 0
        rows[engine] = [(r["engine"], Image.open(out / r["image"]).tobytes()) for r in results(out)]
    assert [engine for engine, _ in rows[None]] == ["fast", "fast"]  # fast is the default
    # the same pixels from either engine (the PNGs' recipes name the engine, so not the same bytes)
    assert [image for _, image in rows[None]] == [image for _, image in rows["hf"]]


def test_decoders_are_bounded_and_reused(pair):
    """Many row counts (as batched eval makes) keep at most MAX_DECODERS caches; results do not change."""
    from reasoner.engine.fast import MAX_DECODERS

    hf, fast = pair
    context = hf.draw_context_ids(PROMPT, PLAN)
    first = fast.generate_image_tokens(context, [3], 5.0, 1.0, 0)
    for rows in range(2, MAX_DECODERS + 3):
        fast.generate_image_tokens(context, list(range(rows)), 5.0, 1.0, 0)
    engine = fast.runner
    assert len(engine.decoders) == len(engine.steps) == MAX_DECODERS
    assert ("image", 2) not in engine.decoders  # the least recently used went first
    assert torch.equal(fast.generate_image_tokens(context, [3], 5.0, 1.0, 0), first)
