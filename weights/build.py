"""Train the bundled shapes model from scratch: `python -m weights.build shapes [--device cuda]`.

Stages, each saved under --work so that a stopped run resumes where it stopped:
  1. tokenizer: byte-level BPE on the world's prompts, plans and reflections;
  2. vq: the image tokenizer (72 px -> 9 x 9 codes), trained on random scenes;
  3. draw: plans from prompts and pictures from plans, prompts alone and dropped prompts;
  4. reflect: the model's own pictures judged by the shapes checker, plus synthetic slips;
then the model is written to --out in the Hugging Face Janus layout (fp16 safetensors).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import JanusForConditionalGeneration, JanusVQVAE, PreTrainedTokenizerFast
from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil
from transformers.utils import logging as transformers_logging

from reasoner.backends.adapters import add_reflection_adapter, save_reflection_adapter
from reasoner.backends.janus import JanusBackend
from reasoner.backends.janus_template import SHAPES_TEMPLATE, JanusTemplate
from reasoner.models.random_janus import (
    PRESETS,
    generation_config_for,
    image_processor_for,
    janus_config,
    save_model_dir,
)
from reasoner.models.tokenizer import build_tokenizer
from reasoner.shapes import make_suite

from .recipe.data import DrawPool, draw_batches, make_draw_pool
from .recipe.lm import train_lm
from .recipe.reflections import own_reflections, reflect_batches, synthetic_reflections
from .recipe.texts import tokenizer_corpus
from .recipe.vq import random_scene_pictures, train_vq

REFLECTION_ADAPTER = "reflection"  # the adapter's subdirectory in the model directory


@dataclass
class ShapesRecipe:
    seed: int = field(default=0, metadata={"help": "seed of every random choice in the recipe"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    workers: int = field(default=max(1, (os.cpu_count() or 2) - 1), metadata={"help": "processes rendering pictures"})
    vocab_size: int = field(default=512, metadata={"help": "byte-level BPE vocabulary"})
    vq_steps: int = field(default=3000, metadata={"help": "VQ training steps"})
    vq_batch: int = field(default=128, metadata={"help": "pictures per VQ step"})
    vq_lr: float = field(default=2e-3, metadata={"help": "VQ peak learning rate"})
    vq_seconds: float = field(default=0.0, metadata={"help": "if > 0, fit the VQ steps to this many seconds"})
    draw_seconds: float = field(default=0.0, metadata={"help": "if > 0, fit the draw steps to this many seconds"})
    reflect_seconds: float = field(default=0.0, metadata={"help": "if > 0, fit the reflect steps to this many seconds"})
    hours: float = field(
        default=0.0,
        metadata={
            "help": (
                "if > 0, share this many hours of training among the VQ, draw and reflect stages (15/55/30 %%) where"
                " their own --*-seconds are not set; data preparation comes on top"
            )
        },
    )
    vq_pictures: int = field(default=50_000, metadata={"help": "random-scene pictures the VQ trains on"})
    pool_size: int = field(default=200_000, metadata={"help": "prompt/plan/picture examples drawn for LM training"})
    unrelated_share: float = field(
        default=0.2,
        metadata={
            "help": (
                "share of the pool whose plan (a random scene) is drawn under an unrelated prompt, so the picture "
                "must follow the plan"
            )
        },
    )
    draw_steps: int = field(
        default=6000,
        metadata={
            "help": "LM steps on plans and pictures (0 with --start-from: keep its drawing and train reflection only)"
        },
    )
    lm_batch: int = field(default=128, metadata={"help": "sequences per LM step"})
    lm_lr: float = field(default=2e-3, metadata={"help": "LM peak learning rate"})
    own_prompts: int = field(
        default=6000, metadata={"help": "training prompts the model draws for its own reflection data"}
    )
    synthetic_reflections: int = field(
        default=12000, metadata={"help": "synthetic right/slipped pictures for reflection"}
    )
    wrong_plan_share: float = field(
        default=0.25,
        metadata={
            "help": (
                "share of synthetic reflections whose plan itself breaks the prompt (one slip) and is drawn as "
                "planned, so reflection checks pictures against the prompt and not only against the plan"
            )
        },
    )
    reflect_steps: int = field(
        default=2000,
        metadata={
            "help": (
                "LM steps on reflections mixed with plans and pictures (0 with --start-from: keep its reflection "
                "adapter, if it has one, and train none)"
            )
        },
    )
    reflect_lr: float = field(default=1e-3, metadata={"help": "peak learning rate of the reflection stage"})
    reflect_vision_lr_scale: float = field(
        default=1.0,
        metadata={
            "help": (
                "the vision encoder and its aligner, which only reflection uses, train at reflect_lr times this in "
                "the reflection stage (a low reflect_lr then keeps the drawing as it was)"
            )
        },
    )
    reflect_adapter_rank: int = field(
        default=0,
        metadata={
            "help": (
                "if > 0, reflection is learned by a LoRA adapter of this rank on the language model, which only "
                "reflection runs with: the drawing stays exactly as the draw stage (or --start-from) left it, so "
                "needs --draw-share 0; 0 trains every weight"
            )
        },
    )
    draw_share: float = field(
        default=0.5,
        metadata={
            "help": (
                "share of each reflection-stage batch given to plans and pictures from the draw pool, so the model "
                "keeps them"
            )
        },
    )
    sample_cfg: float = field(default=3.0, metadata={"help": "guidance scale when the model draws its own pictures"})
    sample_temperature: float = field(
        default=1.0, metadata={"help": "image temperature when the model draws its own pictures"}
    )
    start_from: str = field(
        default="",
        metadata={
            "help": (
                "a model directory (an earlier run's output) whose tokenizer, VQ and weights the draw stage "
                "continues from; lets a run span several short GPU leases"
            )
        },
    )
    sample_batch: int = field(default=256, metadata={"help": "prompts per batch when sampling the model"})

    def __post_init__(self):
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, not {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda asked for, but torch sees no CUDA device")
        if self.hours < 0:
            raise ValueError(f"hours must be >= 0, not {self.hours}")
        for stage, share in (("vq", 0.15), ("draw", 0.55), ("reflect", 0.30)):
            if self.hours > 0 and getattr(self, f"{stage}_seconds") <= 0:
                setattr(self, f"{stage}_seconds", self.hours * 3600 * share)
        for name in ("unrelated_share", "draw_share", "wrong_plan_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), not {getattr(self, name)}")
        if self.reflect_adapter_rank and self.draw_share:
            raise ValueError(
                "with --reflect-adapter-rank the drawing is frozen in the reflection stage: set --draw-share 0"
            )
        for stage in ("draw", "reflect"):
            if getattr(self, f"{stage}_steps") == 0 and not self.start_from:
                raise ValueError(f"{stage}_steps 0 keeps the {stage} stage of --start-from, and none is given")
        for f in fields(self):
            value = getattr(self, f.name)
            may_be_zero = f.name in ("seed", "reflect_adapter_rank") or (
                f.name in ("draw_steps", "reflect_steps") and self.start_from
            )
            if (
                isinstance(value, (int, float))
                and not may_be_zero
                and not f.name.endswith(("seconds", "share", "hours"))
                and value <= 0
            ):
                raise ValueError(f"{f.name} must be positive, not {value}")


def log(message: str) -> None:
    print(f"[build {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Build:
    """What the stages share: the recipe, its work directory (one checkpoint a stage, so a stopped
    run resumes), the record of what each stage took, and --start-from's model (None: from scratch)."""

    recipe: ShapesRecipe
    work: Path
    taken: dict
    start: JanusForConditionalGeneration | None

    @property
    def draw_dir(self) -> Path:
        return self.work / "draw"

    @property
    def reflect_dir(self) -> Path:
        return self.work / "reflect"

    def done(self, stage_dir: Path) -> bool:
        return (stage_dir / "config.json").is_file()

    def record(self, key: str, value) -> None:
        self.taken[key] = value
        (self.work / "taken.json").write_text(json.dumps(self.taken, indent=2))


