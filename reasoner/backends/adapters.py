"""LoRA adapters in peft's format: the reflection adapter, and an adapter merged in at load time.

Reflection adapters: a LoRA on the language model that only reflection runs with.

A small model that learns to read its own pictures by training every weight forgets some of its
drawing (the bundled model lost a tenth of its direct accuracy that way, weights/shapes/README.md).
With an adapter the drawing weights stay frozen: the recipe trains the LoRA on reflections alone,
and the backend runs reflections on a copy of the model with the adapter merged in, while
planning and drawing run on the model as it was. The adapter is stored in the model directory in
peft's format (`adapter_config.json`, `adapter_model.safetensors`), named by `reasoner.json`'s
`reflect_adapter`.

An adapter given at load time (`--adapter DIR`, or a catalog entry that is a base plus an adapter:
what finetune trains) is merged into the model's weights before the reflection copy is made
(`merge_adapter`), so reflections run on base + that adapter + the reflection adapter. Both kinds
are read alike (`read_adapter`, `load_adapter`): safetensors only, no code run, and a one-line
ModelLoadError for a missing directory or file, a config that is not LoRA, an unreadable file, or
an adapter whose targets, weight names or shapes do not fit the model.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import check_target_module_exists
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import ModelLoadError, one_line

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Every projection of every decoder layer of the language model; not the heads or embeddings,
# which planning and drawing share.
LANGUAGE_MODEL_PROJECTIONS = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


def add_reflection_adapter(model, rank: int, seed: int = 0, start: Path | None = None) -> PeftModel:
    """Freeze `model` and inject a trainable LoRA of `rank` into its language model, in place;
    from the adapter in `start` (an earlier run's, of the same rank) when one is given."""
    if start is not None:
        trained_rank = LoraConfig.from_pretrained(start).r
        if trained_rank != rank:
            raise ValueError(f"the adapter in {start} has rank {trained_rank}, not {rank}")
        return PeftModel.from_pretrained(model, start, is_trainable=True, use_safetensors=True)
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=LANGUAGE_MODEL_PROJECTIONS)
    return get_peft_model(model, config)


def save_reflection_adapter(adapted: PeftModel, directory: Path, dtype: torch.dtype = torch.float16) -> None:
    """Write the adapter (config and safetensors in `dtype`) to `directory`."""
    adapted.save_pretrained(directory, safe_serialization=True)
    Path(directory, "README.md").unlink(missing_ok=True)  # peft's blank model card
    weights = Path(directory, ADAPTER_WEIGHTS)
    save_file({k: v.to(dtype).contiguous() for k, v in load_file(weights).items()}, weights)


def copy_for_adapter(model, config: LoraConfig):
    """A copy of `model` that owns only the weights the adapter of `config` changes (the modules
    peft's own matcher picks) and shares every other tensor with `model`, so that a 7B model with
    an adapter does not hold a second vision tower, VQ, embedding and heads. The copied weights
    are a snapshot: code that trains the model in place (finetune) must merge the adapter again."""
    memo = {}
    for module_name, module in model.named_modules():
        if check_target_module_exists(config, module_name):  # peft's _ExcludedModule is falsy
            continue
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            memo[id(tensor)] = tensor  # deepcopy returns what the memo holds: shared, not copied
    return copy.deepcopy(model, memo)


def read_adapter(directory: Path, what: str = "adapter") -> LoraConfig:
    """The LoraConfig of the peft adapter in `directory`, after checking everything that can be
    checked without a model; a ModelLoadError naming the fault otherwise. `what` names it in errors."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelLoadError(f"{what} directory {directory} does not exist")
    missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (directory / name).is_file()]
    if missing:
        raise ModelLoadError(
            f"{what} {directory} has no {' or '.join(missing)} (a peft LoRA adapter: {ADAPTER_CONFIG} and "
            f"{ADAPTER_WEIGHTS}; only safetensors are loaded)"
        )
    try:
        config = LoraConfig.from_pretrained(directory)
    except Exception as error:
        raise ModelLoadError(f"{what} {directory}: {ADAPTER_CONFIG} cannot be read ({one_line(error)})") from None
    if not isinstance(config, LoraConfig):  # from_pretrained gives the class its peft_type names
        raise ModelLoadError(
            f"{what} {directory} is a {getattr(config.peft_type, 'value', config.peft_type)} adapter, not a LoRA"
        )
    for field in ("modules_to_save", "target_parameters", "trainable_token_indices"):
        if getattr(config, field, None):  # these change weights outside the matched modules
            raise ModelLoadError(f"{what} {directory} sets {field}; an adapter here may only add LoRA to modules")
    try:
        with safe_open(directory / ADAPTER_WEIGHTS, framework="pt") as weights:
            list(weights.keys())
    except Exception as error:
        raise ModelLoadError(
            f"{what} {directory}: {ADAPTER_WEIGHTS} is not a readable safetensors file ({one_line(error)})"
        ) from None
    return config


def load_adapter(model, directory: Path, config: LoraConfig, what: str = "adapter") -> PeftModel:
    """`model` with the adapter in `directory` injected (in place), every weight of the file loaded
    into a LoRA matrix of matching shape; a ModelLoadError saying why it does not fit otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft only warns of keys it could not place: checked below
            adapted = PeftModel.from_pretrained(model, directory, config=config, use_safetensors=True)
    except Exception as error:  # peft raises many kinds here (targets not found, size mismatch)
        raise ModelLoadError(f"{what} {directory} does not fit the model ({one_line(error)})") from None
    # save_embedding_layers=False: "auto" looks the base name up on the Hub (a network call at load)
    expected = set(get_peft_model_state_dict(adapted, save_embedding_layers=False))
    found = set(load_file(Path(directory, ADAPTER_WEIGHTS)))
    if expected != found:
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        raise ModelLoadError(
            f"{what} {directory} does not fit the model: {len(missing)} of its LoRA weights are missing from the "
            f"file (e.g. {missing[:2]}) and {len(unexpected)} in the file have no place (e.g. {unexpected[:2]})"
        )
    return adapted


def merge_adapter(model, directory: Path):
    """`model` with the LoRA adapter in `directory` merged into its weights, in place (a model
    trained by finetune, loaded as base + adapter). Returns the model, plain modules again."""
    config = read_adapter(directory)
    return load_adapter(model, directory, config).merge_and_unload().eval()


def with_reflection_adapter(model, directory: Path):
    """A copy of `model` with the adapter in `directory` merged into its weights; `model` is untouched.
    The copy shares every weight the adapter does not change with `model` (`copy_for_adapter`)."""
    what = "reflection adapter"
    config = read_adapter(directory, what)
    return load_adapter(copy_for_adapter(model, config), directory, config, what).merge_and_unload().eval()
