"""Following peft LoRA layers in engines that multiply by their own copies of the weights.

The finetune trainer injects LoRA into the model in place (`peft.get_peft_model`): each adapted
projection becomes a peft `lora.Linear` whose `base_layer` holds the model's weight, and an
optimizer then changes `lora_A` / `lora_B` every step. An engine that calls the modules follows
that by itself; the fast engine's packed CPU copies and the ONNX export read each linear's
`effective_weight` here instead, the matrix that layer's forward multiplies by, and notice a change
through `lora_state`. Duck-typed on peft's attribute names, so the engine imports no peft.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def is_lora(module: nn.Module) -> bool:
    """A peft LoRA layer (`lora.Linear` and its kin): a `base_layer` plus `lora_A` / `lora_B`."""
    return hasattr(module, "base_layer") and hasattr(module, "lora_A") and hasattr(module, "merged_adapters")


def check_plain_lora(module: nn.Module) -> None:
    """Only plain LoRA is a weight delta `B @ A * scaling`; DoRA and the other variants, and a LoRA
    bias, change the forward in ways a copied matrix would not follow."""
    variants = [a for a in getattr(module, "lora_variant", {}) if a in module.lora_A]
    biased = [a for a, on in getattr(module, "lora_bias", {}).items() if on]
    if variants or biased or not isinstance(module.get_base_layer(), nn.Linear):
        raise NotImplementedError(
            f"{type(module).__name__} with LoRA variants {variants} / lora_bias {biased} over "
            f"{type(module.get_base_layer()).__name__}: engines follow plain LoRA on nn.Linear only"
        )


def live_adapters(module: nn.Module) -> list[str]:
    """The adapters whose delta peft's `lora.Linear.forward` adds to the base layer's output: the
    active ones, unless adapters are disabled or merged (a merged weight already holds its delta)."""
    if module.disable_adapters or module.merged:
        return []
    return [a for a in module.active_adapters if a in module.lora_A]


@torch.no_grad()
def effective_weight(linear: nn.Module) -> torch.Tensor:
    """The (out, in) matrix `linear`'s forward multiplies by: its weight, or for a LoRA layer the base
    weight plus each live adapter's delta (no delta when disabled or merged), in the base's dtype."""
    if not is_lora(linear):
        return linear.weight.detach()
    check_plain_lora(linear)
    weight = linear.get_base_layer().weight.detach()
    if linear.disable_adapters and linear.merged:  # peft's forward unmerges first: the base weight
        for adapter in linear.merged_adapters:
            weight = weight - linear.get_delta_weight(adapter).to(weight.dtype)
    for adapter in live_adapters(linear):
        weight = weight + linear.get_delta_weight(adapter).to(weight.dtype)
    return weight


def tensor_version(tensor: torch.Tensor) -> tuple[int, int]:
    """Where a tensor is and how often it was changed in place (an optimizer step bumps it)."""
    return tensor.data_ptr(), tensor._version


def lora_state(module: nn.Module) -> tuple:
    """What an effective weight depends on besides the base weight: the adapters' matrices and
    scalings, which are active, and the disabled / merged flags (`disable_adapter()`, `merge_adapter()`)."""
    adapters = sorted(module.lora_A)
    return (
        bool(module.disable_adapters),
        tuple(module.merged_adapters),
        tuple(module.active_adapters),
        tuple(
            (a, *tensor_version(module.lora_A[a].weight), *tensor_version(module.lora_B[a].weight), module.scaling[a])
            for a in adapters
        ),
    )


def linear_state(linear: nn.Module) -> tuple:
    """`effective_weight`'s inputs as a comparable value: equal states, equal weights."""
    if not is_lora(linear):
        return tensor_version(linear.weight)
    return (*tensor_version(linear.get_base_layer().weight), lora_state(linear))


def lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if is_lora(module)]


def without_lora(model: nn.Module) -> nn.Module:
    """`model` itself if it has no LoRA layer; else a copy in which each LoRA layer is a plain
    nn.Linear holding its effective weight (what a merged model holds). The copy shares every tensor
    outside the LoRA layers with `model`; `model` is untouched."""
    layers = lora_layers(model)
    if not layers:
        return model
    inside = {id(t) for _, layer in layers for t in [*layer.parameters(), *layer.buffers()]}
    memo = {id(t): t for t in [*model.parameters(), *model.buffers()] if id(t) not in inside}
    plain = copy.deepcopy(model, memo)
    for name, layer in layers:
        base = layer.get_base_layer()
        linear = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        linear.weight = nn.Parameter(effective_weight(layer).clone(), requires_grad=False)
        if base.bias is not None:
            linear.bias = nn.Parameter(base.bias.detach().clone(), requires_grad=False)
        parent, _, child = name.rpartition(".")
        setattr(plain.get_submodule(parent), child, linear)
    return plain


def model_state(model: nn.Module) -> tuple:
    """Every parameter's version and every LoRA layer's flags: equal states, the same weights
    (for engines that hold a snapshot of all of them, as the ONNX export does)."""
    return (
        tuple(tensor_version(p) for p in model.parameters()),
        tuple(lora_state(layer) for _, layer in lora_layers(model)),
    )
