"""The command line: `python -m reasoner generate ...` (see README and docs/architecture.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from .engine import DEFAULT_ENGINE, ENGINES, check_engine
from .errors import InvalidPromptError, OutputError, ReasonerError
from .models.catalog import catalog_names
from .records import MAX_REFLECT_ROUNDS, DrawSettings, Turn, check_reflect_rounds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reasoner", description="Reasoning text-to-image: think, draw, reflect."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser(
        "generate", help="think, draw (and reflect) for prompts; write PNGs and results.jsonl"
    )
    source = generate.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one prompt")
    source.add_argument("--prompts", type=Path, help="a text file with one prompt a line")
    generate.add_argument(
        "--model",
        default=os.environ.get("REASONER_MODEL", "shapes"),
        help=f"catalog name ({', '.join(catalog_names())}) or a local Hugging Face Janus directory",
    )
    generate.add_argument(
        "--adapter",
        type=Path,
        default=None,
        help="a LoRA adapter directory (peft's format: adapter_config.json, adapter_model.safetensors) "
        "merged into the model's weights at load",
    )
    generate.add_argument("--n", type=int, default=4, help="candidates per prompt (1-16)")
    generate.add_argument(
        "--seed", type=int, default=0, help="seed of the plan and of candidate 0; candidate k uses seed + k"
    )
    plan = generate.add_mutually_exclusive_group()
    plan.add_argument("--no-think", action="store_true", help="draw from the prompt alone, without a plan")
    plan.add_argument("--plan", help="draw from this plan instead of the model's own")
    plan.add_argument(
        "--vary-plans",
        action="store_true",
        help="each candidate thinks its own plan (sampled at --plan-temperature, 1 if that is 0; its seed "
        "the candidate's) and draws from it; results.jsonl gives each candidate's plan",
    )
    generate.add_argument(
        "--reflect",
        action="store_true",
        help="let the model reflect on each candidate and redraw it from a revised plan",
    )
    generate.add_argument(
        "--reflect-rounds",
        type=int,
        default=1,
        help=f"with --reflect: look again at each redraw, at most this many looks a candidate (1-{MAX_REFLECT_ROUNDS})",
    )
    generate.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help="decode engine")
    generate.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    generate.add_argument(
        "--cfg",
        type=float,
        default=None,
        help="classifier-free guidance scale (1-20); default: the model's own (reasoner.json)",
    )
    generate.add_argument(
        "--temperature", type=float, default=DrawSettings.temperature, help="image-token temperature; 0 is greedy"
    )
    generate.add_argument(
        "--top-k", type=int, default=DrawSettings.top_k, help="sample image tokens among the k best; 0 is off"
    )
    generate.add_argument(
        "--plan-temperature",
        type=float,
        default=DrawSettings.plan_temperature,
        help="plan and reflection temperature; 0 is greedy",
    )
    generate.add_argument("--out", type=Path, required=True, help="output directory")
    generate.set_defaults(run=run_generate)

    from .eval import add_eval_command

    add_eval_command(commands)

    from .commands.bench import add_bench_command
    from .commands.export_onnx import add_export_command

    add_bench_command(commands)
    add_export_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ReasonerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def read_prompts(args) -> list[str]:
    if args.prompt is not None:
        return [args.prompt]
    try:
        lines = args.prompts.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidPromptError(f"prompts file {args.prompts} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidPromptError(f"prompts file {args.prompts} cannot be read ({error})") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise InvalidPromptError(f"prompts file {args.prompts} holds no prompt")
    return prompts


def prepare_out_dir(out: Path) -> Path:
    """Make `out` and `out/images`, and prove they can be written, before any model work."""
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
        # An earlier run's results must not look like this run's while this one is under way.
        (out / "results.jsonl").unlink(missing_ok=True)
    except OSError as error:
        raise OutputError(f"output directory {out} cannot be written ({error.strerror or error})") from None
    return out / "results.jsonl.partial"


def run_generate(args) -> int:
    from transformers.utils import logging as transformers_logging

    from .pipeline import ReasonerPipeline
    from .pngmeta import save_png

    # 1. Check everything that needs no model, so a bad call fails in a second.
    prompts = read_prompts(args)
    settings = DrawSettings(
        n=args.n,
        seed=args.seed,
        cfg_scale=args.cfg if args.cfg is not None else DrawSettings.cfg_scale,
        temperature=args.temperature,
        top_k=args.top_k,
        plan_temperature=args.plan_temperature,
        vary_plans=args.vary_plans,
    )
    check_engine(args.engine)
    check_reflect_rounds(args.reflect_rounds)
    partial_path = prepare_out_dir(args.out)

    # 2. Load the model, then check prompts and plan against it.
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    pipeline = ReasonerPipeline.from_pretrained(
        args.model, device=args.device, engine=args.engine, adapter=args.adapter
    )
    prompts = [pipeline.check_prompt(prompt) for prompt in prompts]
    plan = pipeline.check_plan(args.plan) if args.plan is not None else None
    if args.cfg is None:
        settings = replace(settings, cfg_scale=pipeline.info.default_cfg_scale)
    print(f"model: {pipeline.info.summary()}", file=sys.stderr)

    # 3. Generate, writing rows to a .partial file renamed only once everything is written.
    try:
        with open(partial_path, "w", encoding="utf-8") as results:
            for index, prompt in enumerate(prompts):
                started = time.perf_counter()
                turn = pipeline(
                    prompt,
                    settings,
                    think=not args.no_think,
                    plan=plan,
                    reflect=args.reflect,
                    reflect_rounds=args.reflect_rounds,
                )
                seconds = round(time.perf_counter() - started, 3)
                for row in turn_rows(turn, index, args, pipeline.info.name, save_png):
                    results.write(json.dumps({**row, "seconds": seconds}) + "\n")
                print(
                    f"[{index + 1}/{len(prompts)}] {prompt!r}: {len(turn.candidates)} images in {seconds:.1f} s",
                    file=sys.stderr,
                )
        partial_path.replace(args.out / "results.jsonl")
    except OSError as error:
        raise OutputError(
            f"writing to {args.out} failed ({error.strerror or error}); results.jsonl was not written"
        ) from None
    print(f"wrote {args.out / 'results.jsonl'}", file=sys.stderr)
    return 0


def turn_rows(turn: Turn, prompt_index: int, args, model_name: str, save_png) -> list[dict]:
    """Save a turn's images, each with its recipe, and return its results.jsonl rows."""
    plan_text = turn.plan.text if turn.plan is not None else None
    base_recipe = {
        "prompt": turn.prompt,
        "model": model_name,
        "engine": args.engine,
        "cfg_scale": turn.settings.cfg_scale,
        "temperature": turn.settings.temperature,
        "top_k": turn.settings.top_k,
        "plan_temperature": turn.settings.plan_temperature,
    }
    rows = []
    for k, candidate in enumerate(turn.candidates):
        if candidate.plan is not None:  # a varied candidate: drawn from its own plan
            plan_text = candidate.plan.text
        name = f"images/p{prompt_index:04d}-c{candidate.index:02d}.png"
        save_png(candidate.image, args.out / name, {**base_recipe, "seed": candidate.seed, "plan": plan_text})
        row = {
            "prompt_index": prompt_index,
            "prompt": turn.prompt,
            "candidate": candidate.index,
            "seed": candidate.seed,
            "plan": plan_text,
            "reflection": None,
            "image": name,
            "model": model_name,
            "engine": args.engine,
        }
        if turn.rounds:
            final = turn.final_round(k)
            row["reflection"] = final.reflection.text
            row["reflections"] = [r.reflection.text for r in turn.rounds[k]]  # every look, in order
            row["first_image"] = name
            if final.redrawn is not None:
                refined_name = f"images/p{prompt_index:04d}-c{candidate.index:02d}-refined.png"
                save_png(
                    final.redrawn.image,
                    args.out / refined_name,
                    {
                        **base_recipe,
                        "seed": final.redrawn.seed,
                        "plan": final.plan.text,
                        "reflection": final.reflection.text,
                    },
                )
                row.update(
                    image=refined_name,
                    plan=final.plan.text,
                    seed=final.redrawn.seed,
                    first_plan=plan_text,
                    first_seed=candidate.seed,
                )
        rows.append(row)
    return rows