def build_shapes(recipe: ShapesRecipe, work: Path, out: Path) -> None:
    build = begin(recipe, work)
    tokenizer = tokenizer_stage(build)
    config = janus_config(PRESETS["shapes"], len(tokenizer), tokenizer.convert_tokens_to_ids(tokenizer.image_token))
    vq = vq_stage(build, config)
    model, image_processor = new_model(config, vq, tokenizer)
    backend = JanusBackend(model, tokenizer, image_processor, SHAPES_TEMPLATE, name="shapes")
    pool = draw_stage(build, backend, vq)
    model, template = reflect_stage(build, backend, vq, pool)
    ship(build, model, tokenizer, image_processor, template, out)


def begin(recipe: ShapesRecipe, work: Path) -> Build:
    """The work directory with this recipe, what earlier runs of it took, and the start model."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    taken = json.loads((work / "taken.json").read_text()) if (work / "taken.json").is_file() else {}
    torch.manual_seed(recipe.seed)
    start = (
        JanusForConditionalGeneration.from_pretrained(recipe.start_from, dtype=torch.float32)
        if recipe.start_from
        else None
    )
    return Build(recipe, work, taken, start)


def tokenizer_stage(build: Build) -> PreTrainedTokenizerFast:
    """1. The tokenizer: --start-from's, or a byte-level BPE on the world's texts."""
    recipe, directory = build.recipe, build.work / "tokenizer"
    if not (directory / "tokenizer.json").is_file():
        log("stage 1/4: tokenizer")
        if build.start is not None:
            PreTrainedTokenizerFast.from_pretrained(recipe.start_from).save_pretrained(directory)
        else:
            build_tokenizer(tokenizer_corpus(recipe.seed), recipe.vocab_size).save_pretrained(directory)
    return PreTrainedTokenizerFast.from_pretrained(directory)


def vq_stage(build: Build, config) -> JanusVQVAE:
    """2. The VQ image tokenizer: as saved, --start-from's, or trained on random scenes."""
    recipe, vq_path = build.recipe, build.work / "vq.safetensors"
    vq = JanusVQVAE(config.vq_config)
    if vq_path.is_file():
        vq.load_state_dict(load_file(vq_path))
    elif build.start is not None:
        vq.load_state_dict(build.start.model.vqmodel.state_dict())
        save_file({k: v.contiguous() for k, v in vq.state_dict().items()}, vq_path)
    else:
        log(f"stage 2/4: VQ, {recipe.vq_steps} steps on {recipe.vq_pictures} pictures")
        pictures = random_scene_pictures(recipe.vq_pictures, recipe.seed, recipe.workers)
        build.record(
            "vq_steps",
            train_vq(
                vq,
                pictures,
                recipe.vq_steps,
                recipe.vq_batch,
                recipe.vq_lr,
                recipe.seed,
                recipe.device,
                recipe.vq_seconds or None,
            ),
        )
        save_file({k: v.contiguous() for k, v in vq.state_dict().items()}, vq_path)
    return vq.to(recipe.device).eval()


