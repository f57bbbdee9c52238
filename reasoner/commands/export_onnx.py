"""`python -m reasoner export-onnx`: write a model's ONNX graphs to the cache the onnx engine reads.

    python -m reasoner export-onnx --model DIR [--adapter DIR] [--device cpu|cuda] [--out CACHE_DIR]

The graphs and the cache are `reasoner/engine/onnx_export.py`'s; this command only resolves and
loads the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def add_export_command(commands) -> None:
    export = commands.add_parser(
        "export-onnx", help="export a model's decoder step, heads and VQ decoder to ONNX (cached by model hash)"
    )
    export.add_argument(
        "--model",
        default=os.environ.get("REASONER_MODEL", "shapes"),
        help="catalog name (shapes) or a local Hugging Face Janus directory",
    )
    export.add_argument(
        "--adapter", type=Path, default=None, help="a LoRA adapter directory merged into the model, as at load"
    )
    export.add_argument(
        "--out",
        type=Path,
        default=None,
        help="cache directory; the graphs go to OUT/<model hash>/ "
        "(default: $REASONER_ONNX_CACHE or ~/.cache/reasoner-studio/onnx, where --engine onnx looks)",
    )
    export.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="the device the graphs are for: float32 graphs for cpu, float16 for cuda (where models load in bfloat16)",
    )
    export.set_defaults(run=run_export)


def run_export(args) -> int:
    from transformers.utils import logging as transformers_logging

    from ..backends.janus import JanusBackend
    from ..engine.onnx_export import ensure_exported, export_dtype
    from ..models import resolve

    transformers_logging.set_verbosity_error()
    source = resolve(args.model, args.adapter)
    # Loaded on the CPU in float32 whatever the target: the export casts a copy, and the cache key
    # (files + target dtype) is the one the engine computes on the target device.
    backend = JanusBackend.from_pretrained(
        source.directory, device="cpu", dtype=torch.float32, name=source.name, engine="hf", adapter=source.adapter
    )
    dtype = export_dtype(torch.bfloat16 if args.device == "cuda" else torch.float32)
    out = ensure_exported(backend.model, backend.model_dir, dtype, args.out, backend.adapter_dir)
    print(out)
    return 0
