"""Peak memory of one BiCoT-GRPO optimizer step, measured through the trainer's own code.

    python -m finetune.memory --preset janus-pro-1b --layers 1,2,4 --json benchmarks/grpo_memory_cpu.json
    python -m finetune.memory --preset janus-pro-7b --layers 1,2 --configurations lora-gc --json ...
    python -m finetune.memory --preset janus-pro-7b --layers 30 --device cuda --json ...   # a GPU

Each (layers, configuration) runs in a fresh subprocess: a random model of the preset's shape with
`layers` decoder layers (everything else at the preset's size) is saved once per layer count, a
`GRPOTrainer` is built over it, and `GRPOTrainer.optimise` runs one optimizer step on a group of
synthetic trajectories (one prompt, G trajectories with a plan of `plan_tokens` random text ids
and `num_image_tokens` random image codes: sampling real rollouts of a Janus-Pro-sized model takes
too long on a CPU; the values of the ids do not change the memory). The step is the reference pass
(beta > 0), the teacher-forced scoring forward (conditional and unconditional rows in one batch
when cfg_scale != 1), the GRPO loss, backward, gradient clipping and AdamW's step.

Reported per run, overall and per phase of the step (reference, forward, backward, clip,
optimizer):
- `rss`: the process's resident memory. `peak_process_mb` is getrusage's ru_maxrss (the whole
  life of the process); the phase peaks come from VmHWM after resetting it (/proc/self/clear_refs).
- `tensor`: bytes of tensor storages alive on the device, counted op by op by a dispatch mode
  (`TensorMemory`): what an ideal allocator would need, without the runtime and allocator slack.
- `cuda` (on a GPU): torch.cuda.max_memory_allocated / max_memory_reserved per phase.

The parent fits peak = a + b * layers per configuration and projects to the preset's real layer
count (`summarise`). The `rollouts` configuration instead measures `roll_out` (plans and pictures
sampled on the trainer's engine) with a LoRA policy.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import weakref
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import is_fake
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

MB = 2**20
PROMPT = "a red circle above a blue square"
# Trainer settings per configuration (everything else: GRPOConfig's defaults or the flags below).
CONFIGURATIONS = {
    "lora-gc": {"lora_rank": 16, "gradient_checkpointing": True},
    "lora": {"lora_rank": 16, "gradient_checkpointing": False},
    "full": {"lora_rank": 0, "gradient_checkpointing": False},
    "full-gc": {"lora_rank": 0, "gradient_checkpointing": True},
    "rollouts": {"lora_rank": 16, "gradient_checkpointing": True},  # roll_out, not the step
}
DEFAULT_CONFIGURATIONS = ("lora-gc", "lora", "full")
PHASES = ("batch", "reference", "forward", "backward", "clip", "optimizer", "rollouts")


# -- models of a preset's shape with fewer layers ---------------------------------------------------


def build_shaped_janus(preset: str, layers: int, seed: int = 0):
    """`build_random_janus(preset, seed)` with `layers` decoder layers and every other size the preset's."""
    from transformers import JanusForConditionalGeneration

    from reasoner.backends.janus_template import JANUS_PRO_TEMPLATE, SHAPES_TEMPLATE
    from reasoner.models.random_janus import (
        PRESETS,
        build_tokenizer,
        generation_config_for,
        image_processor_for,
        janus_config,
        tokenizer_corpus,
    )

    shape = replace(PRESETS[preset], text_layers=layers)
    tokenizer = build_tokenizer(tokenizer_corpus(), vocab_size=shape.text_vocab if preset == "tiny" else 512)
    vocab_size = len(tokenizer) if preset == "tiny" else shape.text_vocab
    config = janus_config(shape, vocab_size, tokenizer.convert_tokens_to_ids(tokenizer.image_token))
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config).eval()
    model.generation_config = generation_config_for(tokenizer)
    template = SHAPES_TEMPLATE if shape.image_size == 72 else JANUS_PRO_TEMPLATE
    return model, tokenizer, image_processor_for(shape.image_size), template


