"""Export a Janus model's token-loop pieces to ONNX, cached by a hash of the model.

    python -m reasoner export-onnx --model DIR [--device cpu|cuda] [--out CACHE_DIR]

(the command is `reasoner/commands/export_onnx.py`) writes CACHE_DIR/<hash>/ with six graphs
(torch.onnx.export, the torch.export-based exporter, opset 18), each a small module over the model's own weights:

| file                  | inputs -> outputs                                                          |
| --------------------- | -------------------------------------------------------------------------- |
| decoder_step.onnx     | inputs_embeds (R, T, H), past_length (1,) = P, cache_key_i / cache_value_i |
|                       | (R, kv, capacity, d) for each layer i, valid below P -> hidden (R, H) at   |
|                       | the last position, new_key_i / new_value_i (R, kv, T, d): the caller      |
|                       | writes them into its cache at P. Positions P..P+T-1, causal.              |
| text_embed.onnx       | input_ids (R, T) -> inputs_embeds (R, T, H)                                |
| image_embed.onnx      | image_ids (R, 1) -> inputs_embeds (R, 1, H) (generation embedding+aligner) |
| text_head.onnx        | hidden (R, H) -> logits (R, text vocab)                                    |
| image_head.onnx       | hidden (R, H) -> logits (R, image vocab) (the generation head)             |
| vq_decoder.onnx       | image_ids (B, N) -> pixels (B, side, side, 3), roughly in [-1, 1]          |

The cache key hashes the model's files (config.json and *.safetensors, and an adapter merged in at
load time: `adapter_dir`) when it was loaded from a directory, else its weights, together with the
dtype and this file's EXPORT_VERSION, so a changed model or exporter never reuses a stale graph. A
model with peft LoRA layers injected (the finetune trainer's) is keyed on its weights, adapters and
their enabled / merged state whatever its directory, and exported with each layer's effective
weight (`lora.without_lora`): the graphs hold the weights as they were at export.

float32 graphs for a float32 model; float16 for a bfloat16 one, as models load on CUDA (ONNX
Runtime's CUDA kernels cover float16 more widely than bfloat16).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .fast_weights import Weights
from .llama import DecoderShape, rope_tables, run_layers
from .lora import lora_layers, without_lora

EXPORT_VERSION = 3  # 2: the decoder step is the fast engine's layers; 3: it reads a preallocated cache
OPSET = 18
GRAPHS = ("decoder_step", "text_embed", "image_embed", "text_head", "image_head", "vq_decoder")


def default_cache_dir() -> Path:
    return Path(os.environ.get("REASONER_ONNX_CACHE", Path.home() / ".cache" / "reasoner-studio" / "onnx"))


def export_dtype(model_dtype: torch.dtype) -> torch.dtype:
    """float32 graphs for a float32 model; float16 for a bfloat16 / float16 one (a GPU model)."""
    return torch.float32 if model_dtype == torch.float32 else torch.float16


# -- the modules that are exported ----------------------------------------------------------------


class DecoderStep(nn.Module):
    """The Llama decoder over T new positions after `past_length` cached ones, reading a cache the
    caller preallocated and returning only the new positions' keys and values.

    The cache (R, kv, capacity, d) a layer is written once per position by the caller, in place
    (onnx_runtime.py); this graph only reads it: attention scores over the whole capacity, with
    the positions at or past `past_length` masked out, beside the scores over the T new keys
    (causal), one softmax over both. Nothing grows or is copied per step: with the cache an input
    that came back one position longer (concatenated) every step, each step copied the whole cache
    of every layer. Grouped-query heads are grouped on the query side, so the cache is never
    repeated per head. The layers are `llama.run_layers`, the fast engine's, on the modules' own
    weights; only the attention over the cache is this graph's.
    """

    def __init__(self, janus: nn.Module, max_positions: int):
        super().__init__()
        language_model = janus.model.language_model
        self.language_model = language_model
        self.weights = Weights(janus, fused_copies=False)  # the modules' own matrices, q/k/v side by side
        self.shape = DecoderShape.of(language_model.config)
        dtype = language_model.embed_tokens.weight.dtype
        cos, sin = rope_tables(language_model.rotary_emb, max_positions, dtype)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, inputs_embeds: torch.Tensor, past_length: torch.Tensor, *cache: torch.Tensor):
        x = inputs_embeds
        rows, length = x.shape[0], x.shape[1]
        s = self.shape
        group = s.heads // s.kv_heads  # query heads per kv head
        capacity = cache[0].shape[2]
        positions = torch.arange(length, device=x.device) + past_length  # (T,)
        cached = (torch.arange(capacity, device=x.device) < past_length).view(1, 1, 1, capacity)
        steps = torch.arange(length, device=x.device)
        causal = (steps[None, :] <= steps[:, None]).repeat(group, 1).view(1, 1, group * length, length)
        new = []

        def attend(i: int, layer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            new.extend([k, v])  # (R, kv, T, d): the caller writes them into its cache
            # head h reads kv head h // group: (R, heads, T, d) -> (R, kv, group * T, d)
            q = q.reshape(rows, s.kv_heads, group * length, s.head_dim)
            old_scores = (q @ cache[2 * i].transpose(-1, -2)).masked_fill(~cached, float("-inf"))
            new_scores = (q @ k.transpose(-1, -2)).masked_fill(~causal, float("-inf"))
            # attention written out (MatMul, Softmax): every ONNX Runtime provider runs it
            weights = (torch.cat([old_scores, new_scores], dim=-1) * layer.self_attn.scaling).softmax(-1)
            out = weights[..., :capacity] @ cache[2 * i + 1] + weights[..., capacity:] @ v
            return out.reshape(rows, s.heads, length, s.head_dim)

        hidden = run_layers(
            self.weights, self.language_model, s, x, self.rope_cos[positions], self.rope_sin[positions], attend
        )
        return (hidden, *new)


class TextEmbed(nn.Module):
    def __init__(self, janus):
        super().__init__()
        self.embed = janus.get_input_embeddings()

    def forward(self, input_ids):
        return self.embed(input_ids)


class ImageEmbed(nn.Module):
    def __init__(self, janus):
        super().__init__()
        self.embed, self.aligner = janus.model.generation_embeddings, janus.model.generation_aligner

    def forward(self, image_ids):
        return self.aligner(self.embed(image_ids))


class Head(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, hidden):
        return self.head(hidden)


class VQDecoder(nn.Module):
    def __init__(self, janus):
        super().__init__()
        self.janus = janus

    def forward(self, image_ids):
        return self.janus.decode_image_tokens(image_ids)


# -- the cache ------------------------------------------------------------------------------------


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def model_key(janus: nn.Module, model_dir: Path | None, dtype: torch.dtype, adapter_dir: Path | None = None) -> str:
    """A hash of the model files and of the adapter merged into it at load (or, for a model built in
    code or with LoRA layers injected, of its weights and adapters), dtype and exporter."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"reasoner-onnx v{EXPORT_VERSION} opset {OPSET} {dtype}".encode())
    files = []
    if model_dir:
        files = sorted(Path(model_dir).glob("*.safetensors")) + [Path(model_dir) / "config.json"]
        files += [Path(adapter_dir) / name for name in ADAPTER_FILES] if adapter_dir else []
    layers = lora_layers(janus)  # injected after loading: the files no longer describe the weights
    if files and all(f.is_file() for f in files) and not layers:
        for path in files:
            digest.update(path.name.encode())
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 24):
                    digest.update(chunk)
    else:
        for name, layer in layers:  # which adapters count, beside their weights (in the state dict below)
            flags = (layer.disable_adapters, layer.merged_adapters, layer.active_adapters, layer.scaling)
            digest.update(f"{name} {flags}".encode())
        digest.update(json.dumps(janus.config.to_dict(), sort_keys=True, default=str).encode())
        for name, tensor in janus.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def exported_dir(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / key


def is_complete(directory: Path) -> bool:
    return (directory / "export.json").is_file() and all((directory / f"{name}.onnx").is_file() for name in GRAPHS)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_exported(
    janus: nn.Module,
    model_dir: Path | None,
    dtype: torch.dtype,
    cache_dir: Path | None = None,
    adapter_dir: Path | None = None,
) -> Path:
    """The directory with this model's graphs in `dtype`, exporting them on first use."""
    key = model_key(janus, model_dir, dtype, adapter_dir)
    directory = exported_dir(cache_dir or default_cache_dir(), key)
    if is_complete(directory):
        return directory
    log(f"onnx engine: exporting the model to {directory} (once per model and dtype)")
    export_all(janus, directory, dtype)
    return directory


@torch.no_grad()
def export_all(janus: nn.Module, directory: Path, dtype: torch.dtype) -> None:
    """Write the six graphs into `directory` (through a temporary directory, renamed when whole)."""
    from torch.export import Dim

    config = janus.config
    shape = DecoderShape.of(config.text_config)
    hidden = config.text_config.hidden_size
    max_positions = max(config.text_config.max_position_embeddings, 2 * config.vision_config.num_image_tokens + 512)
    janus = without_lora(janus)  # LoRA layers as plain linears of their effective weights (a copy)
    # Export from the CPU in the target dtype; a copy unless the model already is that.
    weight = janus.lm_head.weight
    if weight.device.type != "cpu" or weight.dtype != dtype:
        janus = copy.deepcopy(janus).to("cpu", dtype)
    directory.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=directory.name + ".", dir=directory.parent))
    rows, length, capacity = (
        Dim("rows", min=1, max=4096),
        Dim("length", min=1, max=max_positions),
        Dim("capacity", min=1, max=max_positions),
    )
    # example sizes: distinct and > 1, so the exporter keeps every size symbolic
    r, t, c = 3, 5, 11
    embeds = torch.randn(r, t, hidden, dtype=dtype)
    caches = [torch.randn(r, shape.kv_heads, c, shape.head_dim, dtype=dtype) for _ in range(2 * shape.layers)]
    names = [f"cache_{kind}_{i}" for i in range(shape.layers) for kind in ("key", "value")]
    outputs = ["hidden"] + [f"new_{kind}_{i}" for i in range(shape.layers) for kind in ("key", "value")]
    graphs = [
        (
            "decoder_step",
            DecoderStep(janus, max_positions),
            (embeds, torch.tensor([4]), *caches),
            ["inputs_embeds", "past_length", *names],
            outputs,
            ({0: rows, 1: length}, None, tuple({0: rows, 2: capacity} for _ in caches)),
        ),
        (
            "text_embed",
            TextEmbed(janus),
            (torch.zeros(r, t, dtype=torch.long),),
            ["input_ids"],
            ["inputs_embeds"],
            ({0: rows, 1: length},),
        ),
        (
            "image_embed",
            ImageEmbed(janus),
            (torch.zeros(r, 1, dtype=torch.long),),
            ["image_ids"],
            ["inputs_embeds"],
            ({0: rows},),
        ),
        (
            "text_head",
            Head(janus.lm_head),
            (torch.randn(r, hidden, dtype=dtype),),
            ["hidden"],
            ["logits"],
            ({0: rows},),
        ),
        (
            "image_head",
            Head(janus.model.generation_head),
            (torch.randn(r, hidden, dtype=dtype),),
            ["hidden"],
            ["logits"],
            ({0: rows},),
        ),
        (
            "vq_decoder",
            VQDecoder(janus),
            (torch.zeros(2, config.vision_config.num_image_tokens, dtype=torch.long),),
            ["image_ids"],
            ["pixels"],
            ({0: Dim("images", min=1, max=4096)},),
        ),
    ]
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    for name, module, args, input_names, output_names, dynamic in graphs:
        log(f"onnx engine: exporting {name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                args,
                temporary / f"{name}.onnx",
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic,
                opset_version=OPSET,
                dynamo=True,
                external_data=True,
                verbose=False,
            )
    (temporary / "export.json").write_text(
        json.dumps(
            {
                "export_version": EXPORT_VERSION,
                "opset": OPSET,
                "dtype": str(dtype).removeprefix("torch."),
                "layers": shape.layers,
                "kv_heads": shape.kv_heads,
                "head_dim": shape.head_dim,
                "hidden": hidden,
                "graphs": list(GRAPHS),
                "torch": torch.__version__,
            },
            indent=2,
        )
        + "\n"
    )
    if directory.exists():
        shutil.rmtree(directory)
    temporary.rename(directory)
