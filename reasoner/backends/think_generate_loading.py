"""Loading a think-then-generate model directory (layout in `think_generate.py`): the checks, the
planner (a transformers causal LM and its tokenizer), the renderer (a diffusers pipeline), the
projection between them and `reasoner.json`. Weights are read from safetensors only, every file is
loaded with `local_files_only=True`, and no code from the directory runs (no `trust_remote_code`,
no custom pipeline). Each fault is one `ModelLoadError` line that names the file.
`ThinkGenerateBackend.from_pretrained` builds a backend on what this returns.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ModelLoadError, one_line

KIND = "think-generate"
CONFIG_FILE = "reasoner.json"
PLANNER_DIR = "planner"
RENDERER_DIR = "renderer"
PROJECTION_WEIGHTS = "projection.safetensors"
PROJECTION_CONFIG = "projection.json"
WORLDS = ("open", "shapes")
# The one diffusers pipeline this backend draws with: it takes `prompt_embeds` and
# `negative_prompt_embeds` and runs with no text encoder, tokenizer or safety checker.
RENDERER_PIPELINE = "StableDiffusionPipeline"
LAYOUT_HINT = (
    f"a think-then-generate model needs {CONFIG_FILE}, {PLANNER_DIR}/, {RENDERER_DIR}/, {PROJECTION_WEIGHTS} "
    f"and {PROJECTION_CONFIG}"
)


@dataclass(frozen=True)
class ThinkGenerateConfig:
    """`reasoner.json` of a think-then-generate model; unknown keys are refused."""

    kind: str = KIND
    world: str = "open"
    """`shapes`: plans follow the shapes-world grammar and are validated; `open`: free text."""
    image_size: int = 512
    """Side of the square pictures, in pixels; a multiple of the VAE's downscale factor."""
    default_cfg_scale: float = 5.0
    """The guidance scale this model draws best with, used when none is asked for."""
    num_inference_steps: int = 30
    """Denoising steps per picture."""
    think: str = "User: {prompt}\nRewrite:"
    """Context after which the planner writes its plan (the rewrite of the prompt)."""
    plan_prefix: str = " "
    """Text between the think context and the plan, both when writing it and when reading it."""
    direct_prefix: str = "Draw: "
    """Text before the prompt when drawing from the prompt alone: the renderer reads the prompt's tokens after it."""
    max_plan_tokens: int = 96
    max_prompt_chars: int = 300
    condition_tokens: int = 128
    """Length of the renderer's condition: the tokens read plus end-of-sentence, then zero rows
    (fixed, as CLIP's 77, so a candidate's picture does not depend on what is drawn beside it)."""

    def __post_init__(self):
        if self.kind != KIND:
            raise ModelLoadError(f"{CONFIG_FILE}: kind {self.kind!r} is not {KIND!r}")
        if self.world not in WORLDS:
            raise ModelLoadError(f"{CONFIG_FILE}: world {self.world!r} is not one of {', '.join(WORLDS)}")
        if "{prompt}" not in self.think:
            raise ModelLoadError(f"{CONFIG_FILE}: template 'think' lacks {{prompt}}")
        for name in ("image_size", "num_inference_steps", "max_plan_tokens", "max_prompt_chars"):
            if getattr(self, name) < 1:
                raise ModelLoadError(f"{CONFIG_FILE}: {name} must be positive, not {getattr(self, name)}")
        if self.condition_tokens <= self.max_plan_tokens:
            raise ModelLoadError(
                f"{CONFIG_FILE}: condition_tokens ({self.condition_tokens}) must exceed max_plan_tokens "
                f"({self.max_plan_tokens}), so every plan the planner writes fits with its end-of-sentence"
            )

    def save(self, directory: str | Path) -> None:
        Path(directory, CONFIG_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> ThinkGenerateConfig:
        data = read_json(directory / CONFIG_FILE)
        if not isinstance(data, dict):
            raise ModelLoadError(f"{directory / CONFIG_FILE}: not a JSON object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ModelLoadError(f"{directory / CONFIG_FILE}: unknown keys {unknown}")
        try:
            return cls(**data)
        except TypeError as error:  # a value of the wrong type, compared or formatted above
            raise ModelLoadError(f"{directory / CONFIG_FILE}: {one_line(error)}") from None


@dataclass(frozen=True)
class ProjectionConfig:
    """`projection.json`: the sizes on either side of the projection."""

    in_features: int  # the planner's hidden size
    out_features: int  # the UNet's cross_attention_dim


class PlanProjection(nn.Module):
    """Planner hidden states -> renderer condition: (B, T, in_features) -> (B, T, out_features).

    A LayerNorm first: a causal LM's last hidden states vary in scale from model to model, and the
    UNet's cross-attention was trained on embeddings of one scale."""

    def __init__(self, config: ProjectionConfig):
        super().__init__()
        self.config = config
        self.norm = nn.LayerNorm(config.in_features)
        self.linear = nn.Linear(config.in_features, config.out_features)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(hidden))

    def save(self, directory: str | Path) -> None:
        Path(directory, PROJECTION_CONFIG).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(Path(directory, PROJECTION_WEIGHTS)))


