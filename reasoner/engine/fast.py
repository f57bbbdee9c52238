"""The fast engine: Janus's Llama decoder with a static KV cache, in the shape of gpt-fast.

    engine = FastEngine(model, SpecialTokens(bos=..., boi=..., pad=...))
    tokens = engine.image_tokens([context_ids] * 3, seeds=[0, 1, 2], cfg_scale=5.0, temperature=1.0, top_k=0)
    plans = engine.text_tokens(
        [ids_a, ids_b], None, seeds=[0, 1], temperature=0.0, max_new_tokens=96, stop_ids=[eos, boi]
    )

Row k of a call comes from contexts[k] and seeds[k]; the contexts of one call have one length.

It reads the weights of a loaded `JanusForConditionalGeneration`: the Llama layers, final norm and
rotary frequencies of `model.model.language_model`, `lm_head` for text, `generation_embeddings` +
`generation_aligner` (the embedding of a drawn image token) and `generation_head` for image
tokens; a reflection's picture comes as the features the backend read it into. On a GPU it uses
them in place; on a CPU through packed copies that follow the model's weights
(`fast_weights.Weights`); a layer's arithmetic is `llama.py`'s, shared with the ONNX export.
What it does that transformers' `generate` does not:

1. One KV cache preallocated per row count, (rows, kv_heads, max_len, head_dim) per layer, written
   in place at the step's position (`KVCache`), reused from call to call.
2. `prefill` runs the context once; the decode-one-token step (`decode_image_token`,
   `decode_text_token`) runs one position from the previous token's embedding to the choice of
   the next token, with no Python in between.
3. Guidance is one doubled batch, [B conditional rows; B unconditional rows]; only the distinct
   contexts are prefilled (2 rows, not 2B, when the candidates share a prompt; contexts of one
   length share their unconditional one) and copied into the cache rows.
4. Sampling on the device (`sampling.py`): each candidate's noise drawn from its own generator
   outside the step, the pick (mix, temperature, top-k, argmax) inside it.
5. On CUDA, the decode step runs under `torch.compile(mode="reduce-overhead")`: CUDA graphs
   replay the whole step. Attention reads the cache up to the position rounded up to `BUCKET`
   (not to the cache's end); that length is marked dynamic, so one compile serves all lengths and
   one CUDA graph is recorded per bucket. Weights are used in their loaded dtype (bf16 on GPU);
   guidance and sampling run on float32 scores. Elsewhere attention reads the cache exactly up to
   the position, unmasked. On a CPU compiling is opt-in (`REASONER_FAST_COMPILE=1`; see
   `compiled_step`): inductor freezes the weights into the step, so new weights drop the step.
"""

from __future__ import annotations

import os
import sys
import threading

import torch
import torch.nn.functional as F
from torch import nn

from .fast_weights import Weights
from .guidance import SpecialTokens, guidance_rows
from .llama import DecoderShape, rope_tables, run_layers
from .sampling import RowNoise, guided, pick

BUCKET = 64  # attention reads the cache in steps of this many positions
CACHE_ROUND = 256  # caches are allocated in steps of this many positions, so they are reused
MAX_DECODERS = 8  # decoders (each with its KV cache) kept, least recently used dropped first


