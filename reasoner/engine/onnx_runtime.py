"""The onnx engine: the token loops on ONNX Runtime, over graphs exported by `onnx_export.py`.

    engine = OnnxEngine(model, SpecialTokens(...), model_dir=DIR)   # exports on first use, then cached
    tokens = engine.image_tokens([context_ids] * len(seeds), seeds, cfg_scale=5.0, temperature=1.0, top_k=0)

Each step runs three graphs: the embedding of the previous token, the decoder step and a head. The
KV cache is preallocated once per call, for the context and every token the call may write
(torch tensors on the device, zeros), and written in place: the decoder step reads it and returns
only the new positions' keys and values, which are copied into it at their positions (a few
hundred bytes a row and layer), so no step allocates or copies the cache (`DecoderStep`).
Every input and output is bound with IO binding to torch
tensors on the same device (CUDA execution provider on a GPU, sharing torch's CUDA stream; CPU
provider elsewhere), so the guidance mix and the seeded pick run in torch on the device with the
very code of the fast engine (`sampling.py`). A reflection's picture is read in torch (the
backend's `picture_features`) and its features go in at the image placeholders.

The graphs hold the weights as they were at export, LoRA layers included (their effective weights).
Following changed weights means exporting again: each token loop first checks whether any weight
or adapter of the model changed since (an optimizer step, `disable_adapter()`, a merge) and, if
so, exports the model anew, keyed on its weights (seconds for the tiny test model, minutes for a
large one). A trainer that changes the weights every step wants the fast engine instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from .fast import decode_until_stopped
from .guidance import SpecialTokens, guidance_rows
from .lora import model_state
from .onnx_export import GRAPHS, ensure_exported, export_dtype
from .padding import run_by_length
from .progress import image_step_done
from .sampling import RowNoise, guided, pick

ORT_TYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64}


class Graph:
    """One ONNX Runtime session, run with IO binding on torch tensors and ONNX Runtime values."""

    def __init__(self, path: Path, device: torch.device):
        import onnxruntime as ort

        self.ort = ort
        self.device_type = "cuda" if device.type == "cuda" else "cpu"
        self.device_id = (device.index or 0) if device.type == "cuda" else 0
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        if device.type != "cuda":
            options.intra_op_num_threads = torch.get_num_threads()  # the threads torch would use
            # torch's ops run between the graphs: ORT's threads must not spin while torch's work
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if device.type == "cuda":
            if hasattr(ort, "preload_dlls"):  # CUDA / cuDNN libraries from the nvidia-* wheels torch installed
                try:
                    ort.preload_dlls()
                except Exception as error:  # noqa: BLE001 - the session below says what is missing
                    print(f"onnx engine: preloading CUDA libraries failed ({error})", file=sys.stderr)
            # torch's stream: torch writes an input, ORT reads it, in order, with no extra sync
            stream = torch.cuda.current_stream(device).cuda_stream
            options_cuda = {
                "device_id": self.device_id,
                "user_compute_stream": str(stream),
                "use_tf32": "0",
            }  # fp32 stays fp32
            providers = [("CUDAExecutionProvider", options_cuda)]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        if device.type == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise RuntimeError(
                f"ONNX Runtime has no working CUDA execution provider here (it has {self.session.get_providers()})"
            )

    def run(self, inputs: dict, outputs: dict) -> list:
        """Run with `inputs` (torch tensors or OrtValues); `outputs` maps a name to the torch tensor
        it is written into, or to None for a value ONNX Runtime allocates. Returns those values."""
        binding = self.session.io_binding()
        for name, value in inputs.items():
            if isinstance(value, torch.Tensor):
                binding.bind_input(
                    name, self.device_type, self.device_id, ORT_TYPES[value.dtype], tuple(value.shape), value.data_ptr()
                )
            else:
                binding.bind_ortvalue_input(name, value)
        for name, tensor in outputs.items():
            if tensor is None:
                binding.bind_output(name, self.device_type, self.device_id)
            else:
                binding.bind_output(
                    name,
                    self.device_type,
                    self.device_id,
                    ORT_TYPES[tensor.dtype],
                    tuple(tensor.shape),
                    tensor.data_ptr(),
                )
        self.session.run_with_iobinding(binding)
        allocated = [name for name, tensor in outputs.items() if tensor is None]
        values = binding.get_outputs()
        names = list(outputs)
        return [values[names.index(name)] for name in allocated]


class OnnxEngine:
    name = "onnx"

    def __init__(
        self,
        janus,
        special: SpecialTokens,
        model_dir: Path | None = None,
        cache_dir: Path | None = None,
        progress: bool = True,
        adapter_dir: Path | None = None,
    ):
        """`model_dir` (and `adapter_dir`, an adapter merged in at load) key the export cache on
        their files; None keys it on the weights."""
        self.janus = janus
        self.special = special
        self.device = janus.lm_head.weight.device
        self.dtype = export_dtype(janus.lm_head.weight.dtype)
        self.progress = progress
        self.model_dir, self.adapter_dir, self.cache_dir = model_dir, adapter_dir, cache_dir
        self.exported_state = None
        self.follow_weights()
        text = janus.config.text_config
        self.layers = text.num_hidden_layers
        self.hidden = text.hidden_size
        self.kv_heads = text.num_key_value_heads
        self.head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.num_image_tokens = janus.config.vision_config.num_image_tokens
        self.image_vocab = janus.config.vq_config.num_embeddings
        self.text_vocab = janus.lm_head.out_features
        self.cache_names = [f"cache_{kind}_{i}" for i in range(self.layers) for kind in ("key", "value")]
        self.new_names = [f"new_{kind}_{i}" for i in range(self.layers) for kind in ("key", "value")]
        if self.progress:
            print(
                f"onnx engine: {self.directory} on {self.graphs['decoder_step'].session.get_providers()[0]}",
                file=sys.stderr,
            )

    def follow_weights(self) -> None:
        """Export (or find in the cache) the graphs of the model's weights as they are now."""
        state = model_state(self.janus)
        if state == self.exported_state:
            return
        changed = self.exported_state is not None
        if changed:  # the directory's files no longer describe the weights: key on the weights
            self.model_dir = self.adapter_dir = None
            print("onnx engine: the model's weights changed since the export; exporting again", file=sys.stderr)
        self.directory = ensure_exported(self.janus, self.model_dir, self.dtype, self.cache_dir, self.adapter_dir)
        self.graphs = {name: Graph(self.directory / f"{name}.onnx", self.device) for name in GRAPHS}
        self.exported_state = state

    # -- graph calls ------------------------------------------------------------------------------

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        out = torch.empty(*ids.shape, self.hidden, dtype=self.dtype, device=self.device)
        self.graphs["text_embed"].run({"input_ids": ids.contiguous()}, {"inputs_embeds": out})
        return out

    def embed_image(self, image_ids: torch.Tensor) -> torch.Tensor:
        out = torch.empty(image_ids.shape[0], 1, self.hidden, dtype=self.dtype, device=self.device)
        self.graphs["image_embed"].run({"image_ids": image_ids[:, None].contiguous()}, {"inputs_embeds": out})
        return out

    def step(self, embeds: torch.Tensor, cache: list[torch.Tensor], length: int) -> torch.Tensor:
        """Decoder over embeds (R, T, hidden) after the `length` positions in `cache`; writes the new
        keys and values into `cache` at length..length+T-1 and returns the last hidden (R, hidden)."""
        rows, new = embeds.shape[0], embeds.shape[1]
        hidden = torch.empty(rows, self.hidden, dtype=self.dtype, device=self.device)
        written = [
            torch.empty(rows, self.kv_heads, new, self.head_dim, dtype=self.dtype, device=self.device) for _ in cache
        ]
        inputs = {
            "inputs_embeds": embeds.contiguous(),
            "past_length": torch.tensor([length], device=self.device),
            **dict(zip(self.cache_names, cache)),
        }
        self.graphs["decoder_step"].run(inputs, {"hidden": hidden, **dict(zip(self.new_names, written))})
        for layer_cache, values in zip(cache, written):
            layer_cache[:, :, length : length + new] = values
        return hidden

    def head(self, kind: str, hidden: torch.Tensor) -> torch.Tensor:
        vocab = self.image_vocab if kind == "image" else self.text_vocab
        logits = torch.empty(hidden.shape[0], vocab, dtype=self.dtype, device=self.device)
        self.graphs[f"{kind}_head"].run({"hidden": hidden}, {"logits": logits})
        return logits

    def empty_cache(self, rows: int, capacity: int) -> list[torch.Tensor]:
        """Zeros, not garbage: masked positions weigh 0 in attention, and 0 x NaN would be NaN."""
        shape = (rows, self.kv_heads, capacity, self.head_dim)
        return [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.cache_names]

    def noise(self, seeds: list[int], vocab: int, temperature: float) -> RowNoise | None:
        if temperature <= 0:
            return None
        return RowNoise(seeds, torch.empty(len(seeds), vocab, device=self.device))

    # -- the two token loops ----------------------------------------------------------------------

    @torch.no_grad()
    def image_tokens(
        self, contexts: list[list[int]], seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> torch.Tensor:
        """(len(seeds), num_image_tokens) image tokens: row k from contexts[k] with seeds[k]. Contexts
        of different lengths run one length a call (the graphs take no padding mask)."""
        batch, count = len(seeds), self.num_image_tokens
        assert len(contexts) == batch, "one context per seed"
        if len({len(c) for c in contexts}) > 1:
            run = lambda rows: self.image_tokens(
                [contexts[i] for i in rows], [seeds[i] for i in rows], cfg_scale, temperature, top_k
            )
            return torch.stack(run_by_length(contexts, run))
        self.follow_weights()
        # 1. [B conditional rows; B unconditional rows], prefilled together
        ids = torch.tensor(guidance_rows(contexts, self.special), device=self.device)
        noise = self.noise(seeds, self.image_vocab, temperature)
        context = ids.shape[1]
        cache = self.empty_cache(2 * batch, context + count - 1)  # the last token is picked, never read
        hidden = self.step(self.embed_text(ids), cache, 0)
        tokens = torch.empty(batch, count, dtype=torch.long, device=self.device)
        # 2. One token a step: pick, embed, decode
        for i in range(count):
            if i > 0:
                hidden = self.step(self.embed_image(torch.cat([tokens[:, i - 1]] * 2)), cache, context + i - 1)
            scores = guided(self.head("image", hidden), cfg_scale)
            tokens[:, i] = pick(scores, noise.draw() if noise else None, temperature, top_k)
            image_step_done(i + 1, count)
        return tokens

    @torch.no_grad()
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
        """New tokens after each context, up to and including its first stop token. Contexts of
        different lengths run one length a call."""
        assert len(contexts) == len(seeds), "one context per seed"
        if len({len(c) for c in contexts}) > 1:
            return run_by_length(
                contexts,
                lambda rows: self.text_tokens(
                    [contexts[i] for i in rows],
                    None if image_features is None else image_features[rows],
                    [seeds[i] for i in rows],
                    temperature,
                    max_new_tokens,
                    stop_ids,
                    top_k,
                ),
            )
        self.follow_weights()
        input_ids = torch.tensor(contexts, device=self.device)
        embeds = self.embed_text(input_ids)
        if image_features is not None:  # one picture per row, read by torch (the backend)
            features = image_features.reshape(-1, self.hidden)
            where = (input_ids == self.janus.config.image_token_id)[..., None]
            embeds = embeds.masked_scatter(where, features.to(self.dtype))
        noise = self.noise(seeds, self.text_vocab, temperature)
        context = input_ids.shape[1]
        cache = self.empty_cache(len(contexts), context + max_new_tokens)
        hidden = self.step(embeds, cache, 0)

        def choose(hidden: torch.Tensor) -> torch.Tensor:
            return pick(guided(self.head("text", hidden), None), noise.draw() if noise else None, temperature, top_k)

        def step(token: torch.Tensor, written: int) -> torch.Tensor:
            # `written` tokens so far; the newest (token) is not in the cache yet
            return choose(self.step(self.embed_text(token[:, None]), cache, context + written - 1))

        return decode_until_stopped(choose(hidden), max_new_tokens, stop_ids, step, None)  # step draws its own noise

    @torch.no_grad()
    def decode_pixels(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, side, side, 3) pixels, roughly in [-1, 1], from the VQ decoder graph."""
        self.follow_weights()
        side = self.janus.config.vq_config.num_patches * 2 ** (len(self.janus.config.vq_config.channel_multiplier) - 1)
        pixels = torch.empty(tokens.shape[0], side, side, 3, dtype=self.dtype, device=self.device)
        self.graphs["vq_decoder"].run(
            {"image_ids": tokens.to(self.device, torch.long).contiguous()}, {"pixels": pixels}
        )
        return pixels