@dataclass
class LoadedThinkGenerate:
    """A model directory's parts, on their device."""

    directory: Path
    config: ThinkGenerateConfig
    planner: nn.Module  # an AutoModelForCausalLM
    tokenizer: object  # its transformers tokenizer
    renderer: object  # a diffusers StableDiffusionPipeline without text encoder
    projection: PlanProjection


def load_think_generate(directory: Path, device: str = "cpu", dtype: torch.dtype | None = None) -> LoadedThinkGenerate:
    """Every part of the model in `directory`; a ModelLoadError naming what is wrong otherwise."""
    directory = Path(directory)
    check_layout(directory)
    config = ThinkGenerateConfig.load(directory)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda asked for, but torch sees no CUDA device here")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    planner, tokenizer = load_planner(directory / PLANNER_DIR, dtype)
    renderer = load_renderer(directory / RENDERER_DIR, dtype)
    projection = load_projection(directory, dtype)
    hidden, cross = planner.config.hidden_size, renderer.unet.config.cross_attention_dim
    if (projection.config.in_features, projection.config.out_features) != (hidden, cross):
        raise ModelLoadError(
            f"{directory / PROJECTION_CONFIG}: projects {projection.config.in_features} -> "
            f"{projection.config.out_features}, but the planner's hidden size is {hidden} and the UNet's "
            f"cross_attention_dim is {cross}"
        )
    scale = 2 ** (len(renderer.vae.config.block_out_channels) - 1)
    if config.image_size % scale:
        raise ModelLoadError(f"{directory / CONFIG_FILE}: image_size {config.image_size} is not a multiple of {scale}")
    return LoadedThinkGenerate(
        directory, config, planner.to(device), tokenizer, renderer.to(device), projection.to(device)
    )


def check_layout(directory: Path) -> None:
    """Fail early, naming the missing or corrupt file, before the libraries' longer messages."""
    if not directory.is_dir():
        raise ModelLoadError(f"model directory {directory} does not exist: {LAYOUT_HINT}")
    for name, is_there in (
        (CONFIG_FILE, Path.is_file),
        (PLANNER_DIR + "/", Path.is_dir),
        (RENDERER_DIR + "/", Path.is_dir),
        (PROJECTION_WEIGHTS, Path.is_file),
        (PROJECTION_CONFIG, Path.is_file),
    ):
        if not is_there(directory / name.rstrip("/")):
            raise ModelLoadError(f"{directory} has no {name}: {LAYOUT_HINT}")
    planner = directory / PLANNER_DIR
    if not (planner / "config.json").is_file():
        raise ModelLoadError(f"{planner} has no config.json (a transformers causal LM directory)")
    if not any(planner.glob("*.safetensors")):
        raise ModelLoadError(f"{planner} has no *.safetensors weights (only safetensors are loaded)")
    renderer = directory / RENDERER_DIR
    index = read_json(renderer / "model_index.json")
    if not isinstance(index, dict) or index.get("_class_name") != RENDERER_PIPELINE:
        named = index.get("_class_name") if isinstance(index, dict) else None
        raise ModelLoadError(
            f"{renderer / 'model_index.json'} names the pipeline {named!r}; this backend draws with {RENDERER_PIPELINE}"
        )
    for component in ("unet", "vae"):
        if not any((renderer / component).glob("*.safetensors")):
            raise ModelLoadError(f"{renderer / component} has no *.safetensors weights (only safetensors are loaded)")
    for path in [*planner.glob("*.safetensors"), *renderer.glob("*/*.safetensors"), directory / PROJECTION_WEIGHTS]:
        check_safetensors(path)


def read_json(path: Path):
    if not path.is_file():
        raise ModelLoadError(f"{path.parent} has no {path.name}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path} is not valid JSON ({one_line(error)})") from None


