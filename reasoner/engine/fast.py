"""The fast engine: Janus's Llama decoder with a static KV cache, in the shape of gpt-fast.

    engine = FastEngine(model, SpecialTokens(bos=..., boi=..., pad=...))
    tokens = engine.image_tokens([context_ids] * 3, seeds=[0, 1, 2], cfg_scale=5.0, temperature=1.0, top_k=0)
    plans = engine.text_tokens(
        [ids_a, ids_b], None, seeds=[0, 1], temperature=0.0, max_new_tokens=96, stop_ids=[eos, boi]
    )

Row k of a call comes from contexts[k] and seeds[k]. The contexts of one call may differ in length:
they are left-padded to the longest, each row with its own rotary positions and its padding keys
masked, in prefill and in every step (`padding.py`), so each row gives what it gives alone; a call
whose contexts have one length has no padding and takes the unmasked path.

It reads the weights of a loaded `JanusForConditionalGeneration`: the Llama layers, final norm and
rotary frequencies of `model.model.language_model`, `lm_head` for text, `generation_embeddings` +
`generation_aligner` (the embedding of a drawn image token) and `generation_head` for image
tokens; a reflection's picture comes as the features the backend read it into. On a GPU it uses
them in place; on a CPU through packed copies that follow the model's weights, peft LoRA layers
injected in place included (`fast_weights.Weights`); a layer's arithmetic is `llama.py`'s, shared
with the ONNX export. What it does that transformers' `generate` does not:

1. One KV cache preallocated per row count, (rows, kv_heads, max_len, head_dim) per layer, written
   in place at the step's position (`fast_decoder.KVCache`), reused from call to call.
2. `prefill` runs the context once; the decode-one-token step (`decode_image_token`,
   `decode_text_token`) runs one position from the previous token's embedding to the choice of
   the next token, with no Python in between.
3. Guidance is one doubled batch, [B conditional rows; B unconditional rows]; only the distinct
   contexts are prefilled (2 rows, not 2B, when the candidates share a prompt; contexts of one
   length share their unconditional one) and copied into the cache rows. The unconditional row of
   a context is padded as the context is.
4. Sampling on the device (`sampling.py`): each candidate's noise drawn from its own generator
   outside the step, the pick (mix, temperature, top-k, argmax) inside it.
5. On CUDA, the decode step runs under `torch.compile(mode="reduce-overhead")`: CUDA graphs
   replay the whole step. Attention reads the cache up to the position rounded up to `BUCKET`
   (not to the cache's end); that length is marked dynamic, so one compile serves all lengths and
   one CUDA graph is recorded per bucket. Weights are used in their loaded dtype (bf16 on GPU);
   guidance and sampling run on float32 scores. Elsewhere attention reads the cache exactly up to
   the position, unmasked but for padding. Each row's first real slot (`FastDecoder.start`) is a
   step argument at a fixed address, like the position.
6. On a CPU the steps are compiled ahead of time by default (`fast_aot.py`, `REASONER_FAST_COMPILE=aot`):
   AOTInductor packages, one per kind and model shape for every row count and length, built once
   in a child process and kept on disk, loaded in the background; until a package is loaded (and
   for top-k > 0) the eager step runs. Why not torch.compile (`REASONER_FAST_COMPILE=1`, see
   `compiled_step`): it compiles every row count in every process (10-60 s each) and was slower
   per step (benchmarks/RESULTS.md, "The default engine on a CPU"). `REASONER_FAST_COMPILE=0`:
   eager only.
"""

from __future__ import annotations

import os
import sys
import threading

import torch
from torch import nn

from .fast_decoder import FastDecoder
from .fast_weights import Weights
from .guidance import SpecialTokens, guidance_rows
from .padding import left_pad
from .progress import image_step_done
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


