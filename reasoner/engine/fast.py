"""The fast engine: Janus's Llama decoder with a static KV cache, in the shape of gpt-fast.

    engine = FastEngine(model, SpecialTokens(bos=..., boi=..., pad=...))
    tokens = engine.image_tokens(context_ids, seeds=[0, 1, 2], cfg_scale=5.0, temperature=1.0, top_k=0)
    plan = engine.text_tokens(context_ids, None, seed=0, temperature=0.0, max_new_tokens=96, stop_ids=[eos, boi])

It reads the weights of a loaded `JanusForConditionalGeneration`: the Llama layers, final norm and
rotary frequencies of `model.model.language_model`, `lm_head` for text, `generation_embeddings` +
`generation_aligner` (the embedding of a drawn image token) and `generation_head` for image
tokens, and the vision tower for the picture a reflection looks at. On a GPU it uses them in place;
on a CPU through packed copies that follow the model's weights (`Weights`). What it does that
transformers' `generate` does not:

1. One KV cache preallocated per row count, (rows, kv_heads, max_len, head_dim) per layer, written
   in place at the step's position (`KVCache`), reused from call to call.
2. `prefill` runs the context once; the decode-one-token step (`decode_image_token`,
   `decode_text_token`) runs one position from the previous token's embedding to the choice of
   the next token, with no Python in between.
3. Guidance is one doubled batch, [B conditional rows; B unconditional rows]; the two distinct
   contexts are prefilled once (2 rows, not 2B) and copied into the cache rows.
4. Sampling on the device (`sampling.py`): each candidate's noise drawn from its own generator
   outside the step, the pick (mix, temperature, top-k, argmax) inside it.
5. On CUDA, the decode step runs under `torch.compile(mode="reduce-overhead")`: CUDA graphs
   replay the whole step. Attention reads the cache up to the position rounded up to `BUCKET`
   (not to the cache's end); that length is marked dynamic, so one compile serves all lengths and
   one CUDA graph is recorded per bucket. Weights are used in their loaded dtype (bf16 on GPU);
   guidance and sampling run on float32 scores.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .sampling import RowNoise, guided, pick

BUCKET = 64  # attention reads the cache in steps of this many positions
CACHE_ROUND = 256  # caches are allocated in steps of this many positions, so they are reused


@dataclass(frozen=True)
class SpecialTokens:
    bos: int
    boi: int  # begin-of-image: ends every drawing context
    pad: int  # replaces every token but BOS/BOI in the unconditional context


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


def round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def unconditional_ids(context_ids: list[int], special: SpecialTokens) -> list[int]:
    """The prompt-dropped context for guidance: every token but BOS and BOI becomes pad."""
    return [t if t in (special.bos, special.boi) else special.pad for t in context_ids]


# -- the decoder's arithmetic, the same as transformers' Llama, on its modules ---------------------


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


def mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.down_proj(block.act_fn(block.gate_proj(x)) * block.up_proj(x))


def rope_tables(rotary: nn.Module, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (length, head_dim) for positions 0..length-1, computed as LlamaRotaryEmbedding does."""
    positions = torch.arange(length, device=rotary.inv_freq.device).float()
    freqs = positions[:, None] * rotary.inv_freq.float()[None, :]  # (length, head_dim / 2)
    angles = torch.cat((freqs, freqs), dim=-1)
    return (angles.cos() * rotary.attention_scaling).to(dtype), (angles.sin() * rotary.attention_scaling).to(dtype)


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
    every thread) when large, else transposed (as also where oneDNN is missing or the step is compiled). `refresh()`
    copies them again when a weight was changed in place (an optimizer step) or replaced.
    """

    def __init__(self, janus: nn.Module, fused_copies: bool, onednn: bool = True):
        super().__init__()
        self.janus_parts = (janus,)  # a tuple: not registered, so janus's weights are not ours
        self.fused = fused_copies
        self.onednn = onednn and onednn_linear_available()
        self.seen: list[tuple[int, int]] = []
        if fused_copies:
            for name, tensor in self.fused_tensors().items():
                self.register_buffer(name, tensor, persistent=False)
            self.seen = self.versions()

    @property
    def janus(self) -> nn.Module:
        return self.janus_parts[0]

    def linears(self) -> list[nn.Linear]:
        language_model = self.janus.model.language_model
        found = [self.janus.lm_head, self.janus.model.generation_head.proj_out, self.janus.model.generation_head.vision_head]
        found += [self.janus.model.generation_aligner.fc1, *self.janus.model.generation_aligner.hidden_layers]
        for layer in language_model.layers:
            attn, block = layer.self_attn, layer.mlp
            found += [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, block.gate_proj, block.up_proj, block.down_proj]
        return found

    def versions(self) -> list[tuple[int, int]]:
        return [(linear.weight.data_ptr(), linear.weight._version) for linear in self.linears()]

    def fused_tensors(self) -> dict[str, torch.Tensor]:
        t = lambda *linears: pack(torch.cat([linear.weight.detach() for linear in linears]), self.onednn)
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
        tensors["proj_out"], tensors["vision_head"], tensors["lm_head"] = t(head.proj_out), t(head.vision_head), t(self.janus.lm_head)
        return tensors

    def refresh(self) -> None:
        if self.fused and self.versions() != self.seen:
            for name, tensor in self.fused_tensors().items():
                setattr(self, name, tensor)
            self.seen = self.versions()

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
        return self.linear("vision_head", head.vision_head, head.activation_fn(self.linear("proj_out", head.proj_out, hidden)))

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear("lm_head", self.janus.lm_head, hidden)


class KVCache(nn.Module):
    def __init__(self, rows: int, kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        super().__init__()
        shape = (rows, kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write k, v (rows, kv_heads, T, head_dim) at positions input_pos (T,)."""
        self.k.index_copy_(2, input_pos, k)
        self.v.index_copy_(2, input_pos, v)


