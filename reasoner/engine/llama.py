"""Janus's Llama decoder, written out on transformers' own modules: the one home of a layer's
arithmetic for the fast engine (`fast.py`) and the ONNX export (`onnx_export.py`).

A layer is: RMSNorm, q/k/v, rotary embedding, attention, output projection and residual, RMSNorm,
MLP and residual; the same operations as transformers' `LlamaDecoderLayer`. `run_layers` runs them
all; the one part the engines do differently, attention over their own KV cache (a static cache
written in place, or past/present tensors of an exported graph), is the `attend` they pass in.
Matrices are multiplied through a `fast_weights.Weights`: the modules' own (as the export reads
them), or packed copies on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .fast_weights import Weights


@dataclass(frozen=True)
class DecoderShape:
    """The sizes of the Llama decoder, read from its config (GQA: kv_heads may be < heads)."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, config) -> DecoderShape:
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, head_dim)


def rms_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """LlamaRMSNorm, operation for operation: normalise in float32, scale in the input dtype."""
    if x.dtype == torch.float32:  # the same operations, less the two no-op casts
        return norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * x32.to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (rows, heads, T, head_dim) with cos/sin (T, head_dim)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def rope_tables(rotary: nn.Module, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (length, head_dim) for positions 0..length-1, computed as LlamaRotaryEmbedding does."""
    positions = torch.arange(length, device=rotary.inv_freq.device).float()
    freqs = positions[:, None] * rotary.inv_freq.float()[None, :]  # (length, head_dim / 2)
    angles = torch.cat((freqs, freqs), dim=-1)
    return (angles.cos() * rotary.attention_scaling).to(dtype), (angles.sin() * rotary.attention_scaling).to(dtype)


# attend(i, layer, q, k, v) -> y: q (rows, heads, T, hd), k and v (rows, kv_heads, T, hd) of the new
# positions; y (rows, heads, T, hd), the attention output over the cache and the new positions.
Attend = Callable[[int, nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def attention_inputs(
    weights: Weights,
    i: int,
    layer: nn.Module,
    shape: DecoderShape,
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Rotated q (rows, heads, T, hd), rotated k and v (rows, kv_heads, T, hd) of x (rows, T, hidden)."""
    rows, length, _ = x.shape
    s = shape
    qkv = weights.qkv(i, layer.self_attn, rms_norm(x, layer.input_layernorm))
    qkv = qkv.view(rows, length, s.heads + 2 * s.kv_heads, s.head_dim).transpose(1, 2)  # (rows, heads', T, hd)
    qk = rotate(qkv[:, : s.heads + s.kv_heads], cos, sin)  # q and k rotated together
    return qk[:, : s.heads], qk[:, s.heads :], qkv[:, s.heads + s.kv_heads :]


def finish_block(weights: Weights, i: int, layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Residual adds around attention output y (rows, heads, T, hd) and the MLP."""
    rows, _, length, _ = y.shape
    x = x + weights.o(i, layer.self_attn, y.transpose(1, 2).reshape(rows, length, -1))
    return x + weights.mlp(i, layer.mlp, rms_norm(x, layer.post_attention_layernorm))


def run_layers(
    weights: Weights,
    language_model: nn.Module,
    shape: DecoderShape,
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    attend: Attend,
) -> torch.Tensor:
    """x (rows, T, hidden) at the positions of cos/sin (T, hd) through every layer -> the last
    position's hidden state (rows, hidden), after the final norm."""
    for i, layer in enumerate(language_model.layers):
        q, k, v = attention_inputs(weights, i, layer, shape, x, cos, sin)
        x = finish_block(weights, i, layer, x, attend(i, layer, q, k, v))
    return rms_norm(x[:, -1], language_model.norm)
