"""`python -m reasoner eval`: how often pictures satisfy held-out prompts, per shapes-world category
(docs/shapes-world.md).

Modes, each on the same dev-split prompts and seeds (`--split train` for choosing settings):
- direct: draw from the prompt alone;
- think: write a plan (greedily), then draw from it;
- think-sampled: the same with plans sampled at temperature 1, each picture its own plan (what
  GRPO samples and what varied candidates use);
- reflect: look at each think picture, redraw where the reflection revises (seed + 16), and look
  again at each redraw, up to `--reflect-rounds` looks (as the pipeline's `reflect_rounds`);
- follow: draw from random valid plans a person might write (1-4 objects), and check the
  picture matches the plan exactly.
One picture per prompt, on the chosen engine (`--engine`). A think-then-generate model
(`shapes-diffusion`) runs every mode but reflect, which it does not have. A table goes to stdout, the figures
(with the model and engine) to a JSON file.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .backends.janus import JanusBackend
from .batched import draw_pictures, write_plans, write_reflections
from .engine import DEFAULT_ENGINE, ENGINES
from .pipeline import ReasonerPipeline, revised_plan_in
from .records import MAX_REFLECT_ROUNDS, Plan, Reflection, check_reflect_rounds, redraw_seed
from .reflection_loop import last_picture, run_reflection_rounds
from .shapes import (
    CATEGORIES,
    SPLITS,
    SuitePrompt,
    accuracy_by_category,
    detect,
    format_plan,
    make_suite,
    random_scene,
    reading_in,
    scene_reading,
    score_image,
)

MODES = ("direct", "think", "think-sampled", "reflect", "follow")


@dataclass(frozen=True)
class EvalSettings:
    prompts: int = 400  # held-out prompts, balanced over the 8 categories
    seed: int = 0
    cfg_scale: float = 5.0
    temperature: float = 1.0
    batch_size: int = 64
    reflect_rounds: int = 1  # reflect mode: looks at a picture and its redraws, at most
    pictures: int = 1  # pictures per prompt, each with its own seed (and, think-sampled, its own plan)
    split: str = "dev"  # dev: held out; train: for choosing settings without looking at held-out prompts


def progress(message: str) -> None:
    print(f"[eval {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class FailureCase:
    """A think failure as the checker and the reflection saw it, to tell its kind."""

    prompt: str
    category: str
    plan: str  # what the first picture was drawn from
    seen: str  # the scene the detector reads in the first picture
    reflection: str  # the first look
    final_seen: str  # the scene in the final picture
    redraws: int
    fixed: bool


@dataclass
class ReflectFigures:
    """What the reflection rounds did, besides the final pictures' accuracy."""

    rounds: int  # looks at a picture and its redraws, at most
    revised: int  # pictures revised in the first round, as the two figures below
    revised_wrong: int  # revisions of pictures that were wrong
    verdict_accuracy: float  # the verdict alone: a revision where the picture is wrong, none where right
    reading_exact: float | None  # `reading_exact`
    redraws: int  # over every round
    think_failures: int
    fixed: int
    fixed_share: float
    broken: int
    broken_share: float
    failure_cases: list[FailureCase] = field(default_factory=list)


@dataclass
class EvalResults:
    """An eval run; `to_json` is the JSON file's layout (benchmarks/eval_*.json)."""

    settings: EvalSettings
    model: str
    engine: str
    adapter: str | None = None  # the LoRA adapter merged into the model at load, if any
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # mode -> overall and per category
    reflect: ReflectFigures | None = None
    examples: list[dict[str, str]] | None = None  # the first prompts' plans, when the model thought

    def to_json(self) -> dict:
        modes = {mode: dict(figures) for mode, figures in self.accuracy.items()}
        if self.reflect is not None:
            modes["reflect"].update(asdict(self.reflect))
        out = {
            "settings": asdict(self.settings),
            "model": self.model,
            "adapter": self.adapter,
            "engine": self.engine,
            "modes": modes,
        }
        if self.examples is not None:
            out["examples"] = self.examples
        return out


