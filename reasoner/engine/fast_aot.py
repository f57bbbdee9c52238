"""The fast engine's decode steps compiled ahead of time (AOTInductor), for a CPU: fast from the first
call of a process once built, built once per model shape, in the background, and kept on disk.

Why (measured, benchmarks/RESULTS.md "The default engine on a CPU"): eagerly, a decode step of the
bundled model is about 300 ATen calls, and their per-call cost, not the arithmetic, sets its pace:
1.2-1.6x transformers' loop whichever kernels multiply. Compiled, the step is a few fused loops and
MKL's products. `torch.compile` (the `REASONER_FAST_COMPILE=1` step) compiles each row count again
in every process (10-60 s each; 16 s with inductor's caches warm) and runs its guards and a Python
wrapper on every step. An AOTInductor package has none of that: a shared library, loaded in a second
or two, that runs the whole step from C++ (3.0x transformers at batch 1, 2.7x at batch 8).

- One package per (kind, model shape): the image step and the text step, each with the number of
  rows, the cache length and the read length dynamic, so one package serves every batch size and
  every context length, and both the model and its reflection copy (same shapes).
- No weights inside: the package's constants are bound to the engine's own tensors at load
  (`load_constants(..., user_managed=True)`: no copy), so a package serves every model of that
  shape, and new weights (a LoRA step, `Weights.refresh`) are bound again at the next token loop.
- Built in a child process (`python -m reasoner.engine.fast_aot`, on uninitialised weights of the model's
  config, at a lower priority), so the build takes no time from the process's own interpreter
  (no GIL contention): the engine runs its eager step until the package is loaded, then the next token
  loop runs compiled. Built packages live in `REASONER_FAST_CACHE` (default
  `~/.cache/reasoner-studio/fast`; the studio's is its data directory's `cache/fast`), keyed on
  torch's version, this code, the model's config, the dtype and the CPU, so a second start builds
  nothing.
- The step takes the padding starts always (zeros when the rows have one length) and greedy or sampled
  as a flag; top-k > 0 runs the eager step. The tokens are the eager step's up to rounding (other
  kernels): the reference's tokens in the tests (tests/test_engine_aot.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn

from .fast_decoder import image_step_logits, one_slot, text_step_logits
from .fast_weights import Weights
from .llama import DecoderShape
from .sampling import guided, pick

FORMAT = 1  # bump when what a package computes or takes changes without a change to the files hashed below
KINDS = ("text", "image")  # built in this order: a studio thinks before it draws
SOURCES = ("fast_aot.py", "fast_decoder.py", "fast_weights.py", "llama.py", "padding.py", "sampling.py", "lora.py")
MAX_ROWS = 1 << 12
MAX_LEN = 1 << 20


def cache_dir() -> Path:
    return Path(os.environ.get("REASONER_FAST_CACHE") or Path.home() / ".cache" / "reasoner-studio" / "fast")


class StepProgram(nn.Module):
    """One decode step with everything that changes between steps or calls as an input: the tokens,
    the slot, the read positions, the rows' padding starts, the noise, the guidance scale, the
    temperature, greedy or not, the rotary tables and each layer's KV cache (written in place).
    What stays is the weights, reached through registered modules so that they are named constants."""

    def __init__(self, janus: nn.Module, weights: Weights, kind: str):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {KINDS}")
        self.kind = kind
        self.weights = weights  # the fused copies (plain tensors: no oneDNN layout in a package)
        self.language_model = janus.model.language_model
        if kind == "image":
            parts = [janus.model.generation_embeddings, janus.model.generation_aligner, janus.model.generation_head]
        else:
            parts = [janus.get_input_embeddings(), janus.lm_head]
        self.parts = nn.ModuleList(parts)  # registered: what the weights' methods read has names
        self.embed = janus.get_input_embeddings()
        self.shape = DecoderShape.of(self.language_model.config)

    def forward(
        self,
        tokens: torch.Tensor,
        input_pos: torch.Tensor,
        kv_positions: torch.Tensor,
        start: torch.Tensor,
        noise: torch.Tensor,
        cfg_scale: torch.Tensor,
        temperature: torch.Tensor,
        greedy: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
    ) -> torch.Tensor:
        def forward_one(x, input_pos, kv_positions, start):
            args = (self.shape, x, input_pos, kv_positions, start, keys, values, rope_cos, rope_sin, True)
            return one_slot(self.weights, self.language_model, *args)

        if self.kind == "image":
            logits = image_step_logits(self.weights, forward_one, tokens, input_pos, kv_positions, start)
            scores = guided(logits, cfg_scale)
        else:
            logits = text_step_logits(self.weights, self.embed, forward_one, tokens, input_pos, kv_positions, start)
            scores = guided(logits, None)
        return torch.where(greedy, pick(scores, None, temperature, 0), pick(scores, noise, temperature, 0))

    def example_inputs(self, candidates: int = 2, max_len: int = 64, length: int = 9) -> tuple:
        """Inputs of the step's shapes (values do not matter) and their dynamic dimensions."""
        s = self.shape
        rows = 2 * candidates if self.kind == "image" else candidates
        vocab = self.parts[-1].vision_head.out_features if self.kind == "image" else self.parts[-1].out_features
        dtype = self.language_model.embed_tokens.weight.dtype
        cache = [torch.zeros(rows, s.kv_heads, max_len, s.head_dim, dtype=dtype) for _ in range(s.layers)]
        inputs = (
            torch.zeros(candidates, dtype=torch.long),
            torch.tensor([length - 1]),
            torch.arange(length),
            torch.zeros(rows, dtype=torch.long),
            torch.ones(candidates, vocab),
            torch.tensor(1.0),
            torch.tensor(1.0),
            torch.tensor(False),
            torch.zeros(max_len, s.head_dim, dtype=dtype),
            torch.zeros(max_len, s.head_dim, dtype=dtype),
            cache,
            [c.clone() for c in cache],
        )
        Dim = torch.export.Dim
        b, length_dim, m = Dim("b", min=1, max=MAX_ROWS), Dim("L", min=1, max=MAX_LEN), Dim("m", min=2, max=MAX_LEN)
        r = 2 * b if self.kind == "image" else b
        caches = [{0: r, 2: m}] * s.layers
        dynamic = ({0: b}, None, {0: length_dim}, {0: r}, {0: b}, None, None, None, {0: m}, {0: m}, caches, caches)
        return inputs, dynamic

    def constants(self) -> dict[str, torch.Tensor]:
        """The tensors a package of this step is bound to, by name."""
        return {
            **dict(self.named_parameters(remove_duplicate=False)),
            **dict(self.named_buffers(remove_duplicate=False)),
        }


