"""Time the reference engine (transformers' generate) on a random model of a given shape.

    python benchmarks/hf_baseline.py --preset janus-pro-1b --device cuda --batches 1,4,16

This is the baseline the fast and ONNX engines are measured against (`python -m reasoner bench`
will take over once they exist). Random weights: speed only, no quality.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reasoner.backends.janus import JanusBackend  # noqa: E402
from weights.random_janus import build_random_janus  # noqa: E402


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    with torch.device(args.device):
        model, tokenizer, image_processor, template = build_random_janus(args.preset, dtype=dtype)
    backend = JanusBackend(model, tokenizer, image_processor, template, name=f"random {args.preset}")
    prompt = "a red circle left of a blue square"
    context = backend.draw_context_ids(prompt, "red circle @ top-left; blue square @ top-center")
    rows = []
    backend.generate_image_tokens(context, [0], 5.0, 1.0, 0)  # warm-up
    for batch in [int(b) for b in args.batches.split(",")]:
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        synchronize(args.device)
        started = time.perf_counter()
        backend.generate_image_tokens(context, list(range(batch)), 5.0, 1.0, 0)
        synchronize(args.device)
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None
        rows.append(
            {
                "model": args.preset,
                "engine": "hf",
                "batch": batch,
                "seconds": round(seconds, 3),
                "images_per_s": round(batch / seconds, 3),
                "ms_per_step": round(1000 * seconds / backend.num_image_tokens, 2),
                "peak_mem_mb": None if peak is None else round(peak),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    synchronize(args.device)
    started = time.perf_counter()
    backend.write_plan(prompt, 0, 0.0)
    synchronize(args.device)
    print(
        json.dumps(
            {
                "model": args.preset,
                "think_seconds_max_tokens": round(time.perf_counter() - started, 3),
                "max_plan_tokens": template.max_plan_tokens,
            }
        )
    )
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
