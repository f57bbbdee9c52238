"""A reflection adapter: reflections run with it, plans and pictures without it, on every engine."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from PIL import Image

from reasoner.backends.adapters import add_reflection_adapter, save_reflection_adapter
from reasoner.backends.janus import JanusBackend
from reasoner.errors import ModelLoadError
from weights.random_janus import build_random_janus, save_model_dir

PROMPT, PLAN = "a red circle", "needed: 1 red circle. Plan: red circle @ center"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """(the tiny model, the same model with a random reflection adapter) as two directories."""
    model, tokenizer, image_processor, template = build_random_janus("tiny", seed=3)
    plain = tmp_path_factory.mktemp("plain")
    save_model_dir(plain, model, tokenizer, image_processor, template)
    adapted = add_reflection_adapter(model, rank=4, seed=0)
    torch.manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (no change); make the adapter change something
            parameter.data.normal_(0, 0.3)
    with_adapter = tmp_path_factory.mktemp("with-adapter")
    save_reflection_adapter(adapted, with_adapter / "reflection")
    save_model_dir(
        with_adapter,
        adapted.unload(),
        tokenizer,
        image_processor,
        dataclasses.replace(template, reflect_adapter="reflection"),
    )
    return plain, with_adapter


def reflection_and_drawing(backend: JanusBackend) -> tuple[str, str, torch.Tensor]:
    picture = Image.new("RGB", (72, 72), (200, 30, 30))
    plan = backend.write_plan(PROMPT, seed=0, temperature=0.0)
    reflection = backend.write_reflection(PROMPT, PLAN, picture, seed=0, temperature=0.0)
    tokens = backend.generate_image_tokens(backend.draw_context_ids(PROMPT, PLAN), [0, 1], 1.0, 1.0, 0)
    return plan, reflection, tokens


def test_only_reflection_runs_with_the_adapter(model_dirs):
    plain, with_adapter = (JanusBackend.from_pretrained(d, name="tiny", engine="hf") for d in model_dirs)
    assert with_adapter.template.reflect_adapter == "reflection"
    # the drawing model is the plain one; the reflecting one differs in the adapted projections only
    reference = plain.model.state_dict()
    assert all(torch.equal(reference[k], v) for k, v in with_adapter.model.state_dict().items())
    changed = {k for k, v in with_adapter.reflect_model.state_dict().items() if not torch.equal(reference[k], v)}
    assert changed and all(".layers." in k and k.endswith("_proj.weight") for k in changed)
    plain_plan, plain_reflection, plain_tokens = reflection_and_drawing(plain)
    plan, reflection, tokens = reflection_and_drawing(with_adapter)
    assert plan == plain_plan and torch.equal(tokens, plain_tokens)
    assert reflection != plain_reflection


def test_the_reflecting_model_shares_every_weight_the_adapter_does_not_change(model_dirs):
    backend = JanusBackend.from_pretrained(model_dirs[1], name="tiny", engine="hf")
    drawing = {id(t) for t in [*backend.model.parameters(), *backend.model.buffers()]}
    own = {
        name
        for name, t in [*backend.reflect_model.named_parameters(), *backend.reflect_model.named_buffers()]
        if id(t) not in drawing
    }
    assert own and all(".language_model.layers." in name and name.endswith("_proj.weight") for name in own)
    assert (
        backend.reflect_model.model.vqmodel.quantize.embedding.weight
        is backend.model.model.vqmodel.quantize.embedding.weight
    )


@pytest.mark.parametrize("engine", ["fast", pytest.param("onnx", marks=pytest.mark.slow)])
def test_engines_reflect_with_the_adapter_as_hf_does(model_dirs, engine, onnx_cache):
    directory = model_dirs[1]
    expected = reflection_and_drawing(JanusBackend.from_pretrained(directory, name="tiny", engine="hf"))
    backend = JanusBackend.from_pretrained(directory, name="tiny", engine=engine)
    plan, reflection, tokens = reflection_and_drawing(backend)
    assert backend.reflect_runner is not backend.runner  # an engine over each model
    assert (plan, reflection) == expected[:2] and torch.equal(tokens, expected[2])


def damaged_copy(source, tmp_path, damage):
    target = tmp_path / "model"
    shutil.copytree(source, target)
    damage(target)
    return target


def set_adapter_name(directory, name):
    config = json.loads((directory / "reasoner.json").read_text())
    (directory / "reasoner.json").write_text(json.dumps({**config, "reflect_adapter": name}))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: shutil.rmtree(d / "reflection"), "reflection adapter directory .* does not exist"),
        (
            lambda d: (d / "reflection" / "adapter_model.safetensors").write_bytes(b"not safetensors"),
            "not a readable safetensors file",
        ),
        (lambda d: set_adapter_name(d, "../elsewhere"), "must name a subdirectory"),
    ],
    ids=["missing", "corrupt", "outside"],
)
def test_adapter_faults_are_named(model_dirs, tmp_path, damage, message):
    with pytest.raises(ModelLoadError, match=message):
        JanusBackend.from_pretrained(damaged_copy(model_dirs[1], tmp_path, damage), engine="hf")


def test_training_continues_a_saved_adapter_of_the_same_rank(tmp_path):
    model = build_random_janus("tiny", seed=4)[0]
    adapted = add_reflection_adapter(model, rank=4)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.3)
    saved = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    save_reflection_adapter(adapted, tmp_path / "reflection")
    base = adapted.unload()
    continued = add_reflection_adapter(base, rank=4, start=tmp_path / "reflection")
    loaded = {n: p for n, p in base.named_parameters() if "lora_" in n}
    assert loaded.keys() == saved.keys() and all(p.requires_grad for p in loaded.values())
    assert all(torch.allclose(loaded[n], saved[n], atol=1e-3) for n in saved)  # stored in fp16
    with pytest.raises(ValueError, match="rank 4, not 8"):
        add_reflection_adapter(continued.unload(), rank=8, start=tmp_path / "reflection")