def evaluate(backend: JanusBackend, modes: list[str], settings: EvalSettings) -> EvalResults:
    suite = [p for p in make_suite(settings.split, settings.prompts, settings.seed) for _ in range(settings.pictures)]
    prompts = [p.prompt for p in suite]
    seeds = [settings.seed + i for i in range(len(suite))]
    draw = lambda plans, seeds_: draw_pictures(
        backend, prompts, plans, seeds_, settings.cfg_scale, settings.temperature, settings.batch_size
    )  # noqa: E731
    pipeline = ReasonerPipeline(backend)
    # the text the model reads for a plan, exactly as the pipeline gives it (a bare plan gets its reasoning)
    as_read = pipeline.model_text
    results = EvalResults(settings, backend.info.name, backend.engine, adapter=backend.info.adapter)

    if "direct" in modes:
        progress(f"direct: {len(prompts)} pictures")
        results.accuracy["direct"] = accuracy(suite, draw([None] * len(prompts), seeds))
    if "think" in modes or "reflect" in modes:
        progress(f"think: {len(prompts)} plans and pictures")
        plans = [
            as_read(Plan(text, "model")) for text in write_plans(backend, prompts, seeds, 0.0, settings.batch_size)
        ]
        pictures = draw(plans, seeds)
        results.accuracy["think"] = accuracy(suite, pictures)
        results.examples = [{"prompt": p, "plan": plan} for p, plan in list(zip(prompts, plans))[:8]]
    if "think-sampled" in modes:
        progress(f"think-sampled: {len(prompts)} sampled plans and pictures")
        sampled = [
            as_read(Plan(text, "model")) for text in write_plans(backend, prompts, seeds, 1.0, settings.batch_size)
        ]
        results.accuracy["think-sampled"] = accuracy(suite, draw(sampled, seeds))
    if "reflect" in modes:
        final, results.reflect = reflect_mode(pipeline, suite, plans, pictures, seeds, settings)
        results.accuracy["reflect"] = accuracy(suite, final)
    if "follow" in modes:
        rng = random.Random(settings.seed + 1)
        scenes = [random_scene(rng, 1, 4) for _ in prompts]
        progress(f"follow: {len(scenes)} pictures from random plans")
        pictures = draw_pictures(
            backend,
            prompts,
            [as_read(Plan(format_plan(s), "person")) for s in scenes],
            seeds,
            settings.cfg_scale,
            settings.temperature,
            settings.batch_size,
        )
        matches = [detect(p).scene == s for p, s in zip(pictures, scenes)]
        results.accuracy["follow"] = {"overall": sum(matches) / len(matches)}
    return results


def reflect_mode(
    pipeline: ReasonerPipeline, suite: list[SuitePrompt], plans: list[str], pictures, seeds, settings: EvalSettings
) -> tuple[list, ReflectFigures]:
    """The final pictures of the reflection rounds on the think pictures, and what the rounds did."""
    prompts = [p.prompt for p in suite]
    final, reflections, revised, redraws = reflect_and_redraw(pipeline, prompts, plans, pictures, seeds, settings)
    redo = [i for i, plan in enumerate(revised) if plan is not None]
    first_scores = [score_image(p, s) for p, s in zip(pictures, suite)]
    final_scores = [score_image(p, s) for p, s in zip(final, suite)]
    before, after = [s.passed for s in first_scores], [s.passed for s in final_scores]
    failures = [i for i, ok in enumerate(before) if not ok]
    successes = [i for i, ok in enumerate(before) if ok]
    figures = ReflectFigures(
        rounds=settings.reflect_rounds,
        revised=len(redo),
        revised_wrong=sum(not before[i] for i in redo),
        verdict_accuracy=sum((plan is not None) != ok for plan, ok in zip(revised, before)) / len(before),
        reading_exact=reading_exact(reflections, pictures),
        redraws=sum(redraws),
        think_failures=len(failures),
        fixed=sum(after[i] for i in failures),
        fixed_share=sum(after[i] for i in failures) / max(1, len(failures)),
        broken=sum(not after[i] for i in successes),
        broken_share=sum(not after[i] for i in successes) / max(1, len(successes)),
        failure_cases=[
            FailureCase(
                prompt=prompts[i],
                category=suite[i].category,
                plan=plans[i],
                seen=scene_reading(first_scores[i].scene),
                reflection=reflections[i],
                final_seen=scene_reading(final_scores[i].scene),
                redraws=redraws[i],
                fixed=after[i],
            )
            for i in failures
        ],
    )
    return final, figures