def package_key(janus: nn.Module, kind: str) -> str:
    """What a package depends on: torch, this code, the model's config, the dtype, the kind and the CPU."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((here / name).read_bytes())
    parts = {
        "format": FORMAT,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "kind": kind,
        "dtype": str(janus.lm_head.weight.dtype),
        "config": structure(janus.config.to_dict()),
        "cpu": cpu_description(),
        "code": digest.hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def structure(config):
    """A config without what does not shape the step (where it was loaded from, the writer's version)."""
    if isinstance(config, dict):
        return {
            key: structure(value)
            for key, value in config.items()
            if not str(key).startswith("_") and key != "transformers_version"
        }
    return config


def cpu_description() -> str:
    """The CPU a package's kernels were built for (they use its vector instructions)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return platform.machine() + hashlib.sha256(line.encode()).hexdigest()[:16]
    except OSError:
        pass
    return platform.machine() + platform.processor()


# -- building a package (in a child process) -------------------------------------------------------


def build_package(janus: nn.Module, kind: str, path: Path) -> Path:
    """Export the `kind` step of `janus` (its weights' values do not matter) and compile it into `path`."""
    program = StepProgram(janus, Weights(janus, fused_copies=True, onednn=False), kind).eval()
    inputs, dynamic = program.example_inputs()
    with torch.no_grad():
        exported = torch.export.export(program, inputs, dynamic_shapes=dynamic)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.pt2")
    torch._inductor.aoti_compile_and_package(
        exported, package_path=str(partial), inductor_configs={"aot_inductor.package_constants_in_so": False}
    )
    os.replace(partial, path)  # atomic: a reader sees a whole package or none
    return path


def model_on_no_weights(model_class: str, config_class: str, config: dict, dtype: str) -> nn.Module:
    """The model of `config`, with uninitialised weights (a package binds the real ones at load)."""
    import importlib

    def named(qualified: str):
        module, _, name = qualified.rpartition(".")
        return getattr(importlib.import_module(module), name)

    configuration = named(config_class).from_dict(config)
    with torch.device("meta"):
        model = named(model_class)(configuration)
    return model.to_empty(device="cpu").to(getattr(torch, dtype.removeprefix("torch."))).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build one fast-engine step package (run by the engine)")
    parser.add_argument("spec", type=Path, help="JSON: model_class, config_class, config, dtype, kind, out")
    spec_file = parser.parse_args(argv).spec
    spec = json.loads(spec_file.read_text())
    spec_file.unlink(missing_ok=True)
    if hasattr(os, "nice"):
        os.nice(10)  # below the requests of the process that asked for it
    started = time.perf_counter()
    model = model_on_no_weights(spec["model_class"], spec["config_class"], spec["config"], spec["dtype"])
    build_package(model, spec["kind"], Path(spec["out"]))
    print(f"built {spec['out']} in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    Path(spec["out"]).with_suffix(".log").unlink(missing_ok=True)  # this output, when all went well
    return 0


# -- the engine's side: build in the background, load, bind ----------------------------------------

# what a log reader waits for (benchmarks/studio_latency.py): one READY line (or a failure) per PREPARING line
PREPARING = "fast engine: loading its compiled-ahead steps "
READY = "fast engine: compiled-ahead steps ready: "


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_building: dict[Path, threading.Lock] = {}  # one build of a package at a time in this process
_building_guard = threading.Lock()


class LoadedStep:
    """A loaded package bound to one engine's tensors."""

    def __init__(self, path: Path, program: StepProgram):
        self.model = torch._inductor.aoti_load_package(str(path))
        self.program = program
        self.names = list(self.model.loader.get_constant_fqns())
        self.bound: dict[str, torch.Tensor] = {}
        self.generation = -1

    def bind(self, generation: int) -> None:
        """Point the package's constants at the program's current tensors (no copies)."""
        tensors = self.program.constants()
        missing = [name for name in self.names if name not in tensors]
        if missing:
            raise KeyError(f"the model has no tensor named {missing[0]!r} (of {len(missing)})")
        self.bound = {name: tensors[name] for name in self.names}  # kept alive while bound
        self.model.loader.load_constants(self.bound, False, True, True)  # active buffer, full update, user-managed
        self.generation = generation

    def __call__(self, *inputs) -> torch.Tensor:
        return self.model.loader.run(list(inputs))[0]


class AheadOfTimeSteps:
    """The packages of one engine's two steps: built (in a child process) if missing, then loaded, in a
    background thread started on creation. `step(kind, generation)` is the loaded step bound to the
    weights of `generation`, or None while it is not ready (or failed: then the eager step serves)."""

    def __init__(self, janus: nn.Module, weights: Weights, log=None, directory: Path | None = None):
        self.janus_parts = (janus,)
        self.programs = {kind: StepProgram(janus, weights, kind).eval() for kind in KINDS}
        self.directory = cache_dir() if directory is None else directory
        self.paths = {kind: self.directory / f"{kind}-{package_key(janus, kind)}.pt2" for kind in KINDS}
        self.log = log or say
        self.loaded: dict[str, LoadedStep] = {}
        self.failures: dict[str, str] = {}
        self.timings: dict[str, dict[str, float]] = {}  # per kind: build_s (0 when found on disk), load_s
        self.done = threading.Event()
        self.log(f"{PREPARING}(eager steps until then; packages in {self.directory})")
        self.thread = threading.Thread(target=self._prepare, name="fast-aot", daemon=True)
        self.thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every package is loaded or has failed; True if all are loaded."""
        self.done.wait(timeout)
        return self.done.is_set() and not self.failures

    def step(self, kind: str, generation: int) -> LoadedStep | None:
        loaded = self.loaded.get(kind)
        if loaded is None or kind in self.failures:
            return None
        if loaded.generation != generation:
            try:
                loaded.bind(generation)
            except Exception as error:  # noqa: BLE001 - a model the package does not fit: eager it is
                self.failures[kind] = f"{type(error).__name__}: {error}"
                self.log(f"fast engine: the compiled {kind} step does not fit this model ({error}); eager steps")
                return None
        return loaded

    def _prepare(self) -> None:
        try:
            for kind in KINDS:
                try:
                    self._prepare_one(kind)
                except Exception as error:  # noqa: BLE001 - the eager step keeps serving
                    self.failures[kind] = f"{type(error).__name__}: {error}"
                    self.log(f"fast engine: no compiled {kind} step ({self.failures[kind]}); eager steps")
        finally:
            self.done.set()
        if not self.failures:
            self.log(
                READY
                + ", ".join(
                    f"{kind} {t['build_s']:.0f} s to build, {t['load_s']:.2f} s to load"
                    for kind, t in self.timings.items()
                )
            )

    def _prepare_one(self, kind: str) -> None:
        path = self.paths[kind]
        with _building_guard:
            lock = _building.setdefault(path, threading.Lock())
        build_s = 0.0
        with lock:
            if not path.is_file():
                self.log(f"fast engine: compiling the {kind} step in the background (once; kept in {path.parent})")
                started = time.perf_counter()
                self._build_in_child(kind, path)
                build_s = time.perf_counter() - started
                self.log(f"fast engine: {kind} step compiled in {build_s:.0f} s")
        started = time.perf_counter()
        loaded = LoadedStep(path, self.programs[kind])
        self.loaded[kind] = loaded
        self.timings[kind] = {"build_s": round(build_s, 2), "load_s": round(time.perf_counter() - started, 3)}

    def _build_in_child(self, kind: str, path: Path) -> None:
        janus = self.janus_parts[0]
        spec = {
            "model_class": f"{type(janus).__module__}.{type(janus).__qualname__}",
            "config_class": f"{type(janus.config).__module__}.{type(janus.config).__qualname__}",
            "config": janus.config.to_dict(),
            "dtype": str(janus.lm_head.weight.dtype),
            "kind": kind,
            "out": str(path),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        root = str(Path(__file__).resolve().parents[2])  # the checkout holding `reasoner`
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
            "TORCHINDUCTOR_CACHE_DIR": os.environ.get("TORCHINDUCTOR_CACHE_DIR") or str(path.parent / "inductor"),
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=path.parent, delete=False) as handle:
            json.dump(spec, handle, default=str)  # the child removes it
        # its output goes to a file, not a pipe: a child whose parent has exited (a short command-line
        # run) finishes the package for the next run
        log = path.with_suffix(".log")
        with open(log, "w") as output:
            code = subprocess.call(
                [sys.executable, "-m", "reasoner.engine.fast_aot", handle.name],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        if code != 0:
            last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the build exited with {code} ({log}): {last}")
        log.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
