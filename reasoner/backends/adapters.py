"""Reflection adapters: a LoRA on the language model that only reflection runs with.

A small model that learns to read its own pictures by training every weight forgets some of its
drawing (the bundled model lost a tenth of its direct accuracy that way, weights/shapes/README.md).
With an adapter the drawing weights stay frozen: the recipe trains the LoRA on reflections alone,
and the backend runs reflections on a copy of the model with the adapter merged in, while
planning and drawing run on the model as it was. The adapter is stored in the model directory in
peft's format (`adapter_config.json`, `adapter_model.safetensors`), named by `reasoner.json`'s
`reflect_adapter`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import check_target_module_exists
from safetensors.torch import load_file, save_file

from ..errors import ModelLoadError, one_line

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


def with_reflection_adapter(model, directory: Path):
    """A copy of `model` with the adapter in `directory` merged into its weights; `model` is untouched.
    The copy shares every weight the adapter does not change with `model` (`copy_for_adapter`)."""
    if not Path(directory, "adapter_config.json").is_file() or not Path(directory, ADAPTER_WEIGHTS).is_file():
        raise ModelLoadError(f"reflection adapter {directory} needs adapter_config.json and {ADAPTER_WEIGHTS}")
    try:
        config = LoraConfig.from_pretrained(directory)
    except Exception as error:
        raise ModelLoadError(
            f"reflection adapter {directory}: adapter_config.json is not a LoRA config ({one_line(error)})"
        ) from None
    for field in ("modules_to_save", "target_parameters", "trainable_token_indices"):
        if getattr(config, field, None):  # these change weights outside the matched modules
            raise ModelLoadError(
                f"reflection adapter {directory} sets {field}; a reflection adapter may only add LoRA to modules"
            )
    try:
        adapted = PeftModel.from_pretrained(
            copy_for_adapter(model, config), directory, config=config, use_safetensors=True
        )
    except Exception as error:  # peft raises many kinds here; all mean "cannot load"
        raise ModelLoadError(f"reflection adapter {directory} could not be loaded ({one_line(error)})") from None
    return adapted.merge_and_unload().eval()
