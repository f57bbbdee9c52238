"""Loading a Janus model directory: the checks, the weights, tokenizer, image processor, template,
an adapter merged in at load time and the reflection adapter. Any directory in the Hugging Face
Janus layout loads: the bundled shapes model, Janus-Pro-1B/7B, converted T2I-R1 checkpoints.
Weights are read from safetensors only and no code from the directory is run.
`JanusBackend.from_pretrained` builds a backend on what this returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, JanusForConditionalGeneration
from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

from ..errors import ModelLoadError, one_line
from .adapters import merge_adapter, read_adapter, with_reflection_adapter
from .janus_template import JanusTemplate


@dataclass
class LoadedJanus:
    """A model directory's parts, the model on its device."""

    directory: Path
    model: JanusForConditionalGeneration
    tokenizer: object  # a transformers tokenizer with Janus's image_token / boi_token / eoi_token
    image_processor: JanusImageProcessorPil
    template: JanusTemplate
    reflect_model: JanusForConditionalGeneration | None  # with the reflection adapter merged; None: none
    adapter: Path | None = None  # the LoRA adapter merged into `model` at load time, if any


def load_janus(
    directory: Path, device: str = "cpu", dtype: torch.dtype | None = None, adapter: Path | None = None
) -> LoadedJanus:
    """Every part of the model in `directory`, with the LoRA adapter in `adapter` (peft's format)
    merged into its weights when given; a ModelLoadError naming what is wrong otherwise."""
    check_model_dir(directory)
    if adapter is not None:
        adapter = Path(adapter)
        read_adapter(adapter)  # a bad adapter fails before the weights load
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda asked for, but torch sees no CUDA device here")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = load_weights(directory, dtype)
    tokenizer = load_tokenizer(directory)
    image_processor = load_image_processor(directory, model.config.vision_config.image_size)
    template = JanusTemplate.load(directory)
    model = model.to(device)
    if adapter is not None:  # before the reflection copy: reflections run on base + adapter + reflection adapter
        model = merge_adapter(model, adapter)
    reflect_model = (
        with_reflection_adapter(model, directory / template.reflect_adapter) if template.reflect_adapter else None
    )
    return LoadedJanus(directory, model, tokenizer, image_processor, template, reflect_model, adapter)


def load_weights(directory: Path, dtype: torch.dtype) -> JanusForConditionalGeneration:
    try:
        model, loading = JanusForConditionalGeneration.from_pretrained(
            directory, use_safetensors=True, dtype=dtype, output_loading_info=True
        )
    except Exception as error:  # transformers raises many kinds here; all mean "cannot load".
        raise ModelLoadError(f"{directory}: weights could not be loaded ({one_line(error)})") from None
    missing = loading.get("missing_keys") or []
    if missing:
        raise ModelLoadError(f"{directory}: checkpoint lacks {len(missing)} weights, e.g. {sorted(missing)[:3]}")
    return model


def load_tokenizer(directory: Path):
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except Exception as error:
        raise ModelLoadError(f"{directory}: tokenizer could not be loaded ({one_line(error)})") from None
    for attribute in ("image_token", "boi_token", "eoi_token"):
        if getattr(tokenizer, attribute, None) is None:
            raise ModelLoadError(f"{directory}: tokenizer has no {attribute} (not a Janus tokenizer)")
    return tokenizer


def check_model_dir(directory: Path) -> None:
    """Fail early, naming what is missing, before transformers' longer messages."""
    hint = "put a Hugging Face Janus model there (config.json, *.safetensors, tokenizer.json)"
    if not directory.is_dir():
        raise ModelLoadError(f"model directory {directory} does not exist: {hint}")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{directory} has no config.json: {hint}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{config_path} is not valid JSON ({one_line(error)})") from None
    if "gen_vision_config" in config or config.get("model_type") == "multi_modality":
        raise ModelLoadError(
            f"{directory} holds an original DeepSeek Janus / T2I-R1 checkpoint: convert it with "
            f"`python -m weights.convert {directory} NEW_DIR` and load NEW_DIR"
        )
    if config.get("model_type") != "janus":
        raise ModelLoadError(f"{directory} holds a {config.get('model_type')!r} model; only Janus models load here")
    if not any(directory.glob("*.safetensors")):
        raise ModelLoadError(f"{directory} has no *.safetensors weights (only safetensors are loaded)")
    if not (directory / "tokenizer.json").is_file() and not (directory / "tokenizer.model").is_file():
        raise ModelLoadError(f"{directory} has no tokenizer.json: {hint}")


def load_image_processor(directory: Path, image_size: int) -> JanusImageProcessorPil:
    # The PIL processor, not the torchvision one: same pixels wherever torchvision is missing.
    if (directory / "preprocessor_config.json").is_file():
        return JanusImageProcessorPil.from_pretrained(directory)
    # Janus and Janus-Pro normalise with SigLIP's mean and std of 0.5.
    return JanusImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
