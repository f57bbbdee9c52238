"""Dev-suite accuracy during a run: the shapes checker on held-out prompts, one picture each.

Three modes on the same prompts and seeds: `direct` (no plan), `think` (greedy plans) and
`think_sampled` (plans sampled at temperature 1, what GRPO samples and what varied candidates
use). The full figures with more prompts come from `python -m reasoner eval`.
"""

from __future__ import annotations

from reasoner.backends.janus import JanusBackend
from reasoner.batched import draw_pictures, write_plans
from reasoner.shapes import make_suite, score_image

EVAL_SEED = 0


def dev_accuracy(backend: JanusBackend, prompts: int, cfg_scale: float, image_temperature: float = 1.0) -> dict:
    suite = make_suite("dev", prompts, EVAL_SEED)
    texts = [p.prompt for p in suite]
    seeds = [EVAL_SEED + i for i in range(len(texts))]
    plans = {
        "direct": [None] * len(texts),
        "think": write_plans(backend, texts, seeds, 0.0),
        "think_sampled": write_plans(backend, texts, seeds, 1.0),
    }
    figures = {}
    for mode, mode_plans in plans.items():
        pictures = draw_pictures(backend, texts, mode_plans, seeds, cfg_scale, image_temperature)
        scores = [score_image(picture, prompt).passed for picture, prompt in zip(pictures, suite)]
        scored = [s for s in scores if s is not None]
        figures[mode] = sum(scored) / max(1, len(scored))
    return figures
