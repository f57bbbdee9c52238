"""The fast engine's decoder for a fixed number of rows: its KV caches, prefill and decode steps.

`FastEngine` (`fast.py`) makes one per (kind, row count) and runs the token loops on it. Rows may
come from contexts of different lengths, left-padded to the longest (`padding.py`): then prefill
and every step take each row's first real slot, `start`, for its rotary positions and its key mask;
without padding they take None and run unmasked as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fast_weights import Weights
from .llama import DecoderShape, rope_tables, run_layers
from .padding import prefill_mask, prefill_positions, step_mask
from .sampling import guided, pick


class KVCache(nn.Module):
    """One layer's keys and values (rows, kv_heads, max_len, head_dim); a step writes its slot in place
    (`one_slot`), prefill the context's."""

    def __init__(self, rows: int, kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        super().__init__()
        shape = (rows, kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)


class FastDecoder(nn.Module):
    """The decoder for a fixed number of rows, with its caches, noise buffer and sampling settings.

    Buffers live here (static addresses for CUDA graphs); weights are read through `weights`,
    shared by all decoders of an engine.
    """

    def __init__(
        self,
        janus: nn.Module,
        weights: Weights,
        rows: int,
        max_len: int,
        vocab: int,
        candidates: int,
        exact_reads: bool,
    ):
        super().__init__()
        self.janus = janus
        self.weights = weights
        language_model = janus.model.language_model
        self.shape = DecoderShape.of(language_model.config)
        self.rows, self.max_len = rows, max_len
        weight = language_model.embed_tokens.weight
        device, dtype = weight.device, weight.dtype
        self.caches = nn.ModuleList(
            KVCache(rows, self.shape.kv_heads, max_len, self.shape.head_dim, dtype, device)
            for _ in range(self.shape.layers)
        )
        cos, sin = rope_tables(language_model.rotary_emb, max_len, dtype)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.register_buffer("positions", torch.arange(max_len, device=device), persistent=False)
        # What a step reads that changes between steps: plain attributes, not buffers, and passed to
        # the step as arguments (see `decode_image_token`); fixed addresses for CUDA graphs.
        self.input_pos = torch.zeros(1, dtype=torch.long, device=device)
        self.start = torch.zeros(rows, dtype=torch.long, device=device)  # each row's first real slot
        self.noise = torch.ones(candidates, vocab, device=device)
        self.cfg_scale = torch.ones((), device=device)
        self.temperature = torch.ones((), device=device)
        self.greedy = torch.zeros((), dtype=torch.bool, device=device)  # for the compiled-ahead step
        self.cache_tensors = [c.k for c in self.caches] + [c.v for c in self.caches]  # its inputs, in order
        self.exact_reads = exact_reads  # decode steps read the cache exactly up to their position (no mask)

    @property
    def language_model(self) -> nn.Module:
        """The Llama decoder whose layers, norms and attention scales the steps read."""
        return self.janus.model.language_model

    def prefill(
        self, x: torch.Tensor, cache_rows: torch.Tensor | None = None, start: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run contexts x (r, T, hidden) from slot 0; cache row j gets context cache_rows[j].

        `cache_rows` None: one cache row per context. `start` (r,): each context's left padding, or
        None for none. Returns the last slot's hidden state (r, hidden), after the final norm.
        """
        length = x.shape[1]
        rows = x.shape[0] if cache_rows is None else cache_rows.shape[0]
        assert rows == self.rows and length <= self.max_len, (x.shape, rows, self.rows, self.max_len)
        gqa = self.shape.kv_heads != self.shape.heads
        if start is None:
            cos, sin, mask = self.rope_cos[:length], self.rope_sin[:length], None
        else:  # per-row positions (r, 1, T, hd), and each row's padding keys hidden
            positions = prefill_positions(start, length)
            cos, sin = self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]
            mask = prefill_mask(start, length)

        def attend(i: int, layer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None, scale=layer.self_attn.scaling, enable_gqa=gqa
            )
            # e.g. [c, u] -> [c, c, ..., u, u, ...]: the [conditional rows; unconditional rows] layout
            cache = self.caches[i]
            cache.k[:, :, :length] = k if cache_rows is None else k.index_select(0, cache_rows)
            cache.v[:, :, :length] = v if cache_rows is None else v.index_select(0, cache_rows)
            return y

        return run_layers(self.weights, self.language_model, self.shape, x, cos, sin, attend)

    def forward_one(
        self, x: torch.Tensor, input_pos: torch.Tensor, kv_positions: torch.Tensor, start: torch.Tensor | None
    ) -> torch.Tensor:
        """One slot for every row: x (rows, 1, hidden) at input_pos (1,) -> hidden (rows, hidden); see `one_slot`."""
        keys, values = [cache.k for cache in self.caches], [cache.v for cache in self.caches]
        return one_slot(
            self.weights,
            self.language_model,
            self.shape,
            x,
            input_pos,
            kv_positions,
            start,
            keys,
            values,
            self.rope_cos,
            self.rope_sin,
            self.exact_reads,
        )

    # The decode steps take what changes between steps (position, padding, noise, sampling
    # settings) as arguments, not through `self`: a step compiled on a CPU with inductor's freezing
    # folds every tensor it reads through `self` into the graph as a constant (the KV caches it
    # writes excepted). `start` None (no padding) and a tensor are two compiled entries.

    def decode_image_token(
        self,
        tokens: torch.Tensor,
        input_pos: torch.Tensor,
        kv_positions: torch.Tensor,
        start: torch.Tensor | None,
        noise: torch.Tensor,
        cfg_scale: torch.Tensor,
        temperature: torch.Tensor,
        sample: bool,
        top_k: int,
    ) -> torch.Tensor:
        """The next image token of each candidate (B,), given the previous ones (B,). Rows are 2B."""
        logits = image_step_logits(self.weights, self.forward_one, tokens, input_pos, kv_positions, start)
        return pick(guided(logits, cfg_scale), noise if sample else None, temperature, top_k)

    def decode_text_token(
        self,
        tokens: torch.Tensor,
        input_pos: torch.Tensor,
        kv_positions: torch.Tensor,
        start: torch.Tensor | None,
        noise: torch.Tensor,
        cfg_scale: torch.Tensor,
        temperature: torch.Tensor,
        sample: bool,
        top_k: int,
    ) -> torch.Tensor:
        embed = self.janus.get_input_embeddings()
        logits = text_step_logits(self.weights, embed, self.forward_one, tokens, input_pos, kv_positions, start)
        return pick(guided(logits, None), noise if sample else None, temperature, top_k)


# -- one decode step, shared by `FastDecoder` and the steps compiled ahead of time (`fast_aot.py`) --


def one_slot(
    weights: Weights,
    language_model: nn.Module,
    shape: DecoderShape,
    x: torch.Tensor,
    input_pos: torch.Tensor,
    kv_positions: torch.Tensor,
    start: torch.Tensor | None,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    rope_cos: torch.Tensor,
    rope_sin: torch.Tensor,
    exact_reads: bool,
) -> torch.Tensor:
    """One slot for every row: x (rows, 1, hidden) at input_pos (1,) -> hidden (rows, hidden).

    `keys[i]`, `values[i]`: layer i's cache (rows, kv_heads, max_len, hd), written at input_pos.
    Attention reads cache positions `kv_positions` (0..L-1, L >= input_pos + 1), masked to <= input_pos
    unless `exact_reads` (then L = input_pos + 1), and to >= `start` (rows,) for padded rows.
    """
    # the mask is made once a step for every layer; none without padding when reads are exact
    mask = step_mask(start, kv_positions, input_pos, exact_reads, x.dtype)
    if start is None:
        cos, sin = rope_cos[input_pos], rope_sin[input_pos]  # (1, hd): one position for all
    else:
        positions = input_pos - start  # (rows,): the slot less the row's padding
        cos, sin = rope_cos[positions][:, None, None], rope_sin[positions][:, None, None]
    gqa = shape.kv_heads != shape.heads
    length = kv_positions.shape[0]

    def attend(i: int, layer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        keys[i].index_copy_(2, input_pos, k)
        values[i].index_copy_(2, input_pos, v)
        return F.scaled_dot_product_attention(
            q,
            keys[i][:, :, :length],  # (rows, kv_heads, L, hd)
            values[i][:, :, :length],
            attn_mask=mask,
            scale=layer.self_attn.scaling,
            enable_gqa=gqa,
        )

    return run_layers(weights, language_model, shape, x, cos, sin, attend)


def image_step_logits(weights: Weights, forward_one, tokens, input_pos, kv_positions, start) -> torch.Tensor:
    """(2B, image vocab) logits of the slot after image tokens (B,): [conditional rows; unconditional rows]."""
    x = weights.embed_image(torch.cat([tokens, tokens])[:, None])  # (2B, 1, hidden)
    return weights.image_logits(forward_one(x, input_pos, kv_positions, start))


def text_step_logits(weights: Weights, embed, forward_one, tokens, input_pos, kv_positions, start) -> torch.Tensor:
    """(rows, text vocab) logits of the slot after text tokens (rows,)."""
    x = embed(tokens[:, None])  # (rows, 1, hidden)
    return weights.text_logits(forward_one(x, input_pos, kv_positions, start))
