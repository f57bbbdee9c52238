"""The weights a fast-engine decode step multiplies by: the model's own, or packed copies on a CPU."""

from __future__ import annotations

import torch
from torch import nn

from .lora import effective_weight, linear_state


def onednn_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


ONEDNN_MIN_WEIGHTS = 1 << 17  # oneDNN's linear costs ~12 us more a call: worth it from about 256 x 512


def pack(weight: torch.Tensor, onednn: bool) -> torch.Tensor:
    """A copy of an (out, in) weight laid out for `multiply`: oneDNN's packed layout, or (in, out)."""
    if onednn and weight.numel() >= ONEDNN_MIN_WEIGHTS:
        return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), 2)
    return weight.t().contiguous()


def multiply(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T (+ bias) for a weight made by `pack`."""
    if packed.layout == torch._mkldnn:
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [None], "")
    y = x @ packed
    return y if bias is None else y + bias


class Weights(nn.Module):
    """The matrices a decode step multiplies by, read from the transformers modules.

    On a GPU these are the modules' own tensors (no copies; with CUDA graphs, kernel count does not
    matter). On a CPU a decode step multiplies a few rows by each matrix, which MKL does slowly
    (and only on one thread) for nn.Linear's layout: there they are copies, q/k/v and gate/up fused
    into one matrix each, packed for oneDNN's linear (about twice MKL's speed for 2-16 rows, on
    every thread) when large, else transposed (as also where oneDNN is missing or the step is compiled).

    A copy holds each linear's effective weight (`lora.effective_weight`): a peft LoRA layer's base
    weight plus its live adapters' delta, so an adapter injected by the finetune trainer counts as
    it does in the module's forward. `refresh()` copies them again when a weight was changed in
    place (an optimizer step, on the base or the LoRA matrices) or replaced, or an adapter was
    disabled, enabled, merged or unmerged. LoRA dropout is not applied (the engine only generates).
    """

    def __init__(self, janus: nn.Module, fused_copies: bool, onednn: bool = True):
        super().__init__()
        self.janus_parts = (janus,)  # a tuple: not registered, so janus's weights are not ours
        self.fused = fused_copies
        self.onednn = onednn and onednn_linear_available()
        self.seen: list[tuple] = []
        if fused_copies:
            for name, tensor in self.fused_tensors().items():
                self.register_buffer(name, tensor, persistent=False)
            self.seen = self.versions()

    @property
    def janus(self) -> nn.Module:
        return self.janus_parts[0]

    def linears(self) -> list[nn.Linear]:
        language_model = self.janus.model.language_model
        found = [
            self.janus.lm_head,
            self.janus.model.generation_head.proj_out,
            self.janus.model.generation_head.vision_head,
        ]
        found += [self.janus.model.generation_aligner.fc1, *self.janus.model.generation_aligner.hidden_layers]
        for layer in language_model.layers:
            attn, block = layer.self_attn, layer.mlp
            found += [
                attn.q_proj,
                attn.k_proj,
                attn.v_proj,
                attn.o_proj,
                block.gate_proj,
                block.up_proj,
                block.down_proj,
            ]
        return found

    def versions(self) -> list[tuple]:
        """What the copies were made from: each linear's weight version, and for a LoRA layer its
        adapters' versions and flags (`lora.linear_state`)."""
        return [linear_state(linear) for linear in self.linears()]

    @torch.no_grad()
    def fused_tensors(self) -> dict[str, torch.Tensor]:
        t = lambda *linears: pack(torch.cat([effective_weight(linear) for linear in linears]), self.onednn)
        tensors = {}
        for i, layer in enumerate(self.janus.model.language_model.layers):
            attn, block = layer.self_attn, layer.mlp
            tensors[f"qkv_{i}"] = t(attn.q_proj, attn.k_proj, attn.v_proj)  # (hidden, q + k + v)
            tensors[f"o_{i}"] = t(attn.o_proj)
            tensors[f"gate_up_{i}"] = t(block.gate_proj, block.up_proj)  # (hidden, 2 * intermediate)
            tensors[f"down_{i}"] = t(block.down_proj)
        aligner, head = self.janus.model.generation_aligner, self.janus.model.generation_head
        for j, linear in enumerate([aligner.fc1, *aligner.hidden_layers]):
            tensors[f"aligner_{j}"] = t(linear)
        tensors["proj_out"], tensors["vision_head"], tensors["lm_head"] = (
            t(head.proj_out),
            t(head.vision_head),
            t(self.janus.lm_head),
        )
        return tensors

    def refresh(self) -> bool:
        """Copy the weights again if the model's changed; True if they had."""
        if not self.fused or self.versions() == self.seen:
            return False
        for name, tensor in self.fused_tensors().items():
            setattr(self, name, tensor)
        self.seen = self.versions()
        return True

    def linear(self, name: str, linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return linear(x)
        return multiply(x, getattr(self, name), linear.bias)

    # -- what a step calls ------------------------------------------------------------------------

    def qkv(self, i: int, attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """q, k and v side by side on the last axis: (rows, T, q + k + v)."""
        if not self.fused:
            return torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], dim=-1)
        bias = None if attn.q_proj.bias is None else torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
        return multiply(x, getattr(self, f"qkv_{i}"), bias)

    def o(self, i: int, attn: nn.Module, y: torch.Tensor) -> torch.Tensor:
        return self.linear(f"o_{i}", attn.o_proj, y)

    def mlp(self, i: int, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.fused and block.gate_proj.bias is None:
            gate, up = multiply(x, getattr(self, f"gate_up_{i}"), None).chunk(2, dim=-1)
        else:
            gate, up = block.gate_proj(x), block.up_proj(x)
        return self.linear(f"down_{i}", block.down_proj, block.act_fn(gate) * up)

    def embed_image(self, image_ids: torch.Tensor) -> torch.Tensor:
        """generation_embeddings + generation_aligner (JanusVQVAEAlignerMLP): (R, 1) -> (R, 1, hidden)."""
        aligner = self.janus.model.generation_aligner
        x = self.linear("aligner_0", aligner.fc1, self.janus.model.generation_embeddings(image_ids))
        for j, linear in enumerate(aligner.hidden_layers, start=1):
            x = self.linear(f"aligner_{j}", linear, aligner.activation_fn(x))
        return x

    def image_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The generation head (JanusVQVAEHead): (R, hidden) -> (R, image vocab)."""
        head = self.janus.model.generation_head
        return self.linear(
            "vision_head", head.vision_head, head.activation_fn(self.linear("proj_out", head.proj_out, hidden))
        )

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear("lm_head", self.janus.lm_head, hidden)