def save_shaped_janus(out_dir: Path, preset: str, layers: int, seed: int = 0) -> Path:
    from reasoner.models.random_janus import save_model_dir

    model, tokenizer, image_processor, template = build_shaped_janus(preset, layers, seed)
    save_model_dir(Path(out_dir), model, tokenizer, image_processor, template)
    return Path(out_dir)


# -- counting memory -------------------------------------------------------------------------------


class TensorMemory(TorchDispatchMode):
    """Bytes of tensor storages alive on one device type, followed op by op.

    `adopt_alive` counts every tensor alive when called (weights, optimizer state); every op's
    outputs are counted when made and dropped when their storage is freed (a weakref finaliser).
    Views share their base's storage and count once. Not seen: scratch memory inside a kernel.
    """

    def __init__(self, device_type: str):
        super().__init__()
        self.device_type = device_type
        self.live: dict[int, int] = {}  # id(storage) -> bytes
        self.current = 0
        self.peak = 0

    def track(self, tensor) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type != self.device_type:
            return
        # fake tensors left alive by an earlier trace (torch.export, dynamo) have no real storage,
        # and their sizes may be symbolic; they are not memory this process holds
        if is_fake(tensor):
            return
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse and other storage-less tensors
            return
        key = id(storage)
        if key in self.live:
            return
        size = storage.nbytes()
        if not isinstance(size, int):
            return
        self.live[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self.free, key)

    def free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def adopt_alive(self) -> None:
        gc.collect()
        with warnings.catch_warnings():  # isinstance on deprecated torch aliases in gc's list warns
            warnings.simplefilter("ignore", FutureWarning)
            for thing in gc.get_objects():
                if isinstance(thing, torch.Tensor):
                    self.track(thing)
        self.peak = max(self.peak, self.current)

    def adopt(self, tensors) -> None:
        """Count `tensors` as alive (a trainer's weights and optimizer state): unlike `adopt_alive`,
        nothing another part of the process keeps (an earlier test's model) is counted."""
        for tensor in tensors:
            self.track(tensor)
        self.peak = max(self.peak, self.current)

    def reset_peak(self) -> None:
        self.peak = self.current

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in pytree.tree_leaves(out):
            self.track(leaf)
        return out


def trainer_tensors(trainer):
    """What a trainer holds between steps: its model's and reference's weights, optimizer state."""
    for module in (trainer.backend.model, trainer.reference):
        if module is not None:
            yield from module.parameters()
            yield from module.buffers()
    for state in trainer.optimizer.state.values():
        yield from (value for value in state.values() if isinstance(value, torch.Tensor))


def proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_rss_peak() -> bool:
    """Linux: VmHWM starts again from the current RSS (clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def ru_maxrss_mb() -> float:
    """getrusage's peak RSS (kB on Linux, bytes on macOS). On Linux clear_refs resets it too."""
    unit = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / MB


def make_resident(model: torch.nn.Module) -> None:
    """Copy weights loaded as memory maps of the safetensors files into anonymous memory.

    Otherwise only the pages a step reads become resident (not the vision tower, not the embedding
    rows the batch does not look up), and RSS would count less than a GPU holds. Parameters keep
    their identity (the optimizer's references stay valid)."""
    with torch.no_grad():
        for module in model.modules():
            for parameter in module.parameters(recurse=False):
                parameter.data = parameter.data.clone()
            for name, buffer in module.named_buffers(recurse=False):
                module._buffers[name] = buffer.clone()


