"""Loading a model directory: safetensors only, no remote code, and a clear error for every fault."""

import json
import shutil

import pytest
import torch

from reasoner.backends.janus import JanusBackend
from reasoner.backends.janus_template import JANUS_PRO_TEMPLATE, SHAPES_TEMPLATE, TEMPLATE_FILE
from reasoner.errors import ModelLoadError
from weights.catalog import CATALOG, resolve_model


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    return copy


def test_loads_with_its_template_and_reports_itself(tiny_backend):
    assert tiny_backend.template == SHAPES_TEMPLATE
    info = tiny_backend.info
    assert (info.kind, info.world, info.image_size, info.device, info.dtype) == (
        "janus",
        "shapes",
        72,
        "cpu",
        "float32",
    )
    assert 500_000 < info.parameters < 700_000


def test_a_directory_without_template_gets_janus_pro_layout(model_copy):
    (model_copy / TEMPLATE_FILE).unlink()
    backend = JanusBackend.from_pretrained(model_copy)
    assert backend.template == JANUS_PRO_TEMPLATE and backend.info.world == "open"
    assert backend.tokenizer.decode(backend.think_context_ids("a cat")[1:]).startswith("<|User|>: Before drawing")


def break_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def break_vision_grid(path, placeholders):
    config = json.loads((path / "config.json").read_text())
    break_config(path, vision_config={**config["vision_config"], "num_image_tokens": placeholders})
    # the shapes template reads pictures as image tokens
    assert json.loads((path / TEMPLATE_FILE).read_text())["reflect_reads"] == "image_tokens"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: shutil.rmtree(d), "does not exist"),
        (lambda d: (d / "config.json").unlink(), "has no config.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda d: break_config(d, model_type="llama"), "'llama' model; only Janus"),
        (lambda d: break_config(d, model_type="multi_modality", gen_vision_config={}), "python -m weights.convert"),
        (lambda d: (d / "model.safetensors").unlink(), "no *.safetensors"),
        (lambda d: (d / "tokenizer.json").unlink(), "no tokenizer.json"),
        (
            lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]),
            "weights could not be loaded",
        ),
        (lambda d: (d / TEMPLATE_FILE).write_text('{"world": "moon"}'), "world 'moon'"),
        (lambda d: (d / TEMPLATE_FILE).write_text('{"thinking": "x"}'), "unknown keys ['thinking']"),
        (
            lambda d: (d / TEMPLATE_FILE).write_text('{"reflect_reads": "clip"}'),
            "reflect_reads 'clip' is not one of vision, image_tokens",
        ),
        # a reflection that reads the picture as VQ codes needs one code per image placeholder
        (lambda d: break_vision_grid(d, 64), "the VQ gives 81, the reflection context has 64"),
    ],
)
def test_faults_are_named(model_copy, damage, message):
    damage(model_copy)
    with pytest.raises(ModelLoadError, match=message.replace("*", r"\*").replace("[", r"\[").replace("]", r"\]")):
        JanusBackend.from_pretrained(model_copy)


def test_pickle_weights_are_refused(model_copy):
    """A .bin beside no safetensors is never unpickled: convert it first."""
    from safetensors.torch import load_file

    torch.save(load_file(model_copy / "model.safetensors"), model_copy / "pytorch_model.bin")
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="only safetensors"):
        JanusBackend.from_pretrained(model_copy)


def test_checkpoint_missing_weights_is_refused(model_copy):
    from safetensors.torch import load_file, save_file

    tensors = load_file(model_copy / "model.safetensors")
    del tensors["model.generation_head.vision_head.weight"]
    save_file(tensors, model_copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="lacks 1 weights"):
        JanusBackend.from_pretrained(model_copy)


def test_cuda_asked_for_without_cuda(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        JanusBackend.from_pretrained(tiny_model_dir, device="cuda")


def test_catalog_names_and_directories(tmp_path):
    assert resolve_model(str(tmp_path)) == (tmp_path, str(tmp_path))
    if (CATALOG["shapes"] / "config.json").is_file():
        assert resolve_model("shapes") == (CATALOG["shapes"], "shapes")
    else:
        with pytest.raises(ModelLoadError, match="bundled model 'shapes' is missing"):
            resolve_model("shapes")