class FastEngine:
    """Image and text tokens through `FastDecoder`s, one per row count: compiled on CUDA, compiled
    ahead of time on a CPU (`ahead_of_time`; `compile=False` is eager only)."""

    name = "fast"

    def __init__(
        self,
        janus: nn.Module,
        special: SpecialTokens,
        compile: bool | None = None,
        fused_copies: bool | None = None,
        progress: bool = False,
        ahead_of_time: bool | None = None,
    ):
        self.janus = janus
        self.special = special
        self.device = janus.lm_head.weight.device
        cpu = self.device.type == "cpu"
        # REASONER_FAST_COMPILE: 1 torch.compile (the CUDA default), 0 eager, aot the packages of
        # fast_aot.py (the CPU default, unless REASONER_FAST_AOT=0: then eager)
        cpu_default = "0" if os.environ.get("REASONER_FAST_AOT") == "0" else "aot"
        mode = os.environ.get("REASONER_FAST_COMPILE") or (cpu_default if cpu else "1")
        if compile is None:
            compile = mode == "1"
            ahead_of_time = mode == "aot" if ahead_of_time is None else ahead_of_time
        self.compile = compile
        fused_copies = cpu if fused_copies is None else fused_copies
        self.ahead_of_time = bool(ahead_of_time) and not compile and cpu and fused_copies
        # Attention reads the cache exactly up to the position, unmasked, except under CUDA graphs,
        # which need a few fixed lengths (one graph each); inductor on a CPU takes the length as dynamic.
        self.exact_reads = not (compile and self.device.type == "cuda")
        self.progress = progress
        self.num_image_tokens = janus.config.vision_config.num_image_tokens
        self.image_vocab = janus.config.vq_config.num_embeddings
        self.text_vocab = janus.lm_head.out_features
        # On a CPU the engine multiplies by fused, transposed copies of the weights (see `Weights`);
        # compiled steps take plain tensors (no oneDNN layout)
        self.weights = Weights(janus, fused_copies, onednn=not (self.compile or self.ahead_of_time))
        self.generation = 0  # counts the weights' refreshes: a compiled-ahead step is bound to one
        self.lock = threading.Lock()  # decoders hold caches: one token loop at a time
        self.decoders: dict[tuple[str, int], FastDecoder] = {}
        self.steps: dict[tuple[str, int], tuple] = {}
        if self.compile:
            # one compiled entry per (decoder, greedy or sampled, top_k): more than dynamo's default 8
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        self.aot = None  # the steps compiled ahead of time, built and loaded in the background
        if self.ahead_of_time:
            from .fast_aot import AheadOfTimeSteps

            self.aot = AheadOfTimeSteps(janus, self.weights)  # says what it does on stderr

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

    def ahead_of_time_step(self, kind: str, decoder: FastDecoder, padded: bool, sample: bool, top_k: int):
        """The compiled-ahead step for this token loop, set up, or None (not ready, top-k, eager engine)."""
        step = None if self.aot is None or top_k else self.aot.step(kind, self.generation)
        if step is not None:
            if not padded:
                decoder.start.zero_()  # the package always reads the starts
            decoder.greedy.fill_(not sample)
        return step

    def decode(
        self,
        kind: str,
        decoder: FastDecoder,
        tokens: torch.Tensor,
        position: int,
        padded: bool,
        sample: bool,
        top_k: int,
        aot=None,
    ) -> torch.Tensor:
        """One compiled (or eager) decode step at slot `position`; returns the next tokens (a fresh
        tensor). `padded`: the rows' padding is in `decoder.start`. `aot`: the compiled-ahead step
        (`ahead_of_time_step`) to run; its inputs must be contiguous, as `tokens` (a step's output) is."""
        if aot is not None:
            decoder.input_pos.fill_(position)
            return aot(
                tokens,
                decoder.input_pos,
                decoder.positions[: position + 1],
                decoder.start,
                decoder.noise,
                decoder.cfg_scale,
                decoder.temperature,
                decoder.greedy,
                decoder.rope_cos,
                decoder.rope_sin,
                *decoder.cache_tensors,
            )
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
            decoder.start if padded else None,
            decoder.noise,
            decoder.cfg_scale,
            decoder.temperature,
            sample,
            top_k,
        )
        return next_tokens.clone()  # clone: CUDA graph outputs are reused

    def refresh_weights(self) -> None:
        """Follow the model's weights; a CPU-compiled step holds them as constants, so it is dropped."""
        if not self.weights.refresh():
            return
        self.generation += 1  # compiled-ahead steps bind the new tensors on their next use
        if self.compile and self.device.type == "cpu":
            self.decoders.clear()
            self.steps.clear()

    def set_sampling(
        self, decoder: FastDecoder, seeds: list[int], cfg_scale: float | None, temperature: float
    ) -> RowNoise | None:
        decoder.cfg_scale.fill_(1.0 if cfg_scale is None else cfg_scale)
        decoder.temperature.fill_(temperature if temperature > 0 else 1.0)
        return RowNoise(seeds, decoder.noise) if temperature > 0 else None

    def set_padding(
        self, decoder: FastDecoder, starts: list[int], cache_rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Each prefilled context's padding (returned, for prefill); each cache row's goes into
        `decoder.start`, which the steps read (cache row j holds context cache_rows[j])."""
        start = torch.tensor(starts, device=self.device)
        decoder.start.copy_(start if cache_rows is None else start.index_select(0, cache_rows))
        return start

    def log(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)

    # -- the two token loops ----------------------------------------------------------------------

    def image_tokens(
        self, contexts: list[list[int]], seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> torch.Tensor:
        """(len(seeds), num_image_tokens) image tokens: row k from contexts[k] (of any length) with
        seeds[k], guided by its prompt-dropped context."""
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
        """New tokens after each context (of any length), up to and including its first stop token (at most
        max_new_tokens). `image_features`: one picture's (tokens, hidden) per context, for reflections."""
        with self.lock, torch.no_grad():
            return self._text_tokens(contexts, image_features, seeds, temperature, max_new_tokens, stop_ids, top_k)

    def _image_tokens(
        self, contexts: list[list[int]], seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> torch.Tensor:
        batch, count = len(seeds), self.num_image_tokens
        assert len(contexts) == batch, "one context per seed"
        # 1. The distinct conditional and unconditional contexts, left-padded to the longest, and a
        # decoder for 2B rows
        self.refresh_weights()
        distinct, index = distinct_rows(guidance_rows(contexts, self.special))
        padded_ids, starts = left_pad(distinct, self.special.pad)
        length, padded = len(padded_ids[0]), any(starts)
        ids = torch.tensor(padded_ids, device=self.device)
        cache_rows = torch.tensor(index, device=self.device)
        decoder = self.decoder("image", 2 * batch, length + count)
        start = self.set_padding(decoder, starts, cache_rows) if padded else None
        noise = self.set_sampling(decoder, seeds, cfg_scale, temperature)
        sample = noise is not None
        aot = self.ahead_of_time_step("image", decoder, padded, sample, top_k)
        # 2. Prefill the distinct contexts once; the first token comes from the last context slot
        hidden = decoder.prefill(self.janus.get_input_embeddings()(ids), cache_rows, start)  # (distinct, hidden)
        logits = self.weights.image_logits(hidden).index_select(0, cache_rows)  # (2B, vocab)
        tokens = torch.empty(batch, count, dtype=torch.long, device=self.device)
        previous = pick(guided(logits, cfg_scale), noise.draw() if sample else None, temperature, top_k)
        tokens[:, 0] = previous
        image_step_done(1, count)
        # 3. Decode the rest, one position a step
        for i in range(1, count):
            if sample:
                noise.draw()
            previous = self.decode("image", decoder, previous, length + i - 1, padded, sample, top_k, aot)
            tokens[:, i] = previous
            image_step_done(i + 1, count)
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
        rows = len(contexts)
        assert len(seeds) == rows, "one context per seed"
        padded_ids, starts = left_pad(contexts, self.special.pad)
        length, padded = len(padded_ids[0]), any(starts)
        input_ids = torch.tensor(padded_ids, device=self.device)
        # 1. Embeddings of the contexts; a reflection's picture goes in at the image-token positions
        self.refresh_weights()
        x = self.janus.get_input_embeddings()(input_ids)  # (rows, T, hidden)
        if image_features is not None:  # row-major: row k's positions take picture k's features
            features = image_features.reshape(-1, x.shape[-1])
            where = (input_ids == self.janus.config.image_token_id)[..., None]
            x = x.masked_scatter(where, features.to(x.dtype))
        # 2. Prefill, then decode every row until each has written a stop token
        decoder = self.decoder("text", rows, length + max_new_tokens)
        start = self.set_padding(decoder, starts) if padded else None
        noise = self.set_sampling(decoder, seeds, None, temperature)
        sample = noise is not None
        logits = self.weights.text_logits(decoder.prefill(x, None, start))  # (rows, vocab)
        first = pick(guided(logits, None), noise.draw() if sample else None, temperature, top_k)
        aot = self.ahead_of_time_step("text", decoder, padded, sample, top_k)

        def step(token: torch.Tensor, written: int) -> torch.Tensor:
            return self.decode("text", decoder, token, length + written - 1, padded, sample, top_k, aot)

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
        for state in (decoder.input_pos, decoder.start, decoder.noise, decoder.cfg_scale, decoder.temperature):
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
