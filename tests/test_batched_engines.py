"""Batched generation on every engine: several prompts at once give what each gives alone.

Rows of one batch have different prompts (and a prompt repeated with another seed): of one length
on hf and onnx, of several on fast; each row must match the same engine run on that prompt and seed
alone, token for token, greedy and sampled. Then `python -m reasoner eval --engine` runs and records its engine.
"""

import json

import numpy as np
import pytest
import torch

from reasoner.backends.janus import JanusBackend
from reasoner.batched import calls, draw_pictures, same_length_groups, write_plans, write_reflections
from reasoner.cli import main
from reasoner.engine import ENGINES

# lengths 17, 15, 17, 15, 20, 17 (the tiny tokenizer spells by bytes): two groups of several rows
PROMPTS = ["a red circle", "a blue square", "a red square", "a blue circle", "two green squares", "a red circle"]
SEEDS = [3, 4, 5, 6, 7, 8]
PLAN = "red circle @ top-left"


@pytest.fixture(scope="module")
def backends(tiny_model_dir, onnx_cache):
    ort = JanusBackend.from_pretrained(tiny_model_dir, name="tiny", engine="onnx")
    others = {
        engine: JanusBackend(ort.model, ort.tokenizer, ort.image_processor, ort.template, name="tiny", engine=engine)
        for engine in ("hf", "fast")
    }
    return {**others, "onnx": ort}


def test_the_prompts_make_groups_of_several_contexts(tiny_backend):
    contexts = [tiny_backend.think_context_ids(p) for p in PROMPTS]
    groups = same_length_groups(contexts, batch_size=64)
    assert sorted(map(len, groups)) == [1, 2, 3]
    assert all(len({tuple(contexts[i]) for i in group}) > 1 for group in groups if len(group) > 1)
    # the fast engine takes every length in one call, at most batch_size rows, shortest first
    fast = JanusBackend(
        tiny_backend.model, tiny_backend.tokenizer, tiny_backend.image_processor, tiny_backend.template, "tiny"
    )
    assert calls(fast, contexts, batch_size=64) == [[1, 3, 0, 2, 5, 4]]
    assert calls(fast, contexts, batch_size=4) == [[1, 3, 0, 2], [5, 4]]
    hf = JanusBackend(fast.model, fast.tokenizer, fast.image_processor, fast.template, "tiny", engine="hf")
    assert calls(hf, contexts, batch_size=64) == groups


@pytest.mark.slow  # the module's ONNX export
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_batched_plans_and_pictures_match_each_prompt_alone(backends, engine, temperature):
    backend = backends[engine]
    plans = write_plans(backend, PROMPTS, SEEDS, temperature)
    assert plans == [backend.write_plan(p, s, temperature) for p, s in zip(PROMPTS, SEEDS)]

    contexts = [backend.draw_context_ids(p, PLAN) for p in PROMPTS]
    expected = [None] * len(PROMPTS)
    for group in calls(backend, contexts, batch_size=64):
        rows = backend.generate_image_token_rows(
            [contexts[i] for i in group], [SEEDS[i] for i in group], 3.0, temperature, 0
        )
        alone = torch.cat([backend.generate_image_tokens(contexts[i], [SEEDS[i]], 3.0, temperature, 0) for i in group])
        assert torch.equal(rows, alone)
        # decoded as draw_pictures groups them: the VQ decoder's rounding depends on its batch
        for i, image in zip(group, backend.decode_images(alone)):
            expected[i] = image
    pictures = draw_pictures(backend, PROMPTS, [PLAN] * len(PROMPTS), SEEDS, cfg_scale=3.0, temperature=temperature)
    assert all(np.array_equal(np.asarray(p), np.asarray(e)) for p, e in zip(pictures, expected))

    # reflections: each row looks at its own picture
    reflections = write_reflections(backend, PROMPTS, [PLAN] * len(PROMPTS), pictures, SEEDS, temperature)
    for prompt, seed, picture, reflection in zip(PROMPTS, SEEDS, pictures, reflections):
        assert reflection == backend.write_reflection(prompt, PLAN, picture, seed, temperature)


@pytest.mark.slow  # the module's ONNX export
@pytest.mark.parametrize("engine", ENGINES)
def test_rows_that_stop_early_keep_what_they_wrote(backends, engine):
    """Rows stop at different steps: each is cut at its own first stop, the others decode on."""
    backend = backends[engine]
    contexts = [backend.think_context_ids(PROMPTS[i]) for i in (0, 2, 5)]
    seeds = [SEEDS[i] for i in (0, 2, 5)]
    stop_ids = list(range(0, backend.model.lm_head.out_features, 5))  # a fifth of the vocabulary
    texts = backend.generate_texts(contexts, None, seeds, 1.0, 16, stop_ids)
    assert texts == [backend.generate_text(c, None, s, 1.0, 16, stop_ids) for c, s in zip(contexts, seeds)]
    lengths = (
        [len(backend.runner.text_tokens([c], None, [s], 1.0, 16, stop_ids)[0]) for c, s in zip(contexts, seeds)]
        if backend.runner
        else None
    )
    if lengths is not None:
        assert len(set(lengths)) > 1, lengths  # the rows did stop at different steps


@pytest.mark.slow  # the module's ONNX export
def test_batched_greedy_tokens_agree_across_engines(backends):
    contexts = [backends["hf"].draw_context_ids(PROMPTS[i], None) for i in (0, 2, 5)]
    expected = backends["hf"].generate_image_token_rows(contexts, [0, 1, 2], 5.0, 0.0, 0)
    for engine in ("fast", "onnx"):
        assert torch.equal(backends[engine].generate_image_token_rows(contexts, [0, 1, 2], 5.0, 0.0, 0), expected)


@pytest.mark.parametrize("engine", ["hf", pytest.param("onnx", marks=pytest.mark.slow)])
def test_eval_takes_an_engine_and_records_it(tiny_model_dir, onnx_cache, tmp_path, engine):
    out = tmp_path / "eval.json"
    args = [
        "eval",
        "--model",
        str(tiny_model_dir),
        "--modes",
        "direct",
        "--prompts",
        "8",
        "--engine",
        engine,
        "--json",
        str(out),
    ]
    assert main(args) == 0
    results = json.loads(out.read_text())
    assert results["engine"] == engine and 0.0 <= results["modes"]["direct"]["overall"] <= 1.0
