"""How the studio's own examples draw with its default settings, scored by the shapes checker.

    python benchmarks/studio_examples.py --model shapes-grpo [--adapter DIR] [--seeds 0,100,200,300]

For every example on the studio's page (ui/layout.py EXAMPLES) and every seed: Think then Draw
(the greedy plan, 4 candidates, as the page's first click does) and Draw with varied plans (each
candidate its own plan sampled at the studio's temperature), both through `ReasonerPipeline` with
`DrawSettings()` defaults. Prints the right counts per example and in all, and writes them as JSON
(--json). It is how a change to the default model is checked against what a new user meets first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reasoner.pipeline import ReasonerPipeline  # noqa: E402
from reasoner.records import DrawSettings  # noqa: E402
from reasoner.shapes import score_image  # noqa: E402
from ui.layout import EXAMPLES  # noqa: E402


def check(pipeline: ReasonerPipeline, seeds: list[int]) -> dict:
    results = {}
    for prompt in EXAMPLES:
        counts = {"greedy": 0, "varied": 0, "pictures": 0}
        for seed in seeds:
            plan = pipeline.think(prompt, seed=seed)
            greedy = pipeline.draw(prompt, plan, DrawSettings(seed=seed))
            varied = pipeline.draw(prompt, plan, DrawSettings(seed=seed, vary_plans=True))
            counts["greedy"] += sum(bool(score_image(c.image, prompt).passed) for c in greedy)
            counts["varied"] += sum(bool(score_image(c.image, prompt).passed) for c in varied)
            counts["pictures"] += len(greedy)
        results[prompt] = counts
        n = counts["pictures"]
        print(f"{prompt:48s} greedy {counts['greedy']:3d}/{n}  varied {counts['varied']:3d}/{n}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-grpo")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--seeds", default="0,100,200,300")
    parser.add_argument("--engine", default="fast")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    pipeline = ReasonerPipeline.from_pretrained(args.model, engine=args.engine, adapter=args.adapter)
    results = check(pipeline, seeds)
    total = {k: sum(r[k] for r in results.values()) for k in ("greedy", "varied", "pictures")}
    print(f"all: greedy {total['greedy']}/{total['pictures']}, varied {total['varied']}/{total['pictures']}")
    if args.json:
        record = {"model": args.model, "adapter": args.adapter, "seeds": seeds, "examples": results, "total": total}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