def reflect_and_redraw(pipeline: ReasonerPipeline, prompts, plans: list[str], pictures, seeds, settings: EvalSettings):
    """The pipeline's reflection rounds (`reflection_loop.py`) for every prompt at once: reflect on
    each picture, redraw where the reflection revises (from `plan_to_redraw`, seed
    `redraw_seed(seed, round)`), and look again at the redraws until none is revised or the rounds
    are spent. `plans` are the texts the pictures were drawn from. Returns the final pictures, the
    first round's reflections and revised plans (None: judged right), and how many redraws each
    prompt got."""
    backend = pipeline.backend

    def look(rows: list[int], plans_now: list[str], pictures_now: list, round_number: int) -> list[Reflection]:
        progress(f"reflect round {round_number}: {len(rows)} reflections")
        # each look with the seed of the picture it looks at, as in the pipeline
        looked_at = [redraw_seed(seeds[i], round_number - 1) for i in rows]
        texts = write_reflections(
            backend,
            [prompts[i] for i in rows],
            [plans_now[i] for i in rows],
            [pictures_now[i] for i in rows],
            looked_at,
            0.0,
            settings.batch_size,
        )
        return [Reflection(text, revised_plan_in(text)) for text in texts]

    def redraw(rows: list[int], reflections: list[Reflection], plans_now: list[str], round_number: int) -> list[tuple]:
        progress(f"reflect round {round_number}: redrawing {len(rows)} revised pictures")
        redo_plans = [
            pipeline.model_text(pipeline.plan_to_redraw(Plan(plans_now[i]), reflection))
            for i, reflection in zip(rows, reflections)
        ]
        redrawn = draw_pictures(
            backend,
            [prompts[i] for i in rows],
            redo_plans,
            [redraw_seed(seeds[i], round_number) for i in rows],
            settings.cfg_scale,
            settings.temperature,
            settings.batch_size,
        )
        return list(zip(redo_plans, redrawn))

    chains = run_reflection_rounds(plans, pictures, settings.reflect_rounds, look, redraw)
    final = [last_picture(picture, chain) for picture, chain in zip(pictures, chains)]
    first = [chain[0].reflection for chain in chains]
    redraws = [sum(look_.redrawn is not None for look_ in chain) for chain in chains]
    return final, [r.text for r in first], [r.revised_plan for r in first], redraws


def reading_exact(reflections: list[str], pictures) -> float | None:
    """Share of reflections whose reading (the shapes model's "I see <scene>; ..." form) is exactly
    the scene the detector finds in the picture; None when no reflection is in that form."""
    readings = [(reading_in(text), picture) for text, picture in zip(reflections, pictures)]
    if all(reading is None for reading, _ in readings):
        return None
    exact = sum(reading == scene_reading(detect(picture).scene) for reading, picture in readings if reading is not None)
    return exact / len(reflections)


def accuracy(suite: list[SuitePrompt], pictures) -> dict:
    return accuracy_by_category([score_image(p, s) for p, s in zip(pictures, suite)])