def round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def distinct_rows(rows: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """The distinct rows in order of first appearance, and where each row is among them."""
    where: dict[tuple[int, ...], int] = {}
    index = [where.setdefault(tuple(row), len(where)) for row in rows]
    return [list(row) for row in where], index


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
        self.noise = torch.ones(candidates, vocab, device=device)
        self.cfg_scale = torch.ones((), device=device)
        self.temperature = torch.ones((), device=device)
        self.exact_reads = exact_reads  # decode steps read the cache exactly up to their position (no mask)

    @property
    def language_model(self) -> nn.Module:
        """The Llama decoder whose layers, norms and attention scales the steps read."""
        return self.janus.model.language_model

    def prefill(self, x: torch.Tensor, cache_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Run contexts x (r, T, hidden) from position 0; cache row j gets context cache_rows[j].

        `cache_rows` None: one cache row per context. Returns the last position's hidden state
        (r, hidden), after the final norm.
        """
        length = x.shape[1]
        rows = x.shape[0] if cache_rows is None else cache_rows.shape[0]
        assert rows == self.rows and length <= self.max_len, (x.shape, rows, self.rows, self.max_len)
        gqa = self.shape.kv_heads != self.shape.heads

        def attend(i: int, layer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=layer.self_attn.scaling, enable_gqa=gqa)
            # e.g. [c, u] -> [c, c, ..., u, u, ...]: the [conditional rows; unconditional rows] layout
            cache = self.caches[i]
            cache.k[:, :, :length] = k if cache_rows is None else k.index_select(0, cache_rows)
            cache.v[:, :, :length] = v if cache_rows is None else v.index_select(0, cache_rows)
            return y

        return run_layers(
            self.weights, self.language_model, self.shape, x, self.rope_cos[:length], self.rope_sin[:length], attend
        )

    def forward_one(self, x: torch.Tensor, input_pos: torch.Tensor, kv_positions: torch.Tensor) -> torch.Tensor:
        """One position for every row: x (rows, 1, hidden) at input_pos (1,) -> hidden (rows, hidden).

        Attention reads cache positions `kv_positions` (0..L-1, L >= input_pos + 1), masked to <= input_pos
        unless `exact_reads` (then L = input_pos + 1 and there is nothing to mask).
        """
        length = kv_positions.shape[0]
        # additive mask, made once a step for every layer: 0 up to input_pos, -inf after; none when
        # the positions read end at input_pos (eager steps read exactly that far)
        mask = (
            None
            if self.exact_reads
            else torch.zeros(1, 1, 1, length, dtype=x.dtype, device=x.device).masked_fill(
                kv_positions > input_pos, float("-inf")
            )
        )
        gqa = self.shape.kv_heads != self.shape.heads

        def attend(i: int, layer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            cache = self.caches[i]
            cache.update(input_pos, k, v)
            keys, values = cache.k[:, :, :length], cache.v[:, :, :length]  # (rows, kv_heads, L, hd)
            return F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, scale=layer.self_attn.scaling, enable_gqa=gqa
            )

        return run_layers(
            self.weights, self.language_model, self.shape, x, self.rope_cos[input_pos], self.rope_sin[input_pos], attend
        )

    # The decode steps take what changes between steps (position, noise, sampling settings) as
    # arguments, not through `self`: a step compiled on a CPU with inductor's freezing folds every
    # tensor it reads through `self` into the graph as a constant (the KV caches it writes excepted).

    def decode_image_token(
        self,
        tokens: torch.Tensor,
        input_pos: torch.Tensor,
        kv_positions: torch.Tensor,
        noise: torch.Tensor,
        cfg_scale: torch.Tensor,
        temperature: torch.Tensor,
        sample: bool,
        top_k: int,
    ) -> torch.Tensor:
        """The next image token of each candidate (B,), given the previous ones (B,). Rows are 2B."""
        x = self.weights.embed_image(torch.cat([tokens, tokens])[:, None])  # (2B, 1, hidden)
        logits = self.weights.image_logits(self.forward_one(x, input_pos, kv_positions))  # (2B, vocab)
        return pick(guided(logits, cfg_scale), noise if sample else None, temperature, top_k)

    def decode_text_token(
        self,
        tokens: torch.Tensor,
        input_pos: torch.Tensor,
        kv_positions: torch.Tensor,
        noise: torch.Tensor,
        cfg_scale: torch.Tensor,
        temperature: torch.Tensor,
        sample: bool,
        top_k: int,
    ) -> torch.Tensor:
        x = self.janus.get_input_embeddings()(tokens[:, None])  # (rows, 1, hidden)
        logits = self.weights.text_logits(self.forward_one(x, input_pos, kv_positions))  # (rows, vocab)
        return pick(guided(logits, None), noise if sample else None, temperature, top_k)


class FastEngine:
    """Image and text tokens through `FastDecoder`s, one per row count, compiled on CUDA."""

    name = "fast"

    def __init__(
        self,
        janus: nn.Module,
        special: SpecialTokens,
        compile: bool | None = None,
        fused_copies: bool | None = None,
        progress: bool = False,
    ):
        self.janus = janus
        self.special = special
        self.device = janus.lm_head.weight.device
        if compile is None:  # REASONER_FAST_COMPILE=0/1 overrides: compiled on CUDA, eager on a CPU
            compile = os.environ.get("REASONER_FAST_COMPILE", "1" if self.device.type == "cuda" else "0") == "1"
        self.compile = compile
        # Attention reads the cache exactly up to the position, unmasked, except under CUDA graphs,
        # which need a few fixed lengths (one graph each); inductor on a CPU takes the length as dynamic.
        self.exact_reads = not (compile and self.device.type == "cuda")
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
        decoder, step = self.decoders.pop(key, None), self.steps.pop(key, None)  # put back last: most recent
        if decoder is None or decoder.max_len < max_len or decoder.rope_cos.device != self.device:
            vocab, candidates = (self.image_vocab, rows // 2) if kind == "image" else (self.text_vocab, rows)
            decoder = FastDecoder(
                self.janus, self.weights, rows, round_up(max_len, CACHE_ROUND), vocab, candidates, self.exact_reads
            )
            step = decoder.decode_image_token if kind == "image" else decoder.decode_text_token
            if self.compile:
                self.log(f"fast engine: compiling the {kind} decode step for {rows} rows (first steps are slow)")
                step = compiled_step(step, decoder)
        self.decoders[key], self.steps[key] = decoder, step
        while len(self.decoders) > MAX_DECODERS:  # batched eval meets many row counts: bound the caches
            oldest = next(iter(self.decoders))
            del self.decoders[oldest], self.steps[oldest]
        return decoder

    def decode(
        self, kind: str, decoder: FastDecoder, tokens: torch.Tensor, position: int, sample: bool, top_k: int
    ) -> torch.Tensor:
        """One compiled (or eager) decode step at `position`; returns the next tokens (a fresh tensor)."""
        # CUDA graphs: read up to a bucket's end (one graph a bucket), masked; else exactly what exists
        length = position + 1 if self.exact_reads else min(decoder.max_len, round_up(position + 1, BUCKET))
        kv_positions = decoder.positions[:length]
        if self.compile:
            torch._dynamo.maybe_mark_dynamic(kv_positions, 0)
            torch.compiler.cudagraph_mark_step_begin()
        decoder.input_pos.fill_(position)  # on the device, queued: no host-to-device copy, no sync
        step = self.steps[(kind, decoder.rows)]
        next_tokens = step(
            tokens,
            decoder.input_pos,
            kv_positions,
            decoder.noise,
            decoder.cfg_scale,
            decoder.temperature,
            sample,
            top_k,
        )
        return next_tokens.clone()  # clone: CUDA graph outputs are reused

    def refresh_weights(self) -> None:
        """Follow the model's weights; a CPU-compiled step holds them as constants, so it is dropped."""
        if self.weights.refresh() and self.compile and self.device.type == "cpu":
            self.decoders.clear()
            self.steps.clear()

    def set_sampling(
        self, decoder: FastDecoder, seeds: list[int], cfg_scale: float | None, temperature: float
    ) -> RowNoise | None:
        decoder.cfg_scale.fill_(1.0 if cfg_scale is None else cfg_scale)
        decoder.temperature.fill_(temperature if temperature > 0 else 1.0)
        return RowNoise(seeds, decoder.noise) if temperature > 0 else None

    def log(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)

    # -- the two token loops ----------------------------------------------------------------------

    def image_tokens(
        self, contexts: list[list[int]], seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> torch.Tensor:
        """(len(seeds), num_image_tokens) image tokens: row k from contexts[k] with seeds[k], guided
        by its prompt-dropped context."""
        with self.lock, torch.no_grad():
            return self._image_tokens(contexts, seeds, cfg_scale, temperature, top_k)

    def text_tokens(
        self,
        contexts: list[list[int]],
        image_features: torch.Tensor | None,
        seeds: list[int],
        temperature: float,
        max_new_tokens: int,
        stop_ids: list[int],
        top_k: int = 0,
    ) -> list[list[int]]:
        """New tokens after each context, up to and including its first stop token (at most
        max_new_tokens). `image_features`: one picture's (tokens, hidden) per context, for reflections."""
        with self.lock, torch.no_grad():
            return self._text_tokens(contexts, image_features, seeds, temperature, max_new_tokens, stop_ids, top_k)

    def _image_tokens(
        self, contexts: list[list[int]], seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> torch.Tensor:
        batch, length, count = len(seeds), len(contexts[0]), self.num_image_tokens
        assert len(contexts) == batch and all(len(c) == length for c in contexts), "one context of one length per seed"
        # 1. The distinct conditional and unconditional contexts, and a decoder for 2B rows
        self.refresh_weights()
        distinct, index = distinct_rows(guidance_rows(contexts, self.special))
        ids = torch.tensor(distinct, device=self.device)
        cache_rows = torch.tensor(index, device=self.device)
        decoder = self.decoder("image", 2 * batch, length + count)
        noise = self.set_sampling(decoder, seeds, cfg_scale, temperature)
        sample = noise is not None
        # 2. Prefill the distinct contexts once; the first token comes from the last context position
        hidden = decoder.prefill(self.janus.get_input_embeddings()(ids), cache_rows)  # (distinct, hidden)
        logits = self.weights.image_logits(hidden).index_select(0, cache_rows)  # (2B, vocab)
        tokens = torch.empty(batch, count, dtype=torch.long, device=self.device)
        tokens[:, 0] = pick(guided(logits, cfg_scale), noise.draw() if sample else None, temperature, top_k)
        # 3. Decode the rest, one position a step
        for i in range(1, count):
            if sample:
                noise.draw()
            tokens[:, i] = self.decode("image", decoder, tokens[:, i - 1], length + i - 1, sample, top_k)
        return tokens

    def _text_tokens(
        self,
        contexts: list[list[int]],
        image_features: torch.Tensor | None,
        seeds: list[int],
        temperature: float,
        max_new_tokens: int,
        stop_ids: list[int],
        top_k: int,
    ) -> list[list[int]]:
        rows, length = len(contexts), len(contexts[0])
        assert len(seeds) == rows and all(len(c) == length for c in contexts), "one context of one length per seed"
        input_ids = torch.tensor(contexts, device=self.device)
        # 1. Embeddings of the contexts; a reflection's picture goes in at the image-token positions
        self.refresh_weights()
        x = self.janus.get_input_embeddings()(input_ids)  # (rows, T, hidden)
        if image_features is not None:  # row-major: row k's positions take picture k's features
            features = image_features.reshape(-1, x.shape[-1])
            where = (input_ids == self.janus.config.image_token_id)[..., None]
            x = x.masked_scatter(where, features.to(x.dtype))
        # 2. Prefill, then decode every row until each has written a stop token
        decoder = self.decoder("text", rows, length + max_new_tokens)
        noise = self.set_sampling(decoder, seeds, None, temperature)
        sample = noise is not None
        logits = self.weights.text_logits(decoder.prefill(x))  # (rows, vocab)
        first = pick(guided(logits, None), noise.draw() if sample else None, temperature, top_k)

        def step(token: torch.Tensor, written: int) -> torch.Tensor:
            return self.decode("text", decoder, token, length + written - 1, sample, top_k)

        return decode_until_stopped(first, max_new_tokens, stop_ids, step, noise)


# On a CPU, inductor with freezing: weights become constants, which lets its C++ GEMM template pack
# them for products of a few rows (the 28 products of a shapes-model step: 0.4 ms against 2.3-2.9 ms
# for torch's eager kernels, 2 threads). The template only: MKL's packed kernel won autotuning at 16
# rows, timed with its weights in cache, then took twice as long a step in the loop. Dynamo reads
# `freezing` when it traces, hence a patch around every call: `torch.compile(options=...)` reaches
# inductor only, and the step's weights would stay inputs.
CPU_INDUCTOR = {"freezing": True, "max_autotune": True, "max_autotune_gemm_backends": "CPP"}


def compiled_step(step, decoder: FastDecoder):
    """`step` compiled: CUDA graphs on a GPU; on a CPU, inductor's C++ kernels (no graphs to replay)."""
    if decoder.noise.device.type == "cuda":
        for state in (decoder.input_pos, decoder.noise, decoder.cfg_scale, decoder.temperature):
            torch._dynamo.mark_static_address(state)  # arguments at fixed addresses: no copy a replay
        return torch.compile(step, mode="reduce-overhead", fullgraph=True)
    compiled = torch.compile(step, fullgraph=True)

    def run(*args):
        with torch._inductor.config.patch(CPU_INDUCTOR):
            return compiled(*args)

    return run


def decode_until_stopped(
    first: torch.Tensor, max_new_tokens: int, stop_ids: list[int], step, noise: RowNoise | None
) -> list[list[int]]:
    """Tokens (rows,) a step from `first` until every row has written a stop token, or
    max_new_tokens; each row cut after its first stop. `step(token, written)` gives the next tokens.

    A row that has stopped goes on decoding (its tokens are dropped), so the batch keeps its shape
    and each row's noise stream advances as it would alone.
    """
    stops = torch.tensor(stop_ids, dtype=torch.long, device=first.device)
    written = [first]
    stopped = torch.isin(first, stops)
    while len(written) < max_new_tokens and not bool(stopped.all()):
        if noise is not None:
            noise.draw()
        written.append(step(written[-1], len(written)))
        stopped |= torch.isin(written[-1], stops)
    return [cut_after_stop(row, stop_ids) for row in torch.stack(written, dim=1).tolist()]


def cut_after_stop(tokens: list[int], stop_ids: list[int]) -> list[int]:
    return next((tokens[: k + 1] for k, t in enumerate(tokens) if t in stop_ids), tokens)
