"""`--adapter DIR`: a LoRA adapter merged into the model at load time, on every entry point.

Tokens of a model loaded with an adapter equal those of the merged model; reflections run on base +
adapter + reflection adapter; each fault of an adapter directory is one line naming it; the ONNX
cache keys on the adapter's files; the catalog lists a base-plus-adapter entry once its adapter exists.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

from app import main as app_main
from app import with_adapter
from reasoner.backends.adapters import (
    LANGUAGE_MODEL_PROJECTIONS,
    add_reflection_adapter,
    merge_adapter,
    save_reflection_adapter,
    with_reflection_adapter,
)
from reasoner.backends.janus import JanusBackend
from reasoner.cli import main
from reasoner.engine.onnx_export import model_key
from reasoner.errors import ModelLoadError
from reasoner.models import catalog
from reasoner.pipeline import ReasonerPipeline
from weights.random_janus import build_random_janus, save_model_dir

PROMPT, PLAN = "a red circle", "red circle @ top-left; blue square @ middle-center"


def write_adapter(model, directory, seed: int = 0, rank: int = 4):
    """A random LoRA (lora_B nonzero) on every language-model projection of a copy of `model`,
    saved in peft's format; returns the merged model it stands for."""
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=LANGUAGE_MODEL_PROJECTIONS)
    peft_model = get_peft_model(copy.deepcopy(model), config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    peft_model.save_pretrained(directory, safe_serialization=True)
    return peft_model.merge_and_unload().eval()


@pytest.fixture(scope="module")
def adapter(tiny_backend, tmp_path_factory):
    """(adapter directory, the merged model) over the tiny model."""
    directory = tmp_path_factory.mktemp("adapter") / "grpo"
    return directory, write_adapter(tiny_backend.model, directory)


def over(backend, model, engine="hf"):
    return JanusBackend(model, backend.tokenizer, backend.image_processor, backend.template, name="t", engine=engine)


def tokens(backend) -> tuple:
    context = backend.draw_context_ids(PROMPT, PLAN)
    think = backend.think_context_ids(PROMPT)
    return (
        backend.generate_image_tokens(context, [0, 1], 3.0, 0.0, 0).tolist(),
        backend.generate_image_tokens(context, [4, 5], 3.0, 1.0, 0).tolist(),
        backend.generate_text_ids([think], None, [0], 1.0, 24, [backend.eos_id, backend.boi_id]),
    )


@pytest.mark.parametrize("engine", ["hf", "fast"])
def test_a_model_loaded_with_an_adapter_gives_the_merged_models_tokens(tiny_model_dir, tiny_backend, adapter, engine):
    directory, merged = adapter
    loaded = JanusBackend.from_pretrained(tiny_model_dir, engine=engine, adapter=directory)
    assert all(torch.equal(v, merged.state_dict()[k]) for k, v in loaded.model.state_dict().items())
    expected = tokens(over(tiny_backend, merged))
    assert tokens(loaded) == expected != tokens(over(tiny_backend, tiny_backend.model))
    assert loaded.info.adapter == str(directory) and loaded.info.name == f"{tiny_model_dir}+{directory}"
    assert f"adapter {directory}" in loaded.info.summary()


def test_reflection_runs_on_base_plus_adapter_plus_reflection_adapter(tmp_path):
    model, tokenizer, image_processor, template = build_random_janus("tiny", seed=3)
    reflection = add_reflection_adapter(copy.deepcopy(model), rank=4, seed=1)
    with torch.no_grad():
        for name, parameter in reflection.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.3)
    save_reflection_adapter(reflection, tmp_path / "model" / "reflection")
    template = dataclasses.replace(template, reflect_adapter="reflection")
    save_model_dir(tmp_path / "model", model, tokenizer, image_processor, template)
    write_adapter(model, tmp_path / "grpo", seed=2)
    loaded = JanusBackend.from_pretrained(tmp_path / "model", engine="hf", adapter=tmp_path / "grpo")
    base = JanusBackend.from_pretrained(tmp_path / "model", engine="hf").model
    drawing = merge_adapter(copy.deepcopy(base), tmp_path / "grpo")
    expected = with_reflection_adapter(drawing, tmp_path / "model" / "reflection")
    assert all(torch.equal(v, drawing.state_dict()[k]) for k, v in loaded.model.state_dict().items())
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in loaded.reflect_model.state_dict().items())
    # both adapters change something: the drawing model is not the base, the reflecting one not the drawing one
    for model, other in ((loaded.model, base), (loaded.reflect_model, loaded.model)):
        assert any(not torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())


def damaged(source, tmp_path, damage):
    target = tmp_path / "damaged"
    shutil.copytree(source, target)
    damage(target)
    return target


def edit_config(directory, **changes):
    path = directory / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def edit_weights(directory, change):
    path = directory / "adapter_model.safetensors"
    save_file(dict(change(load_file(path))), path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: shutil.rmtree(d), "adapter directory .* does not exist"),
        (lambda d: (d / "adapter_model.safetensors").unlink(), "has no adapter_model.safetensors"),
        (lambda d: (d / "adapter_config.json").unlink(), "has no adapter_config.json"),
        (lambda d: (d / "adapter_config.json").write_text("{not json"), "adapter_config.json cannot be read"),
        (
            lambda d: (d / "adapter_config.json").write_text(
                json.dumps({"peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 4})
            ),
            "is a PREFIX_TUNING adapter, not a LoRA",
        ),
        (lambda d: edit_config(d, modules_to_save=["lm_head"]), "sets modules_to_save"),
        (lambda d: (d / "adapter_model.safetensors").write_bytes(b"garbage" * 9), "not a readable safetensors"),
        (lambda d: edit_config(d, target_modules=["nonexistent_proj"]), "does not fit the model.*not found"),
        (
            lambda d: edit_weights(d, lambda w: {k: torch.zeros(v.shape[0] + 1, v.shape[1]) for k, v in w.items()}),
            "does not fit the model.*size mismatch",
        ),
        (
            lambda d: edit_weights(d, lambda w: {k.replace("layers.0.", "layers.7."): v for k, v in w.items()}),
            "does not fit the model: 14 of its LoRA weights are missing",
        ),
    ],
    ids=["no-dir", "no-weights", "no-config", "bad-json", "not-lora", "modules-to-save", "corrupt", "targets",
         "shapes", "names"],
)  # fmt: skip
def test_adapter_faults_are_one_line_naming_them(tiny_model_dir, adapter, tmp_path, damage, message):
    target = damaged(adapter[0], tmp_path, damage)
    with pytest.raises(ModelLoadError, match=message) as raised:
        JanusBackend.from_pretrained(tiny_model_dir, engine="hf", adapter=target)
    assert len(str(raised.value).splitlines()) == 1