def new_model(config, vq: JanusVQVAE, tokenizer) -> tuple[JanusForConditionalGeneration, JanusImageProcessorPil]:
    """A fresh model around the trained VQ, with the generation config and image processor to match."""
    model = JanusForConditionalGeneration(config)
    model.model.vqmodel.load_state_dict(vq.state_dict())
    model.generation_config = generation_config_for(tokenizer)
    return model, image_processor_for(PRESETS["shapes"].image_size)


def draw_stage(build: Build, backend: JanusBackend, vq: JanusVQVAE) -> DrawPool | None:
    """3. Plans and pictures: the saved drawing, --start-from's kept, or trained on the example pool.
    Returns the pool when a later stage mixes drawing in (None when nothing needs it)."""
    recipe, model = build.recipe, backend.model
    if build.done(build.draw_dir):
        model.load_state_dict(JanusForConditionalGeneration.from_pretrained(build.draw_dir).state_dict())
    elif build.start is not None:
        model.load_state_dict(build.start.state_dict())
    trains_drawing = not build.done(build.draw_dir) and recipe.draw_steps > 0
    pool = None
    if trains_drawing or (recipe.draw_share > 0 and not build.done(build.reflect_dir)):
        log(f"drawing the example pool: {recipe.pool_size} pictures")
        pool = DrawPool(
            make_draw_pool(
                backend, vq, recipe.pool_size, recipe.seed, recipe.device, recipe.workers, recipe.unrelated_share
            ),
            backend,
            recipe.device,
        )
    if not build.done(build.draw_dir):
        if trains_drawing:
            log(f"stage 3/4: plans and pictures, {recipe.draw_steps} steps")
            draw_batch = draw_batches(pool, recipe.lm_batch, recipe.seed)
            build.record(
                "draw_steps",
                train_lm(
                    model,
                    draw_batch,
                    recipe.draw_steps,
                    recipe.lm_lr,
                    backend.tokenizer.pad_token_id,
                    recipe.device,
                    "draw",
                    seconds=recipe.draw_seconds or None,
                ),
            )
        else:
            log("stage 3/4: kept as --start-from drew")
        save_model_dir(build.draw_dir, model, backend.tokenizer, backend.image_processor, SHAPES_TEMPLATE)
    model.to(recipe.device).eval()
    backend.device = model.device
    return pool


def reflect_stage(
    build: Build, backend: JanusBackend, vq: JanusVQVAE, pool: DrawPool | None
) -> tuple[JanusForConditionalGeneration, JanusTemplate]:
    """4. Reflection: the saved stage, --start-from's kept, or trained on the model's own pictures.
    Returns the model as it draws and the template that says whether a reflection adapter goes with it."""
    recipe = build.recipe
    started = JanusTemplate.load(recipe.start_from).reflect_adapter if recipe.start_from else ""
    start_adapter = Path(recipe.start_from, started) if started else None  # --start-from's reflection adapter
    if build.done(build.reflect_dir):
        backend.model.load_state_dict(JanusForConditionalGeneration.from_pretrained(build.reflect_dir).state_dict())
        return backend.model, JanusTemplate.load(build.reflect_dir)  # as the stage that ran wrote it
    if recipe.reflect_steps == 0:
        return backend.model, keep_start_reflection(build, backend, start_adapter)
    return train_reflection(build, backend, vq, pool, start_adapter)