class FastDecoder(nn.Module):
    """The decoder for a fixed number of rows, with its caches, noise buffer and sampling settings.

    Buffers live here (static addresses for CUDA graphs); weights are read through `weights`,
    shared by all decoders of an engine.
    """

    def __init__(self, janus: nn.Module, weights: Weights, rows: int, max_len: int, vocab: int, candidates: int):
        super().__init__()
        self.janus = janus
        self.weights = weights
        language_model = janus.model.language_model
        self.shape = DecoderShape.of(language_model.config)
        self.rows, self.max_len = rows, max_len
        weight = language_model.embed_tokens.weight
        device, dtype = weight.device, weight.dtype
        self.caches = nn.ModuleList(
            KVCache(rows, self.shape.kv_heads, max_len, self.shape.head_dim, dtype, device) for _ in range(self.shape.layers)
        )
        cos, sin = rope_tables(language_model.rotary_emb, max_len, dtype)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.register_buffer("positions", torch.arange(max_len, device=device), persistent=False)
        self.register_buffer("input_pos", torch.zeros(1, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("noise", torch.ones(candidates, vocab, device=device), persistent=False)
        self.register_buffer("cfg_scale", torch.ones((), device=device), persistent=False)
        self.register_buffer("temperature", torch.ones((), device=device), persistent=False)

    def blocks(self):
        """(index, transformers layer: norms, attention scale, activation; its KV cache) per layer."""
        return zip(range(self.shape.layers), self.janus.model.language_model.layers, self.caches)

    def qkv(self, i: int, layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rotated q (rows, heads, T, hd), rotated k and v (rows, kv_heads, T, hd) of x (rows, T, hidden)."""
        rows, length, _ = x.shape
        s = self.shape
        qkv = self.weights.qkv(i, layer.self_attn, rms_norm(x, layer.input_layernorm))
        qkv = qkv.view(rows, length, s.heads + 2 * s.kv_heads, s.head_dim).transpose(1, 2)  # (rows, heads', T, hd)
        qk = rotate(qkv[:, : s.heads + s.kv_heads], cos, sin)  # q and k rotated together
        return qk[:, : s.heads], qk[:, s.heads :], qkv[:, s.heads + s.kv_heads :]

    def finish_block(self, i: int, layer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Residual adds around attention output y (rows, heads, T, hd) and the MLP."""
        rows, _, length, _ = y.shape
        x = x + self.weights.o(i, layer.self_attn, y.transpose(1, 2).reshape(rows, length, -1))
        return x + self.weights.mlp(i, layer.mlp, rms_norm(x, layer.post_attention_layernorm))

    def prefill(self, x: torch.Tensor, repeats: int = 1) -> torch.Tensor:
        """Run a context x (r, T, hidden) from position 0; cache rows get each context `repeats` times.

        Returns the last position's hidden state (r, hidden), after the final norm.
        """
        length = x.shape[1]
        assert x.shape[0] * repeats == self.rows and length <= self.max_len, (x.shape, repeats, self.rows, self.max_len)
        cos, sin = self.rope_cos[:length], self.rope_sin[:length]
        gqa = self.shape.kv_heads != self.shape.heads
        for i, layer, cache in self.blocks():
            q, k, v = self.qkv(i, layer, x, cos, sin)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=layer.self_attn.scaling, enable_gqa=gqa)
            x = self.finish_block(i, layer, x, y)
            # [c, u] -> [c, c, ..., u, u, ...]: the [conditional rows; unconditional rows] layout
            cache.k[:, :, :length] = k.repeat_interleave(repeats, dim=0)
            cache.v[:, :, :length] = v.repeat_interleave(repeats, dim=0)
        return rms_norm(x[:, -1], self.janus.model.language_model.norm)

    def forward_one(self, x: torch.Tensor, input_pos: torch.Tensor, kv_positions: torch.Tensor) -> torch.Tensor:
        """One position for every row: x (rows, 1, hidden) at input_pos (1,) -> hidden (rows, hidden).

        Attention reads cache positions `kv_positions` (0..L-1, L >= input_pos + 1), masked to <= input_pos.
        """
        length = kv_positions.shape[0]
        cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]  # (1, head_dim)
        # additive mask, made once a step for every layer: 0 up to input_pos, -inf after
        mask = torch.zeros(1, 1, 1, length, dtype=x.dtype, device=x.device).masked_fill(kv_positions > input_pos, float("-inf"))
        gqa = self.shape.kv_heads != self.shape.heads
        for i, layer, cache in self.blocks():
            q, k, v = self.qkv(i, layer, x, cos, sin)
            cache.update(input_pos, k, v)
            keys, values = cache.k[:, :, :length], cache.v[:, :, :length]  # (rows, kv_heads, L, hd)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=layer.self_attn.scaling, enable_gqa=gqa)
            x = self.finish_block(i, layer, x, y)
        return rms_norm(x[:, -1], self.janus.model.language_model.norm)

    def decode_image_token(self, tokens: torch.Tensor, input_pos: torch.Tensor, kv_positions: torch.Tensor, sample: bool, top_k: int) -> torch.Tensor:
        """The next image token of each candidate (B,), given the previous ones (B,). Rows are 2B."""
        x = self.weights.embed_image(torch.cat([tokens, tokens])[:, None])  # (2B, 1, hidden)
        logits = self.weights.image_logits(self.forward_one(x, input_pos, kv_positions))  # (2B, vocab)
        return pick(guided(logits, self.cfg_scale), self.noise if sample else None, self.temperature, top_k)

    def decode_text_token(self, tokens: torch.Tensor, input_pos: torch.Tensor, kv_positions: torch.Tensor, sample: bool, top_k: int) -> torch.Tensor:
        x = self.janus.get_input_embeddings()(tokens[:, None])  # (rows, 1, hidden)
        logits = self.weights.text_logits(self.forward_one(x, input_pos, kv_positions))  # (rows, vocab)
        return pick(guided(logits, None), self.noise if sample else None, self.temperature, top_k)


class FastEngine:
    """Image and text tokens through `FastDecoder`s, one per row count, compiled on CUDA."""

    name = "fast"

    def __init__(self, janus: nn.Module, special: SpecialTokens, compile: bool | None = None, fused_copies: bool | None = None, progress: bool = False):
        self.janus = janus
        self.special = special
        self.device = janus.lm_head.weight.device
        if compile is None:  # REASONER_FAST_COMPILE=0/1 overrides: compiled on CUDA, eager on a CPU
            compile = os.environ.get("REASONER_FAST_COMPILE", "1" if self.device.type == "cuda" else "0") == "1"
        self.compile = compile
        self.progress = progress
        self.num_image_tokens = janus.config.vision_config.num_image_tokens
        self.image_vocab = janus.config.vq_config.num_embeddings
        self.text_vocab = janus.lm_head.out_features
        # On a CPU the engine multiplies by fused, transposed copies of the weights (see `Weights`).
        fused_copies = self.device.type == "cpu" if fused_copies is None else fused_copies
        self.weights = Weights(janus, fused_copies, onednn=not self.compile)  # compiled steps take plain tensors
        self.lock = threading.Lock()  # decoders hold caches: one token loop at a time
        self.decoders: dict[tuple[str, int], FastDecoder] = {}
        self.steps: dict[tuple[str, int], tuple] = {}
        if self.compile:
            # one compiled entry per (decoder, greedy or sampled, top_k): more than dynamo's default 8
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

    # -- decoders and their compiled steps --------------------------------------------------------

    def decoder(self, kind: str, rows: int, max_len: int) -> FastDecoder:
        """The decoder for `kind` ("image" or "text") and `rows`, with room for `max_len` positions."""
        key = (kind, rows)
        decoder = self.decoders.get(key)
        if decoder is None or decoder.max_len < max_len or decoder.rope_cos.device != self.device:
            self.decoders.pop(key, None)
            vocab, candidates = (self.image_vocab, rows // 2) if kind == "image" else (self.text_vocab, rows)
            decoder = FastDecoder(self.janus, self.weights, rows, round_up(max_len, CACHE_ROUND), vocab, candidates)
            step = decoder.decode_image_token if kind == "image" else decoder.decode_text_token
            if self.compile:
                self.log(f"fast engine: compiling the {kind} decode step for {rows} rows (first steps are slow)")
                # CUDA graphs on GPU; on a CPU, inductor's fused C++ kernels (there are no graphs to replay)
                mode = "reduce-overhead" if self.device.type == "cuda" else "default"
                step = torch.compile(step, mode=mode, fullgraph=True)
            self.decoders[key], self.steps[key] = decoder, step
        return decoder

    def decode(self, kind: str, decoder: FastDecoder, tokens: torch.Tensor, position: int, sample: bool, top_k: int) -> torch.Tensor:
        """One compiled (or eager) decode step at `position`; returns the next tokens (a fresh tensor)."""
        length = min(decoder.max_len, round_up(position + 1, BUCKET))
        kv_positions = decoder.positions[:length]
        if self.compile:
            torch._dynamo.maybe_mark_dynamic(kv_positions, 0)
            torch.compiler.cudagraph_mark_step_begin()
        decoder.input_pos.fill_(position)  # on the device, queued: no host-to-device copy, no sync
        step = self.steps[(kind, decoder.rows)]
        return step(tokens, decoder.input_pos, kv_positions, sample, top_k).clone()  # clone: CUDA graph outputs are reused

    def set_sampling(self, decoder: FastDecoder, seeds: list[int], cfg_scale: float | None, temperature: float) -> RowNoise | None:
        decoder.cfg_scale.fill_(1.0 if cfg_scale is None else cfg_scale)
        decoder.temperature.fill_(temperature if temperature > 0 else 1.0)
        return RowNoise(seeds, decoder.noise) if temperature > 0 else None

    def log(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)

    # -- the two token loops ----------------------------------------------------------------------

    def image_tokens(self, context_ids: list[int], seeds: list[int], cfg_scale: float, temperature: float, top_k: int) -> torch.Tensor:
        """(len(seeds), num_image_tokens) image tokens, guided by the prompt-dropped context."""
        with self.lock, torch.no_grad():
            return self._image_tokens(context_ids, seeds, cfg_scale, temperature, top_k)

    def text_tokens(self, ids: list[int], pixel_values: torch.Tensor | None, seed: int, temperature: float, max_new_tokens: int, stop_ids: list[int], top_k: int = 0) -> list[int]:
        """New tokens after `ids`, up to and including the first stop token (at most max_new_tokens)."""
        with self.lock, torch.no_grad():
            return self._text_tokens(ids, pixel_values, seed, temperature, max_new_tokens, stop_ids, top_k)

    def _image_tokens(self, context_ids: list[int], seeds: list[int], cfg_scale: float, temperature: float, top_k: int) -> torch.Tensor:
        batch, length, count = len(seeds), len(context_ids), self.num_image_tokens
        # 1. The conditional and the unconditional context, and a decoder for 2B rows
        self.weights.refresh()
        ids = torch.tensor([context_ids, unconditional_ids(context_ids, self.special)], device=self.device)
        decoder = self.decoder("image", 2 * batch, length + count)
        noise = self.set_sampling(decoder, seeds, cfg_scale, temperature)
        sample = noise is not None
        # 2. Prefill the two contexts once; the first token comes from the last context position
        hidden = decoder.prefill(self.janus.get_input_embeddings()(ids), repeats=batch)  # (2, hidden)
        logits = self.weights.image_logits(hidden).repeat_interleave(batch, dim=0)  # (2B, vocab)
        tokens = torch.empty(batch, count, dtype=torch.long, device=self.device)
        tokens[:, 0] = pick(guided(logits, cfg_scale), noise.draw() if sample else None, temperature, top_k)
        # 3. Decode the rest, one position a step
        for i in range(1, count):
            if sample:
                noise.draw()
            tokens[:, i] = self.decode("image", decoder, tokens[:, i - 1], length + i - 1, sample, top_k)
        return tokens

    def _text_tokens(self, ids: list[int], pixel_values: torch.Tensor | None, seed: int, temperature: float, max_new_tokens: int, stop_ids: list[int], top_k: int) -> list[int]:
        length = len(ids)
        input_ids = torch.tensor([ids], device=self.device)
        # 1. Embeddings of the context; a reflection's picture goes in at the image-token positions
        self.weights.refresh()
        x = self.janus.get_input_embeddings()(input_ids)  # (1, T, hidden)
        if pixel_values is not None:
            features = self.janus.model.get_image_features(pixel_values).pooler_output.reshape(-1, x.shape[-1])
            where = (input_ids == self.janus.config.image_token_id)[..., None]
            x = x.masked_scatter(where, features.to(x.dtype))
        # 2. Prefill, then decode until a stop token
        decoder = self.decoder("text", 1, length + max_new_tokens)
        noise = self.set_sampling(decoder, [seed], None, temperature)
        sample = noise is not None
        logits = self.weights.text_logits(decoder.prefill(x))  # (1, vocab)
        token = pick(guided(logits, None), noise.draw() if sample else None, temperature, top_k)
        new_tokens = [int(token)]
        while len(new_tokens) < max_new_tokens and new_tokens[-1] not in stop_ids:
            if sample:
                noise.draw()
            token = self.decode("text", decoder, token, length + len(new_tokens) - 1, sample, top_k)
            new_tokens.append(int(token))
        return new_tokens