def test_the_onnx_cache_keys_on_the_adapters_files(tiny_model_dir, tiny_backend, adapter, tmp_path, monkeypatch):
    directory, _ = adapter
    base_key = model_key(tiny_backend.model, tiny_model_dir, torch.float32)
    key = model_key(tiny_backend.model, tiny_model_dir, torch.float32, directory)
    other = write_adapter(tiny_backend.model, tmp_path / "other", seed=5) and tmp_path / "other"
    assert len({base_key, key, model_key(tiny_backend.model, tiny_model_dir, torch.float32, other)}) == 3
    # the backend hands the onnx engine the adapter directory with the model directory
    made = {}
    monkeypatch.setattr("reasoner.backends.janus.make_engine", lambda *a, **k: made.update(k) or object())
    loaded = JanusBackend.from_pretrained(tiny_model_dir, engine="onnx", adapter=directory)
    assert loaded.runner is not None and made == {"model_dir": tiny_model_dir, "adapter_dir": directory}


@pytest.mark.slow  # an ONNX export
def test_the_onnx_engine_over_a_loaded_adapter_gives_the_merged_models_tokens(
    tiny_model_dir, tiny_backend, adapter, onnx_cache
):
    directory, merged = adapter
    loaded = JanusBackend.from_pretrained(tiny_model_dir, engine="onnx", adapter=directory)
    assert loaded.runner.directory.name == model_key(loaded.model, tiny_model_dir, torch.float32, directory)
    assert tokens(loaded) == tokens(over(tiny_backend, merged))


def test_generate_and_eval_take_an_adapter(tiny_model_dir, adapter, tmp_path):
    directory, _ = adapter
    out = tmp_path / "out"
    args = ["generate", "--prompt", PROMPT, "--model", str(tiny_model_dir), "--adapter", str(directory)]
    assert main([*args, "--n", "1", "--no-think", "--out", str(out)]) == 0
    row = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert row["model"] == f"{tiny_model_dir}+{directory}"
    report = tmp_path / "eval.json"
    args = ["eval", "--model", str(tiny_model_dir), "--adapter", str(directory), "--modes", "direct"]
    assert main([*args, "--prompts", "4", "--json", str(report)]) == 0
    results = json.loads(report.read_text())
    assert results["adapter"] == str(directory) and results["model"] == f"{tiny_model_dir}+{directory}"
    assert main([*args[:-2], "--adapter", str(tmp_path / "missing"), "--json", str(report)]) == 2


def test_a_catalog_entry_of_base_plus_adapter_is_listed_once_its_adapter_exists(
    tiny_model_dir, adapter, tmp_path, monkeypatch
):
    assert catalog.CATALOG["shapes-grpo"] == catalog.Adapted(
        catalog.WEIGHTS_DIR / "shapes", catalog.WEIGHTS_DIR / "shapes-grpo"
    )
    monkeypatch.setitem(catalog.CATALOG, "shapes-grpo", catalog.Adapted(tiny_model_dir, tmp_path / "not-yet"))
    assert "shapes-grpo" not in catalog.catalog_names() and "shapes" in catalog.catalog_names()
    with pytest.raises(ModelLoadError, match="not available: its adapter .* has not been trained yet"):
        ReasonerPipeline.from_pretrained("shapes-grpo")
    monkeypatch.setitem(catalog.CATALOG, "shapes-grpo", catalog.Adapted(tiny_model_dir, adapter[0]))
    assert "shapes-grpo" in catalog.catalog_names()
    pipeline = ReasonerPipeline.from_pretrained("shapes-grpo", engine="fast")
    assert pipeline.info.name == "shapes-grpo" and pipeline.info.adapter == str(adapter[0])
    assert catalog.resolve_model("shapes-grpo") == (tiny_model_dir, "shapes-grpo")
    with pytest.raises(ModelLoadError, match="adapter already"):
        ReasonerPipeline.from_pretrained("shapes-grpo", adapter=adapter[0])


def test_the_studio_takes_an_adapter(tiny_model_dir, adapter, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(catalog, "CATALOG", dict(catalog.CATALOG))  # add_adapted enters the pair here
    argv = with_adapter(["--model", str(tiny_model_dir), "--adapter", str(adapter[0]), "--port", "7000"])
    name = f"{tiny_model_dir}+{adapter[0]}"
    assert argv == ["--port", "7000", "--model", name]
    assert catalog.CATALOG[name] == catalog.Adapted(tiny_model_dir, adapter[0])
    assert with_adapter(["--port", "7000"]) == ["--port", "7000"]
    bad = ["--adapter", str(tmp_path / "missing"), "--data-dir", str(tmp_path / "data"), "--device", "cpu"]
    assert app_main(bad) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1