def keep_start_reflection(build: Build, backend: JanusBackend, start_adapter: Path | None) -> JanusTemplate:
    """--start-from's reflection kept: its adapter (trained on the start's drawing) travels as it is."""
    log("stage 4/4: kept as --start-from reflected")
    template = replace(SHAPES_TEMPLATE, reflect_adapter=REFLECTION_ADAPTER if start_adapter else "")
    save_model_dir(build.reflect_dir, backend.model, backend.tokenizer, backend.image_processor, template)
    if start_adapter:
        shutil.copytree(start_adapter, build.reflect_dir / REFLECTION_ADAPTER)
    return template


def train_reflection(
    build: Build, backend: JanusBackend, vq: JanusVQVAE, pool: DrawPool | None, start_adapter: Path | None
) -> tuple[JanusForConditionalGeneration, JanusTemplate]:
    """Reflections on the model's own pictures and synthetic slips, by every weight or by an adapter."""
    recipe, model = build.recipe, backend.model
    template = replace(SHAPES_TEMPLATE, reflect_adapter=REFLECTION_ADAPTER if recipe.reflect_adapter_rank else "")
    prompts = [p.prompt for p in make_suite("train", recipe.own_prompts, recipe.seed + 2)]
    log(f"stage 4/4: sampling the model on {len(prompts)} training prompts")
    own, pass_rate = own_reflections(
        backend, prompts, recipe.seed, recipe.sample_cfg, recipe.sample_temperature, recipe.sample_batch
    )
    log(f"own pictures right: {pass_rate:.3f}; adding {recipe.synthetic_reflections} synthetic ones")
    examples = own + synthetic_reflections(
        backend, vq, recipe.synthetic_reflections, recipe.seed, recipe.device, recipe.wrong_plan_share
    )
    build.record("own_pass_rate", round(pass_rate, 4))
    batches = reflect_batches(backend, examples, pool, recipe.lm_batch, recipe.seed, recipe.draw_share)
    adapted = None
    if recipe.reflect_adapter_rank:  # continues --start-from's adapter, where it has one
        adapted = add_reflection_adapter(model, recipe.reflect_adapter_rank, recipe.seed, start_adapter)
    steps = train_lm(
        model,
        batches,
        recipe.reflect_steps,
        recipe.reflect_lr,
        backend.tokenizer.pad_token_id,
        recipe.device,
        "reflect",
        warmup=100,
        seconds=recipe.reflect_seconds or None,
        vision_lr_scale=recipe.reflect_vision_lr_scale,
        reads=SHAPES_TEMPLATE.reflect_reads,
    )
    build.record("reflect_steps", steps)
    if adapted is not None:  # the adapter apart, the model as it drew before this stage
        save_reflection_adapter(adapted, build.reflect_dir / REFLECTION_ADAPTER)
        model = adapted.unload().requires_grad_(True)
    save_model_dir(build.reflect_dir, model, backend.tokenizer, backend.image_processor, template)
    return model, template


def ship(
    build: Build, model: JanusForConditionalGeneration, tokenizer, image_processor, template: JanusTemplate, out: Path
) -> None:
    """5. The model in --out: fp16 weights (a quarter of the float32 size), its adapter, the recipe."""
    model.to("cpu", torch.float16)
    save_model_dir(out, model, tokenizer, image_processor, template)
    shutil.rmtree(out / REFLECTION_ADAPTER, ignore_errors=True)  # an older build's
    if template.reflect_adapter:
        shutil.copytree(build.reflect_dir / REFLECTION_ADAPTER, out / REFLECTION_ADAPTER)
    (out / "recipe.json").write_text(
        json.dumps({"recipe": asdict(build.recipe), "taken": build.taken}, indent=2) + "\n"
    )
    log(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["shapes-diffusion"]:  # the think-then-generate model: its own recipe and options
        from .recipe.diffusion import main as diffusion_main

        return diffusion_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m weights.build", description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=["shapes", "shapes-diffusion"])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "shapes")
    parser.add_argument("--work", type=Path, default=Path(".build/shapes"), help="checkpoints, to resume a stopped run")
    for f in fields(ShapesRecipe):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=f.metadata["help"]
        )
    args = parser.parse_args(argv)
    transformers_logging.set_verbosity_error()
    recipe = ShapesRecipe(**{f.name: getattr(args, f.name) for f in fields(ShapesRecipe)})
    build_shapes(recipe, args.work, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
