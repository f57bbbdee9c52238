"""`python -m reasoner bench`: the engines side by side, on the bundled model and on random models of
Janus-Pro-1B's and -7B's shapes.

    python -m reasoner bench --models shapes,tiny --engines hf,fast,onnx --batches 1,8,16 \
        --json benchmarks/bench_cpu.json
    python -m reasoner bench --models janus-pro-1b --device cuda --batches 1,16 --json benchmarks/bench_h100.json

For each model, each batch and each engine: draw `batch` images with guidance (the batch is doubled
inside) at temperature 1 from one context, after a warm-up run (compile, CUDA graph capture, ONNX
Runtime sessions). Engines take turns, `--repeats` rounds, and the best round counts, so that all
engines see the same machine. The JSON file gets `{"device", "results": [{"model", "engine",
"batch", "images_per_s", "ms_per_step", "peak_mem_mb", ...}]}` (rows of an earlier run on the same
device with other keys are kept), and RESULTS.md a section for the device. Progress goes to stderr.

Model names: `shapes` (the bundled model; its random-weight shape until weights/shapes is built),
a preset of `reasoner.models.random_janus` (`tiny`, `janus-pro-1b`, `janus-pro-7b`: random weights, real
config classes, nothing downloaded), or a Janus directory. A think-then-generate model
(`shapes-diffusion`, `tiny-think-generate` for random weights, or its directory) gets rows with the
engine `diffusers`: `batch` pictures from one plan through its renderer (all engine names run the
same code for it), a step being one denoising step; beside the Janus rows, images/s compare.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..engine import check_engine

PROMPT = "a red circle left of a blue square"
PLAN = "red circle @ top-left; blue square @ top-center"
RESULTS_MD = Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md"


@dataclass
class Row:
    model: str
    engine: str
    batch: int
    images_per_s: float
    ms_per_step: float
    peak_mem_mb: float | None
    seconds: float  # best round: one call drawing `batch` images
    first_plan_token_ms: float | None  # prefill of the think context and the first plan token
    rounds: list[float] = field(default_factory=list)
    parameters: int = 0
    dtype: str = ""
    image_tokens: int = 0
    bound_ms: float | None = None  # weight bytes / measured memory bandwidth: a decode step's floor


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU: {cpu}, {threads} thread{'s' if threads != 1 else ''}"


# -- models ---------------------------------------------------------------------------------------


def load_model(spec: str, device: str):
    """(label, model, tokenizer, image_processor, template, model_dir) for a bench model name."""
    from ..backends.janus import JanusBackend
    from ..models import CATALOG, Adapted, resolve
    from ..models.random_janus import PRESETS, build_random_janus

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    directory, adapter = CATALOG.get(spec), None
    if isinstance(directory, Adapted):  # a base plus an adapter: the adapter merged in, as at load
        source = resolve(spec)
        directory, adapter = source.directory, source.adapter
    if directory is not None and (directory / "config.json").is_file():
        pass  # the bundled model, as built
    elif spec in PRESETS:
        if directory is not None:
            log(f"bench: {spec!r} is not built yet in {directory}; timing random weights of its shape")
        with torch.device(device):
            model, tokenizer, image_processor, template = build_random_janus(spec, dtype=dtype)
        return f"{spec} (random weights)", model, tokenizer, image_processor, template, None
    else:
        directory = Path(spec)
    backend = JanusBackend.from_pretrained(
        directory, device=device, dtype=dtype, name=spec, engine="hf", adapter=adapter
    )
    model_dir = backend.model_dir if adapter is None else None  # merged weights: the onnx cache keys on them
    return spec, backend.model, backend.tokenizer, backend.image_processor, backend.template, model_dir


def weight_bytes_per_step(model) -> int:
    """Bytes of the weights one image decode step reads: the Llama layers, norm, aligner and head."""
    parts = [
        model.model.language_model.layers,
        model.model.language_model.norm,
        model.model.generation_aligner,
        model.model.generation_head,
    ]
    return sum(p.numel() * p.element_size() for part in parts for p in part.parameters())


def memory_bandwidth(device: str) -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    size = (1 << 30) if device.startswith("cuda") else (1 << 26)
    source = torch.empty(size // 4, dtype=torch.float32, device=device).fill_(1.0)
    target = torch.empty_like(source)
    for _ in range(2):
        target.copy_(source)
    synchronize(device)
    rounds = 10
    started = time.perf_counter()
    for _ in range(rounds):
        target.copy_(source)
    synchronize(device)
    return 2 * size * rounds / (time.perf_counter() - started)


class PeakMemory:
    """Peak memory during a block: on CUDA torch's allocator peak, plus for ONNX Runtime (`outside`)
    the device memory in use beyond torch's reservation, sampled; on a CPU the process's resident
    memory, sampled every 10 ms."""

    def __init__(self, device: str, outside: bool = False):
        self.device = device
        self.sampled = not device.startswith("cuda") or outside
        self.peak = 0
        self.running = False

    def sample(self) -> int:
        if self.device.startswith("cuda"):
            free, total = torch.cuda.mem_get_info()
            return total - free - torch.cuda.memory_reserved()
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def watch(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.sample())
            time.sleep(0.01)

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        self.running = self.sampled
        self.peak = self.sample() if self.sampled else 0
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        if self.device.startswith("cuda"):
            self.peak = max(self.peak, 0) + torch.cuda.max_memory_allocated()
        self.mb = round(self.peak / 2**20)


# -- timing ---------------------------------------------------------------------------------------


def time_call(device: str, call) -> float:
    synchronize(device)
    started = time.perf_counter()
    call()
    synchronize(device)
    return time.perf_counter() - started


# Bench-only names for the fast engine's other step modes ("fast" is the device's default: compiled
# with torch.compile on CUDA; on a CPU the steps compiled ahead of time, `engine/fast_aot.py`, which the
# bench waits for before its warm-up). fast-compiled: torch.compile on a CPU (REASONER_FAST_COMPILE=1).
FAST_MODES = {"fast-eager": False, "fast-compiled": True}


def check_bench_engine(name: str) -> str:
    return name if name in FAST_MODES else check_engine(name)


def think_generate_backend(spec: str, device: str):
    """The think-then-generate backend `spec` names (`tiny-think-generate`: random weights, built in
    a temporary directory), or None when `spec` is a Janus model."""
    from ..backends.think_generate import ThinkGenerateBackend
    from ..models import resolve

    if spec == "tiny-think-generate":
        import tempfile

        from ..models.random_think_generate import save_random_think_generate

        with tempfile.TemporaryDirectory(prefix="bench-tg-") as scratch:  # read whole into memory, then gone
            directory = save_random_think_generate(Path(scratch) / "model")
            return ThinkGenerateBackend.from_pretrained(directory, device=device, name="tiny-think-generate (random)")
    try:
        source = resolve(spec)
    except Exception:  # noqa: BLE001 - not a catalog name or model directory: the Janus path says what is wrong
        return None
    if source.kind != "think-generate":
        return None
    return ThinkGenerateBackend.from_pretrained(source.directory, device=device, name=source.name)


def bench_think_generate(backend, batches: list[int], device: str, repeats: int, cfg: float) -> list[Row]:
    """`batch` pictures from one plan through the renderer, best of `repeats` rounds."""
    label, steps = backend.info.name, backend.config.num_inference_steps
    plan = backend.write_plan(PROMPT, 0, 0.0)
    think_ids, _ = backend.split_context(backend.think_context(PROMPT))
    first = lambda: backend.planner.generate(torch.tensor([think_ids], device=backend.device), max_new_tokens=1)  # noqa: E731
    first()
    first_token_ms = 1000 * min(time_call(device, first) for _ in range(repeats))
    rows = []
    for batch in batches:
        seeds = list(range(batch))
        draw = lambda s=seeds: backend.draw_images(PROMPT, plan, s, cfg, 1.0, 0)  # noqa: E731
        draw()  # warm-up
        with PeakMemory(device) as peak:
            rounds = [time_call(device, draw) for _ in range(repeats)]
        best = min(rounds)
        log(f"bench: {label} diffusers batch {batch}: {best:.3f} s, {batch / best:.2f} images/s")
        rows.append(
            Row(
                model=label, engine="diffusers", batch=batch, images_per_s=round(batch / best, 3),
                ms_per_step=round(1000 * best / steps, 3), peak_mem_mb=peak.mb, seconds=round(best, 4),
                first_plan_token_ms=round(first_token_ms, 2), rounds=[round(r, 4) for r in rounds],
                parameters=backend.info.parameters, dtype=backend.info.dtype, image_tokens=0,
            )
        )  # fmt: skip
    return rows


def bench_model(spec: str, engines: list[str], batches: list[int], device: str, repeats: int, cfg: float) -> list[Row]:
    from ..backends.janus import JanusBackend

    think_generate = think_generate_backend(spec, device)
    if think_generate is not None:
        log(f"bench: {spec} is a think-then-generate model: its renderer, engine diffusers")
        return bench_think_generate(think_generate, batches, device, repeats, cfg)

    log(f"bench: building {spec} on {device}")
    label, model, tokenizer, image_processor, template, model_dir = load_model(spec, device)
    backends = {}
    for engine in engines:
        engine_name, fast_compile = ("fast", FAST_MODES[engine]) if engine in FAST_MODES else (engine, None)
        backend = JanusBackend(
            model, tokenizer, image_processor, template, name=label, engine=engine_name, fast_compile=fast_compile
        )
        backend.model_dir = model_dir
        try:
            runner = backend.runner  # made here: an onnx export, sessions
        except Exception as error:  # noqa: BLE001 - one engine failing (e.g. no CUDA provider) skips it
            log(f"bench: {label}: engine {engine} cannot run here, skipped ({type(error).__name__}: {error})")
            continue
        if runner is not None:
            runner.progress = True
        if getattr(runner, "aot", None) is not None:  # the default CPU step: timed once its package is loaded
            started = time.perf_counter()
            ready = runner.aot.wait()
            log(
                f"bench: {label}: engine {engine}: compiled-ahead steps {'ready' if ready else 'FAILED'} after "
                f"{time.perf_counter() - started:.1f} s ({runner.aot.timings or runner.aot.failures})"
            )
        backends[engine] = backend
    engines = list(backends)
    any_backend = next(iter(backends.values()))
    context = any_backend.draw_context_ids(PROMPT, PLAN)
    think = any_backend.think_context_ids(PROMPT)
    steps = any_backend.num_image_tokens
    parameters = sum(p.numel() for p in model.parameters())
    bound_ms = 1000 * weight_bytes_per_step(model) / memory_bandwidth(device)
    log(
        f"bench: {label}: {parameters / 1e6:.1f} M parameters, {steps} image tokens, context {len(context)} tokens; "
        f"weight-streaming floor {bound_ms:.2f} ms a step"
    )

    # time to the first plan token: prefill of the think context and one token, best of `repeats`
    first_token = {}
    for engine, backend in backends.items():
        run = lambda b=backend: b.generate_text(think, None, 0, 0.0, 1, [b.eos_id])
        run()
        first_token[engine] = 1000 * min(time_call(device, run) for _ in range(repeats))
        log(f"bench: {label} {engine}: first plan token {first_token[engine]:.1f} ms")

    rows = []
    for batch in batches:
        seeds = list(range(batch))
        rounds: dict[str, list[float]] = {engine: [] for engine in engines}
        peaks = {}
        for engine, backend in backends.items():  # warm-up: compile, capture, sessions, caches
            if engine == "hf" and batch != batches[0]:
                continue  # transformers keeps nothing per batch size: one warm-up is enough
            log(f"bench: {label} {engine} batch {batch}: warm-up")
            started = time.perf_counter()
            backend.generate_image_tokens(context, seeds, cfg, 1.0, 0)
            synchronize(device)
            log(f"bench: {label} {engine} batch {batch}: warm-up took {time.perf_counter() - started:.1f} s")
        for round_ in range(repeats):
            for engine, backend in backends.items():
                with PeakMemory(device, outside=engine == "onnx") as peak:
                    seconds = time_call(
                        device, lambda b=backend, s=seeds: b.generate_image_tokens(context, s, cfg, 1.0, 0)
                    )
                rounds[engine].append(seconds)
                peaks[engine] = max(peaks.get(engine, 0), peak.mb)
                log(
                    f"bench: {label} {engine} batch {batch} round {round_ + 1}/{repeats}: {seconds:.3f} s, "
                    f"{1000 * seconds / steps:.2f} ms a step, {batch / seconds:.2f} images/s"
                )
        for engine in engines:
            best = min(rounds[engine])
            rows.append(
                Row(
                    model=label,
                    engine=engine,
                    batch=batch,
                    images_per_s=round(batch / best, 3),
                    ms_per_step=round(1000 * best / steps, 3),
                    peak_mem_mb=peaks[engine],
                    seconds=round(best, 4),
                    first_plan_token_ms=round(first_token[engine], 2),
                    rounds=[round(r, 4) for r in rounds[engine]],
                    parameters=parameters,
                    dtype=str(model.dtype).removeprefix("torch."),
                    image_tokens=steps,
                    bound_ms=round(bound_ms, 3),
                )
            )
    del backends, model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


# -- reporting ------------------------------------------------------------------------------------


def speedups(rows: list[dict]) -> dict[tuple[str, str, int], float]:
    """images/s of each row over the hf row of the same model and batch."""
    reference = {(r["model"], r["batch"]): r["images_per_s"] for r in rows if r["engine"] == "hf"}
    return {
        (r["model"], r["engine"], r["batch"]): r["images_per_s"] / reference[(r["model"], r["batch"])]
        for r in rows
        if (r["model"], r["batch"]) in reference
    }


def markdown(device: str, rows: list[dict], command: str) -> str:
    ratio = speedups(rows)
    lines = [
        f"## Engines side by side: {device}",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d')}, torch {torch.__version__}). Each row draws `batch` images with",
        "classifier-free guidance (2 x batch rows) at temperature 1 from one context; best of the rounds, engines",
        "taking turns. `x hf` is images/s over transformers' `generate` in the same run. The floor is",
        "weight bytes / measured memory bandwidth for one decode step. Peak memory: torch's allocator peak",
        "on CUDA (plus ONNX Runtime's device memory for onnx), the process's resident memory on a CPU.",
        "",
        "| model | engine | batch | images/s | ms per step | x hf | step / floor | peak memory MB"
        " | first plan token ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        x = ratio.get((r["model"], r["engine"], r["batch"]))
        floor = r.get("bound_ms")
        cells = [
            r["model"],
            r["engine"],
            r["batch"],
            f"{r['images_per_s']:.3f}",
            f"{r['ms_per_step']:.2f}",
            "" if x is None else f"{x:.2f}",
            f"{r['ms_per_step'] / floor:.1f}" if floor else "",
            "" if r["peak_mem_mb"] is None else r["peak_mem_mb"],
            "" if r.get("first_plan_token_ms") is None else r["first_plan_token_ms"],
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def update_results_md(path: Path, device: str, section: str) -> None:
    """Replace this device's section in RESULTS.md (between markers), or append it."""
    begin, end = f"<!-- bench: {device} -->", f"<!-- /bench: {device} -->"
    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    block = f"{begin}\n{section}{end}\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def merge_rows(path: Path, device: str, rows: list[dict]) -> list[dict]:
    """This run's rows, after the rows of an earlier run on the same device with other keys."""
    key = lambda r: (r["model"], r["engine"], r["batch"])
    earlier = []
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("device") == device:
                new = {key(r) for r in rows}
                earlier = [r for r in data.get("results", []) if key(r) not in new]
        except (OSError, ValueError):
            pass
    return earlier + rows


