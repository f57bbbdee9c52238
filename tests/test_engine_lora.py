"""A LoRA injected in place (as the finetune trainer does) is followed by every engine.

The adapted model's tokens on hf, fast (packed CPU copies, and the modules called directly as on a
GPU) and onnx equal those of the merged model (`merge_and_unload` on a copy); after an optimizer
step on the LoRA the fast engine follows; inside `disable_adapter()` it gives the base model's.
"""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from reasoner.backends.adapters import LANGUAGE_MODEL_PROJECTIONS
from reasoner.backends.janus import JanusBackend
from reasoner.engine.fast import FastEngine
from reasoner.engine.onnx_export import model_key

PROMPT = "a circle the color of the sky"
PLAN = "red circle @ top-left; blue square @ middle-center"


def over(backend: JanusBackend, model, engine: str) -> JanusBackend:
    return JanusBackend(model, backend.tokenizer, backend.image_processor, backend.template, name="t", engine=engine)


def with_lora(model, seed: int = 0):
    """`model` with a rank-4 LoRA on every language-model projection, lora_B random (peft starts it at 0)."""
    torch.manual_seed(seed)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LANGUAGE_MODEL_PROJECTIONS)
    )
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    return peft_model


def merged(peft_model):
    return copy.deepcopy(peft_model).merge_and_unload().eval()


def tokens(backend: JanusBackend) -> tuple:
    """Image tokens (greedy and seeded) and plan tokens (greedy and seeded) of `backend`."""
    context = backend.draw_context_ids(PROMPT, PLAN)
    think = backend.think_context_ids(PROMPT)
    stops = [backend.eos_id, backend.boi_id]
    return (
        backend.generate_image_tokens(context, [0, 1], 3.0, 0.0, 0),
        backend.generate_image_tokens(context, [5, 6], 3.0, 1.0, 0),
        backend.generate_text_ids([think, think], None, [0, 1], 0.0, 24, stops),
        backend.generate_text_ids([think, think], None, [2, 3], 1.0, 24, stops),
    )


def same(a: tuple, b: tuple) -> bool:
    return all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for x, y in zip(a, b))


@pytest.fixture(scope="module")
def adapted(tiny_backend):
    """(peft model over a copy of the tiny model, the merged model's reference tokens, the base's)."""
    base_tokens = tokens(over(tiny_backend, tiny_backend.model, "hf"))
    peft_model = with_lora(copy.deepcopy(tiny_backend.model))
    expected = tokens(over(tiny_backend, merged(peft_model), "hf"))
    assert not same(expected, base_tokens)  # the adapter changes every kind of token
    return peft_model, expected, base_tokens


@pytest.mark.parametrize("engine", ["hf", "fast"])
def test_the_adapted_models_tokens_are_the_merged_models(tiny_backend, adapted, engine):
    peft_model, expected, _ = adapted
    assert same(tokens(over(tiny_backend, peft_model.base_model.model, engine)), expected)


def test_the_fast_engine_calling_the_modules_runs_the_adapter(tiny_backend, adapted):
    """fused_copies=False is the GPU path: peft's own modules do the products."""
    peft_model, expected, _ = adapted
    backend = over(tiny_backend, peft_model.base_model.model, "fast")
    backend._runner = FastEngine(backend.model, backend.special, compile=False, fused_copies=False)
    assert not backend.runner.weights.fused
    assert same(tokens(backend), expected)


def test_the_fast_engine_follows_an_optimizer_step_a_disabled_adapter_and_a_merge(tiny_backend):
    peft_model = with_lora(copy.deepcopy(tiny_backend.model), seed=1)
    fast = over(tiny_backend, peft_model.base_model.model, "fast")
    assert same(tokens(fast), tokens(over(tiny_backend, merged(peft_model), "hf")))
    # one optimizer step on the LoRA parameters only (the base stays frozen)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=0.05)
    ids = torch.tensor([fast.draw_context_ids(PROMPT, PLAN)])
    peft_model.base_model.model.model.language_model(input_ids=ids).last_hidden_state.pow(2).mean().backward()
    optimizer.step()
    updated = tokens(over(tiny_backend, merged(peft_model), "hf"))
    assert same(tokens(fast), updated)
    with peft_model.disable_adapter():
        assert same(tokens(fast), tokens(over(tiny_backend, tiny_backend.model, "hf")))
    assert same(tokens(fast), updated)  # enabled again
    peft_model.merge_adapter()  # the delta now lives in the base weights: counted once
    assert same(tokens(fast), updated)
    with peft_model.disable_adapter():  # peft's forward unmerges here; the copies give the base weights
        assert same(tokens(fast)[:1], tokens(over(tiny_backend, tiny_backend.model, "hf"))[:1])


def test_the_step_compiled_on_a_cpu_follows_the_adapter(tiny_backend):
    peft_model = with_lora(copy.deepcopy(tiny_backend.model), seed=2)
    model = peft_model.base_model.model
    compiled = JanusBackend(
        model, tiny_backend.tokenizer, tiny_backend.image_processor, tiny_backend.template, name="t", fast_compile=True
    )
    context = compiled.draw_context_ids(PROMPT, PLAN)
    reference = lambda: over(tiny_backend, merged(peft_model), "hf").generate_image_tokens(context, [0], 3.0, 0.0, 0)
    assert torch.equal(compiled.generate_image_tokens(context, [0], 3.0, 0.0, 0), reference())
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_A" in name:
                parameter.mul_(-2.0)
    assert torch.equal(compiled.generate_image_tokens(context, [0], 3.0, 0.0, 0), reference())


@pytest.mark.slow  # two ONNX exports
def test_the_onnx_engine_exports_the_adapted_weights(tiny_backend, tiny_model_dir, adapted, onnx_cache):
    peft_model, expected, base_tokens = adapted
    model = peft_model.base_model.model
    key = model_key(model, tiny_model_dir, torch.float32)
    # the model directory's files do not describe an adapted model: the key is its weights and adapters
    assert key != model_key(tiny_backend.model, tiny_model_dir, torch.float32)
    with peft_model.disable_adapter():
        assert model_key(model, tiny_model_dir, torch.float32) != key
    onnx = over(tiny_backend, model, "onnx")
    onnx.model_dir = tiny_model_dir
    assert onnx.runner.directory.name == key
    assert same(tokens(onnx), expected)
    # disabling the adapter changes the weights under the export: the engine exports them again
    with peft_model.disable_adapter():
        assert same(tokens(onnx), base_tokens)