class Phases:
    """Peak memory per phase of a step: RSS (VmHWM), tensor bytes and, on a GPU, the CUDA allocator."""

    def __init__(self, tensors: TensorMemory | None, cuda: bool):
        self.tensors, self.cuda = tensors, cuda
        self.name: str | None = None
        self.peaks: dict[str, dict[str, float]] = {}
        self.started = 0.0

    def enter(self, name: str) -> None:
        if self.name is not None:
            self.close()
        self.name = name
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        reset_rss_peak()
        if self.tensors is not None:
            self.tensors.reset_peak()
        self.started = time.perf_counter()

    def close(self) -> None:
        peak = {"seconds": time.perf_counter() - self.started}
        if self.cuda:
            torch.cuda.synchronize()
            peak["cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / MB
            peak["cuda_reserved_mb"] = torch.cuda.max_memory_reserved() / MB
        hwm = proc_status_mb("VmHWM")
        if hwm is not None:
            peak["rss_mb"] = hwm
        if self.tensors is not None:
            peak["tensor_mb"] = self.tensors.peak / MB
        before = self.peaks.get(self.name)
        if before is not None:  # a phase met again (forward after the reference pass): its max, its time
            peak = {k: (v + before[k] if k == "seconds" else max(v, before.get(k, v))) for k, v in peak.items()}
        self.peaks[self.name] = peak
        self.name = None


def instrument(trainer, phases: Phases) -> None:
    """Mark the step's phases on this trainer's reference pass, backward and optimizer step."""
    reference_logps, backward, step = trainer.reference_logps, trainer.accelerator.backward, trainer.optimizer.step

    def reference(*args, **kwargs):
        phases.enter("reference")
        out = reference_logps(*args, **kwargs)
        phases.enter("forward")
        return out

    def marked_backward(loss, **kwargs):
        phases.enter("backward")
        backward(loss, **kwargs)
        phases.enter("clip")

    def marked_step(*args, **kwargs):
        phases.enter("optimizer")
        out = step(*args, **kwargs)
        phases.enter("after")
        return out

    trainer.reference_logps = reference
    trainer.accelerator.backward = marked_backward
    trainer.optimizer.step = marked_step


# -- one measurement -------------------------------------------------------------------------------


def synthetic_trajectories(backend, group_size: int, plan_tokens: int, context_tokens: int, seed: int = 0):
    """One group of think trajectories: the think context (cut or padded to `context_tokens`), a
    plan of `plan_tokens` random ordinary text ids ending in end-of-sentence, random image codes."""
    from .rollouts import Trajectory

    generator = torch.Generator().manual_seed(seed)
    special = set(backend.tokenizer.all_special_ids) | {backend.boi_id, backend.eoi_id, backend.image_token_id}
    ordinary = torch.tensor([i for i in range(len(backend.tokenizer)) if i not in special])
    context = backend.think_context_ids(PROMPT)
    if context_tokens:
        body = context[1:]
        body = (body * (context_tokens // max(1, len(body)) + 1))[: context_tokens - 1]
        context = context[:1] + body
    codebook = backend.model.config.vq_config.num_embeddings
    trajectories = []
    for row in range(group_size):
        picks = torch.randint(len(ordinary), (plan_tokens,), generator=generator)
        trajectories.append(
            Trajectory(
                prompt=PROMPT,
                group=0,
                mode="think",
                plan_seed=2 * row,
                image_seed=2 * row + 1,
                context_ids=list(context),
                plan_ids=ordinary[picks].tolist(),
                plan_stop=backend.eos_id,
                plan_text=None,
                image_tokens=torch.randint(codebook, (backend.num_image_tokens,), generator=generator),
            )
        )
    return trajectories


def parameter_counts(trainer) -> dict:
    model = trainer.backend.model
    language_model = model.model.language_model
    return {
        "model": sum(p.numel() for p in model.parameters()),
        "language_model": sum(p.numel() for p in language_model.parameters()),
        "decoder_layer": sum(p.numel() for p in language_model.layers[0].parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "reference_copy": 0 if trainer.reference is None else sum(p.numel() for p in trainer.reference.parameters()),
        "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
    }


def measure(
    preset: str = "tiny",
    layers: int = 2,
    configuration: str = "lora-gc",
    device: str = "cpu",
    group_size: int = 8,
    plan_tokens: int = 200,
    context_tokens: int = 64,
    cfg_scale: float = 5.0,
    micro_batch: int = 16,
    beta: float = 0.01,
    bf16: bool = False,
    model_dir: str | Path | None = None,
    rollout_engine: str = "hf",
    track_tensors: bool = True,
    seed: int = 0,
) -> dict:
    """Peak memory of one GRPO step (or, for `rollouts`, of one group's rollouts), in this process."""
    from .config import GRPOConfig
    from .loss import group_advantages
    from .rollouts import roll_out
    from .trainer import GRPOTrainer

    if configuration not in CONFIGURATIONS:
        raise ValueError(f"configuration {configuration!r}: one of {', '.join(CONFIGURATIONS)}")
    cuda = device.startswith("cuda")
    rss_start = proc_status_mb("VmRSS")
    with tempfile.TemporaryDirectory(prefix="grpo-memory-") as scratch:
        if model_dir is None:
            model_dir = save_shaped_janus(Path(scratch) / "model", preset, layers, seed)
        config = GRPOConfig(
            model=str(model_dir),
            out=str(Path(scratch) / "run"),
            device=device,
            bf16=bf16,
            group_size=group_size,
            prompts_per_step=1,
            micro_batch=micro_batch,
            beta=beta,
            cfg_scale=cfg_scale,
            rollout="think",
            train="both",
            rollout_engine=rollout_engine,
            progress=False,
            seed=seed,
            **CONFIGURATIONS[configuration],
        )
        started = time.perf_counter()
        trainer = GRPOTrainer(config)
        if not cuda:
            make_resident(trainer.backend.model)
        loaded = time.perf_counter() - started
        rss_loading = ru_maxrss_mb()  # before the phases reset it
        tensors = TensorMemory("cuda" if cuda else "cpu") if track_tensors else None
        phases = Phases(tensors, cuda)
        instrument(trainer, phases)
        report = {
            "preset": preset,
            "layers": layers,
            "configuration": configuration,
            "settings": {k: getattr(config, k) for k in ("lora_rank", "gradient_checkpointing", "micro_batch", "beta")}
            | {"cfg_scale": trainer.cfg_scale, "dtype": str(trainer.backend.model.dtype).removeprefix("torch.")},
            "device": device,
            "group_size": group_size,
            "parameters": parameter_counts(trainer),
            "load_seconds": loaded,
        }
        if configuration == "rollouts":
            work = lambda: roll_out(trainer.backend, [PROMPT], trainer.rollout_settings(), seed, 0)  # noqa: E731
        else:
            trajectories = synthetic_trajectories(trainer.backend, group_size, plan_tokens, context_tokens, seed)
            rewards = torch.randn(group_size, generator=torch.Generator().manual_seed(seed))
            advantages = group_advantages(rewards, torch.zeros(group_size, dtype=torch.long), True)
            work = lambda: trainer.optimise(trajectories, advantages)  # noqa: E731
            text = len(trajectories[0].draw_context(trainer.backend.boi_id))
            report["sequence"] = {
                "context_tokens": len(trajectories[0].context_ids),
                "plan_tokens": plan_tokens + 1,  # with its stop token
                "image_tokens": trainer.backend.num_image_tokens,
                "positions": text + trainer.backend.num_image_tokens,
                "scored_rows": group_size * (2 if trainer.cfg_scale != 1 else 1),
            }
        gc.collect()
        if tensors is not None:
            tensors.adopt(trainer_tensors(trainer))
        if cuda:
            torch.cuda.synchronize()
        before = {"rss_mb": proc_status_mb("VmRSS")}
        if tensors is not None:
            before["tensor_mb"] = tensors.current / MB
        if cuda:
            before["cuda_allocated_mb"] = torch.cuda.memory_allocated() / MB
        started = time.perf_counter()
        phases.enter("rollouts" if configuration == "rollouts" else "batch")
        if tensors is not None:
            with tensors:
                result = work()
        else:
            result = work()
        phases.close()
        seconds = time.perf_counter() - started
    peak = {}
    for key in ("rss_mb", "tensor_mb", "cuda_allocated_mb", "cuda_reserved_mb"):
        values = [p[key] for p in phases.peaks.values() if key in p]
        if values:
            peak[key] = max(values)
    report.update(
        {
            "seconds": seconds,
            "before_step": before,
            "peak_step": peak,
            "peak_phase": max(phases.peaks, key=lambda name: phases.peaks[name].get("tensor_mb", 0)),
            "phases": phases.peaks,
            "rss_at_start_mb": rss_start,
            "peak_loading_rss_mb": rss_loading,
            "peak_process_rss_mb": max(
                [rss_loading, ru_maxrss_mb()] + [p.get("rss_mb", 0) for p in phases.peaks.values()]
            ),
        }
    )
    if configuration == "rollouts":
        report["rollout"] = {
            "plan_tokens": [len(t.plan_ids) for t in result],
            "engine": rollout_engine,
        }
    else:
        report["step"] = result
    return report


# -- many measurements, each in its own process ------------------------------------------------------


def run_worker(arguments: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "finetune.memory", *arguments], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit(points: list[tuple[float, float]]) -> dict | None:
    """Least squares y = intercept + slope * x over (x, y) points with two x values or more."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return {"intercept_mb": mean_y - slope * mean_x, "slope_mb_per_layer": slope}


def adam_moments_mb(run: dict, phase: str, bytes_per_value: int) -> float:
    """AdamW's two moments of the trainable parameters: alive from the first optimizer step on."""
    if phase not in ("optimizer", "after"):
        return 0.0
    return 2 * bytes_per_value * run["parameters"]["trainable"] / MB


def derived(metric: str, run: dict, phase: str) -> float | None:
    """A phase's peak under `metric`: measured (rss_mb, tensor_mb, cuda_allocated_mb) or derived:
    - tensor_mb_bf16_estimate (float32 runs): everything halved but AdamW's moments, kept in float32;
    - tensor_mb_fp32_adam (bf16 runs): the trainer keeps AdamW's moments in the parameters' dtype;
      this is the peak with float32 moments instead (2 more bytes per value)."""
    values = run["phases"].get(phase, {})
    dtype = run["settings"]["dtype"]
    if metric == "tensor_mb_bf16_estimate":
        if dtype != "float32" or "tensor_mb" not in values:
            return None
        adam = adam_moments_mb(run, phase, 4)
        return 0.5 * (values["tensor_mb"] - adam) + adam
    if metric == "tensor_mb_fp32_adam":
        if dtype != "bfloat16" or "tensor_mb" not in values:
            return None
        return values["tensor_mb"] + adam_moments_mb(run, phase, 2)
    return values.get(metric)


METRICS = ("rss_mb", "tensor_mb", "cuda_allocated_mb", "tensor_mb_bf16_estimate", "tensor_mb_fp32_adam")


def summarise(runs: list[dict], target_layers: int) -> dict:
    """Per configuration and metric: the fit over layers and the projection to `target_layers`.

    A step's peak is the largest phase peak; each phase is fitted and projected on its own, since
    the phase that peaks can change with the layer count (full fine-tuning: backward or AdamW)."""
    summary = {}
    for configuration in dict.fromkeys(r["configuration"] for r in runs if "error" not in r):
        mine = [r for r in runs if r.get("configuration") == configuration and "error" not in r]
        entry = {}
        counts = {}
        for name in ("model", "trainable", "reference_copy"):
            line = fit([(r["layers"], r["parameters"][name]) for r in mine])
            if line is not None:
                counts[name] = round(line["intercept_mb"] + line["slope_mb_per_layer"] * target_layers)
        if counts:
            entry["parameters_projected"] = counts
        for metric in METRICS:
            per_phase = {}
            for phase in PHASES:
                points = [(r["layers"], derived(metric, r, phase)) for r in mine]
                line = fit([(x, y) for x, y in points if y is not None])
                if line is not None:
                    line["projected_mb"] = line["intercept_mb"] + line["slope_mb_per_layer"] * target_layers
                    per_phase[phase] = line
            if per_phase:
                top = max(per_phase, key=lambda p: per_phase[p]["projected_mb"])
                entry[metric] = {
                    "projected_peak_mb": per_phase[top]["projected_mb"],
                    "projected_peak_phase": top,
                    "peak_phase_slope_mb_per_layer": per_phase[top]["slope_mb_per_layer"],
                    "phases": per_phase,
                }
        if entry:
            summary[configuration] = entry
    return {"target_layers": target_layers, "configurations": summary}


def markdown(out: dict) -> str:
    """The runs of one JSON as a table: per configuration, each layer count's step peak (tensors,
    then RSS or the CUDA allocator), the per-layer slope and the projection of the peak phase."""
    runs = [r for r in out["runs"] if "error" not in r]
    layers = sorted({r["layers"] for r in runs})
    summary = out.get("summary") or summarise(out["runs"], 0)
    target = summary["target_layers"]
    lines = [
        "| configuration | "
        + " | ".join(f"{n} layer{'s' if n > 1 else ''}" for n in layers)
        + f" | MB per layer | projected to {target} layers |",
        "| --- |" + " --- |" * (len(layers) + 2),
    ]
    for configuration in dict.fromkeys(r["configuration"] for r in runs):
        cells = []
        for n in layers:
            run = next((r for r in runs if r["configuration"] == configuration and r["layers"] == n), None)
            if run is None:
                cells.append("-")
                continue
            peak = run["peak_step"]
            other = peak.get("cuda_allocated_mb", peak.get("rss_mb", 0))
            cells.append(f"{peak.get('tensor_mb', 0):,.0f} ({other:,.0f})")
        fitted = summary["configurations"].get(configuration, {}).get("tensor_mb")
        if fitted is None:
            cells += ["-", "-"]
        else:
            slope, projected = fitted["peak_phase_slope_mb_per_layer"], fitted["projected_peak_mb"]
            cells += [f"{slope:,.0f}", f"{projected:,.0f} ({fitted['projected_peak_phase']})"]
        lines.append(f"| {configuration} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m finetune.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="janus-pro-1b", help="a preset of reasoner/models/random_janus.py")
    parser.add_argument("--layers", default="1,2,4", help="decoder layer counts to measure, comma-separated")
    parser.add_argument(
        "--configurations",
        default=",".join(DEFAULT_CONFIGURATIONS),
        help=f"comma-separated, of: {', '.join(CONFIGURATIONS)}",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="default: on for cuda")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--plan-tokens", type=int, default=200)
    parser.add_argument("--context-tokens", type=int, default=64, help="think-context length; 0: as tokenized")
    parser.add_argument("--cfg-scale", type=float, default=5.0)
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--rollout-engine", default="hf", help="engine of the rollouts configuration")
    parser.add_argument("--no-tensors", action="store_true", help="skip the op-by-op tensor count")
    parser.add_argument("--target-layers", type=int, default=0, help="project to this many layers; 0: the preset's")
    parser.add_argument(
        "--skip", default="", help="CONFIGURATION:LAYERS pairs to leave out (too big for this machine), comma-separated"
    )
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --json, measure the rest")
    parser.add_argument("--json", default="", help="write the runs and the fits here (rewritten after each run)")
    parser.add_argument("--work-dir", default=None, help="where the models are saved (removed after)")
    parser.add_argument("--table", metavar="JSON", help="print the runs of a JSON written earlier as a table")
    parser.add_argument("--worker", choices=("build", "measure"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--configuration", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    bf16 = args.device.startswith("cuda") if args.bf16 is None else args.bf16
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()

    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())), end="")
        return
    if args.worker == "build":
        save_shaped_janus(Path(args.model_dir), args.preset, int(args.layers))
        print(json.dumps({"built": args.model_dir}))
        return
    if args.worker == "measure":
        report = measure(
            args.preset,
            int(args.layers),
            args.configuration,
            args.device,
            args.group_size,
            args.plan_tokens,
            args.context_tokens,
            args.cfg_scale,
            args.micro_batch,
            args.beta,
            bf16,
            args.model_dir,
            args.rollout_engine,
            not args.no_tensors,
        )
        print(json.dumps(report))
        return

    from reasoner.models.random_janus import PRESETS

    layer_counts = [int(x) for x in args.layers.split(",") if x]
    configurations = [c for c in args.configurations.split(",") if c]
    for configuration in configurations:
        if configuration not in CONFIGURATIONS:
            parser.error(f"--configurations: {configuration!r} is not one of {', '.join(CONFIGURATIONS)}")
    target = args.target_layers or PRESETS[args.preset].text_layers
    skip = {pair for pair in args.skip.split(",") if pair}
    shared = ["--preset", args.preset, "--device", args.device, "--group-size", str(args.group_size)]
    shared += ["--plan-tokens", str(args.plan_tokens), "--context-tokens", str(args.context_tokens)]
    shared += ["--cfg-scale", str(args.cfg_scale), "--micro-batch", str(args.micro_batch), "--beta", str(args.beta)]
    shared += ["--rollout-engine", args.rollout_engine, "--bf16" if bf16 else "--no-bf16"]
    shared += ["--no-tensors"] if args.no_tensors else []
    settings = {
        "device": args.device,
        "bf16": bf16,
        "group_size": args.group_size,
        "plan_tokens": args.plan_tokens,
        "context_tokens": args.context_tokens,
        "cfg_scale": args.cfg_scale,
        "micro_batch": args.micro_batch,
        "beta": args.beta,
        "rollout_engine": args.rollout_engine,
    }
    out = {
        "command": "python -m finetune.memory " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "preset": args.preset,
        "settings": settings,
        "runs": [],
    }
    if args.resume and args.json and Path(args.json).is_file():
        earlier = json.loads(Path(args.json).read_text())
        if earlier.get("preset") != args.preset or earlier.get("settings") != settings:
            parser.error(f"--resume: {args.json} was measured with other settings")
        out["runs"] = [r for r in earlier["runs"] if "error" not in r]
        out["command"] = earlier["command"]
    done = {(r["layers"], r["configuration"]) for r in out["runs"]}
    for layers in layer_counts:
        todo = [c for c in configurations if (layers, c) not in done and f"{c}:{layers}" not in skip]
        if not todo:
            continue
        scratch = Path(tempfile.mkdtemp(prefix="grpo-memory-", dir=args.work_dir))
        try:
            model_dir = scratch / "model"
            built = run_worker(
                ["--worker", "build", "--preset", args.preset, "--layers", str(layers), "--model-dir", str(model_dir)]
            )
            for configuration in todo:
                if "error" in built:
                    run = {"layers": layers, "configuration": configuration, "error": "build: " + built["error"]}
                else:
                    run = run_worker(
                        ["--worker", "measure", "--layers", str(layers), "--configuration", configuration]
                        + ["--model-dir", str(model_dir), *shared]
                    )
                    run.setdefault("layers", layers)
                    run.setdefault("configuration", configuration)
                out["runs"].append(run)
                out["summary"] = summarise(out["runs"], target)
                line = run.get("error") or (
                    f"peak {run['peak_step'].get('rss_mb', 0):.0f} MB RSS, "
                    f"{run['peak_step'].get('tensor_mb', 0):.0f} MB tensors ({run['peak_phase']}), "
                    f"{run['seconds']:.0f} s"
                )
                print(f"{args.preset} x {layers} layers, {configuration}: {line}", file=sys.stderr, flush=True)
                if args.json:
                    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    out["summary"] = summarise(out["runs"], target)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