def run_bench(args) -> int:
    from transformers.utils import logging as transformers_logging

    from ..errors import InvalidSettingError

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    default_engines = "hf,fast,onnx" if args.device.startswith("cuda") else "hf,fast,fast-compiled,onnx"
    engines = [check_bench_engine(e.strip()) for e in (args.engines or default_engines).split(",") if e.strip()]
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        raise InvalidSettingError(f"--batches {args.batches!r} is not a comma-separated list of numbers") from None
    if not batches or min(batches) < 1:
        raise InvalidSettingError("--batches needs at least one batch size of 1 or more")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidSettingError("--device cuda asked for, but torch sees no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = device_name(args.device)
    repeats = args.repeats or (1 if args.device.startswith("cuda") else 3)  # GPU timings are steady
    log(f"bench: {device}; engines {', '.join(engines)}; batches {batches}; {repeats} rounds")
    rows = []
    for spec in [m.strip() for m in args.models.split(",") if m.strip()]:
        rows += [asdict(r) for r in bench_model(spec, engines, batches, args.device, repeats, args.cfg)]
    rows = merge_rows(args.json, device, rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": device, "results": rows}, indent=2) + "\n")
    log(f"bench: wrote {args.json}")
    if args.results_md is not None:
        command = (
            "python -m reasoner bench " + " ".join(sys.argv[2:])
            if sys.argv[1:2] == ["bench"]
            else "python -m reasoner bench"
        )
        update_results_md(args.results_md, device, markdown(device, rows, command))
        log(f"bench: updated {args.results_md}")
    print(markdown(device, rows, "python -m reasoner bench"))
    ratio = speedups(rows)
    for (model, engine, batch), x in sorted(ratio.items()):
        if engine != "hf":
            log(f"bench: {model} {engine} batch {batch}: {x:.2f}x hf")
    return 0


def add_bench_command(commands) -> None:
    bench = commands.add_parser("bench", help="time the engines side by side; write JSON and a RESULTS.md section")
    bench.add_argument(
        "--models",
        default="shapes",
        help="comma-separated: shapes, tiny, janus-pro-1b, janus-pro-7b or Janus directories",
    )
    bench.add_argument("--model", dest="models", help="same as --models")
    bench.add_argument(
        "--engines",
        default=None,
        help="comma-separated engines: hf, fast, onnx, and fast-eager / fast-compiled for the fast engine's "
        "step eager or under torch.compile (fast on a CPU: its compiled-ahead steps, built first if missing) "
        "(default: hf,fast,onnx on CUDA; hf,fast,fast-compiled,onnx on a CPU)",
    )
    bench.add_argument("--batches", default="1,8,16", help="comma-separated numbers of images drawn at once")
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    bench.add_argument(
        "--repeats", type=int, default=0, help="timed rounds per engine and batch (default 3 on CPU, 1 on CUDA)"
    )
    bench.add_argument("--cfg", type=float, default=5.0, help="guidance scale")
    bench.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own choice)")
    bench.add_argument("--json", type=Path, required=True, help="write results here")
    bench.add_argument(
        "--results-md", type=Path, default=RESULTS_MD, help="RESULTS.md to update with a section for this device"
    )
    bench.add_argument(
        "--no-results-md", dest="results_md", action="store_const", const=None, help="leave RESULTS.md alone"
    )
    bench.set_defaults(run=run_bench)