def check_safetensors(path: Path) -> None:
    """Read the header only: a truncated or foreign file is named here, not deep in a library."""
    try:
        with safe_open(str(path), framework="pt") as weights:
            weights.keys()
    except Exception as error:  # safetensors raises its own error types and OSError
        raise ModelLoadError(f"{path} is not a readable safetensors file ({one_line(error)})") from None


def load_planner(directory: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        planner = AutoModelForCausalLM.from_pretrained(
            directory, local_files_only=True, use_safetensors=True, dtype=dtype
        )
    except Exception as error:  # transformers raises many kinds here; all mean "cannot load".
        raise ModelLoadError(f"{directory}: the planner could not be loaded ({one_line(error)})") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as error:
        raise ModelLoadError(f"{directory}: the planner's tokenizer could not be loaded ({one_line(error)})") from None
    if tokenizer.eos_token_id is None:
        raise ModelLoadError(f"{directory}: the planner's tokenizer has no end-of-sentence token")
    return planner.eval(), tokenizer


def load_renderer(directory: Path, dtype: torch.dtype):
    # StableDiffusionPipeline itself rather than DiffusionPipeline: model_index.json is checked to
    # name it (check_layout), so no other class from the directory's say-so is ever built.
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    bars_were_on = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()  # the loading bar; the drawing one is off per pipeline
    try:
        renderer = StableDiffusionPipeline.from_pretrained(
            directory,
            local_files_only=True,
            use_safetensors=True,
            dtype=dtype,
            # the planner and projection stand in for the text encoder; no safety model is bundled
            text_encoder=None,
            tokenizer=None,
            safety_checker=None,
            feature_extractor=None,
            image_encoder=None,
            requires_safety_checker=False,
        )
    except Exception as error:  # diffusers raises many kinds here; all mean "cannot load".
        raise ModelLoadError(f"{directory}: the renderer could not be loaded ({one_line(error)})") from None
    finally:
        if bars_were_on:
            diffusers_logging.enable_progress_bar()
    renderer.set_progress_bar_config(disable=True)
    return renderer


def load_projection(directory: Path, dtype: torch.dtype) -> PlanProjection:
    data = read_json(directory / PROJECTION_CONFIG)
    try:
        config = ProjectionConfig(**data)
    except TypeError as error:
        raise ModelLoadError(f"{directory / PROJECTION_CONFIG}: {one_line(error)}") from None
    projection = PlanProjection(config)
    try:
        projection.load_state_dict(load_file(str(directory / PROJECTION_WEIGHTS)))
    except (RuntimeError, OSError) as error:  # missing, unexpected or misshapen weights
        raise ModelLoadError(
            f"{directory / PROJECTION_WEIGHTS}: does not fit {PROJECTION_CONFIG} ({one_line(error)})"
        ) from None
    return projection.to(dtype).eval()


def planner_from_janus(janus_dir: Path):
    """(LlamaForCausalLM, tokenizer): the Janus model's text language model and its text lm_head,
    weight for weight, with the Janus tokenizer whose end-of-sentence is the begin-of-image token:
    after a plan the shapes model writes begin-of-image, so the planner stops there, and the
    renderer reads the plan followed by it, exactly the context the Janus model draws after."""
    from transformers import GenerationConfig, JanusConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    janus_dir = Path(janus_dir)
    if not (janus_dir / "config.json").is_file() or not any(janus_dir.glob("*.safetensors")):
        raise ModelLoadError(f"{janus_dir}: not a Janus model directory (config.json and safetensors weights)")
    text = JanusConfig.from_pretrained(janus_dir, local_files_only=True).text_config.to_dict()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(janus_dir, local_files_only=True)
    boi = tokenizer.convert_tokens_to_ids(tokenizer.boi_token)
    tokenizer.eos_token = tokenizer.boi_token
    for key in ("model_type", "architectures", "dtype", "transformers_version"):
        text.pop(key, None)
    config = LlamaConfig(**{**text, "eos_token_id": boi, "pad_token_id": tokenizer.pad_token_id})
    weights = {}
    for path in sorted(janus_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as file:
            for key in file.keys():
                if key.startswith("model.language_model."):
                    weights["model." + key.removeprefix("model.language_model.")] = file.get_tensor(key)
                elif key == "lm_head.weight":
                    weights[key] = file.get_tensor(key)
    planner = LlamaForCausalLM(config)
    planner.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    planner.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=boi, pad_token_id=tokenizer.pad_token_id
    )
    return planner.eval(), tokenizer