def table(results: EvalResults) -> str:
    columns = ["overall", *CATEGORIES]
    lines = [f"{'mode':<8} " + " ".join(f"{c[:11]:>11}" for c in columns)]
    for mode, figures in results.accuracy.items():
        lines.append(f"{mode:<8} " + " ".join(f"{figures[c]:>11.3f}" if c in figures else f"{'':>11}" for c in columns))
    if results.reflect is not None:
        r = results.reflect
        lines.append(
            f"reflect ({r.rounds} round{'s' * (r.rounds > 1)} at most, {r.redraws} redraws): fixed "
            f"{r.fixed}/{r.think_failures} think failures ({r.fixed_share:.2f}), broke {r.broken} successes "
            f"({r.broken_share:.3f}); "
            f"first round: revised {r.revised} pictures, {r.revised_wrong} of them wrong; verdict right for "
            f"{r.verdict_accuracy:.3f}"
            + ("" if r.reading_exact is None else f"; read the picture exactly for {r.reading_exact:.3f}")
        )
    return "\n".join(lines)


def run_eval(args) -> int:
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        from .errors import InvalidSettingError

        raise InvalidSettingError(f"unknown eval modes {unknown}; choose from {', '.join(MODES)}")
    if args.pictures < 1:
        from .errors import InvalidSettingError

        raise InvalidSettingError(f"--pictures {args.pictures}: at least 1 picture per prompt")
    # the backend its directory's kind names (Janus or think-then-generate), as the pipeline picks it
    backend = ReasonerPipeline.from_pretrained(
        args.model, args.device, engine=args.engine, adapter=args.adapter
    ).backend
    if "reflect" in modes and not getattr(backend, "supports_reflection", True):
        from .backends.think_generate import NoReflectionError

        raise NoReflectionError(
            f"{backend.info.name} is a think-then-generate model: it does not reflect (drop reflect from --modes)"
        )
    cfg = args.cfg if args.cfg is not None else backend.info.default_cfg_scale
    settings = EvalSettings(
        prompts=args.prompts,
        seed=args.seed,
        cfg_scale=cfg,
        temperature=args.temperature,
        reflect_rounds=check_reflect_rounds(args.reflect_rounds),
        pictures=args.pictures,
        split=args.split,
    )
    results = evaluate(backend, modes, settings)
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results.to_json(), indent=2) + "\n")
    progress(f"wrote {args.json}")
    return 0


def add_eval_command(commands) -> None:
    parser = commands.add_parser("eval", help="accuracy per category on held-out shapes prompts")
    parser.add_argument("--suite", choices=["shapes"], default="shapes")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="dev",
        help="dev: the held-out prompts; train: prompts the models trained on, to choose settings "
        "(guidance, steps) without tuning to the held-out ones",
    )
    parser.add_argument(
        "--model", default="shapes", help="catalog name, a local Hugging Face Janus directory or a think-generate one"
    )
    parser.add_argument(
        "--adapter", type=Path, default=None, help="a LoRA adapter directory (peft's format) merged into the model"
    )
    parser.add_argument("--modes", default="direct,think,reflect,follow", help=f"comma-separated: {', '.join(MODES)}")
    parser.add_argument("--prompts", type=int, default=EvalSettings.prompts, help="held-out prompts")
    parser.add_argument("--seed", type=int, default=EvalSettings.seed)
    parser.add_argument("--pictures", type=int, default=EvalSettings.pictures, help="pictures per prompt")
    parser.add_argument("--cfg", type=float, default=None, help="guidance scale; default: the model's own")
    parser.add_argument("--temperature", type=float, default=EvalSettings.temperature)
    parser.add_argument(
        "--reflect-rounds",
        type=int,
        default=EvalSettings.reflect_rounds,
        help=f"reflect mode: looks at a picture and its redraws, at most (1-{MAX_REFLECT_ROUNDS})",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help="decode engine")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/eval-shapes.json"))
    parser.set_defaults(run=run_eval)
