"""Which model the studio runs, one loaded pipeline per engine, and what the UI says about it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from reasoner.engine import check_engine
from reasoner.errors import ModelLoadError, ReasonerError
from reasoner.models.catalog import CATALOG, DEFAULT_MODEL, base_and_adapter, catalog_names, resolve_model
from reasoner.pipeline import ReasonerPipeline

# what the studio draws with unless told: the bundled model with its GRPO adapter (sampled plans,
# what varied candidates draw from, right 0.988 of held-out prompts against 0.960; position 0.96
# against 0.72; benchmarks/RESULTS.md "GRPO"), the bundled model alone while that adapter is missing
STUDIO_MODEL = "shapes-grpo"

FALLBACK_DIR = "models/tiny-random"
FALLBACK_NOTICE = (
    "**The bundled `shapes` model is not built yet** (`weights/shapes/` is missing), so this studio runs a "
    "tiny *random* stand-in: its plans are gibberish and its pictures are noise. Everything else works. "
    "Once `weights/shapes/` is there, the next start of the studio uses it, with no change needed."
)


@dataclass(frozen=True)
class ModelChoice:
    source: str  # what ReasonerPipeline.from_pretrained loads: a catalog name or a directory
    label: str  # what the UI calls it
    notice: str | None = None  # shown at the top of the page when set


def bundled_model_present() -> bool:
    return (CATALOG[DEFAULT_MODEL] / "config.json").is_file()


def default_studio_model() -> str:
    return STUDIO_MODEL if bundled_model_present() and STUDIO_MODEL in catalog_names() else DEFAULT_MODEL


def choose_model(name: str, data_dir: Path) -> ModelChoice:
    """`name`, or, while the bundled model is not built, a tiny random model kept in the data dir."""
    if name not in (DEFAULT_MODEL, STUDIO_MODEL) or bundled_model_present():
        return ModelChoice(name, Path(name).name if Path(name).is_dir() and name not in CATALOG else name)
    from weights.random_janus import save_random_janus

    directory = data_dir / FALLBACK_DIR
    if not (directory / "config.json").is_file():
        save_random_janus(directory, preset="tiny", seed=0)
    return ModelChoice(str(directory), "tiny random stand-in for shapes", FALLBACK_NOTICE)


class ModelStillLoading(ReasonerError):
    """A step asked for the model before the background load finished."""


LOADING_INFO = "**Model:** loading… (the buttons answer once it is ready)"
ONNX_EXPORT_NOTE = (
    "exporting the model to ONNX (first use, about 2 min on a CPU; kept in the data directory's cache/onnx after that)…"
)


def quiet_transformers() -> None:
    """No per-weight progress bars or warnings from transformers in the studio's output. Called where
    the model loads (the loading thread), so importing transformers does not delay the first page."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


class Models:
    """The loaded pipeline. Choosing another engine in the settings switches the token loops over
    the same loaded weights (`ReasonerPipeline.use_engine`); model tasks run one at a time.

    With `background=True` the weights load in a thread, started by `load_in_background()` once the
    page is served (started earlier, the thread's imports slowed building and serving the page by
    about 0.8 s on the 2-core machine); until they are in, every step answers "the model is still
    loading" (issue 15.12)."""

    def __init__(self, choice: ModelChoice, device: str, engine: str, background: bool = False):
        self.choice = choice
        self.device = device
        self.default_engine = check_engine(engine)
        self._lock = threading.Lock()
        self._pipeline: ReasonerPipeline | None = None
        self._base: ReasonerPipeline | None = None  # the base model's pipeline, kept for Compare
        self._tuned: dict[Path, ReasonerPipeline] = {}  # base + adapter, one per adapter used
        self.adapter: Path | None = None  # the adapter serving now (None: the base)
        self._adapter_label: str | None = None  # the base's label + the adapter's name@hash
        self._failure: Exception | None = None
        self._loaded = threading.Event()
        if not background:
            self._pipeline = self._load()
            self._loaded.set()
            return
        directory = resolve_model(choice.source)[0]
        if not directory.is_dir():  # a wrong --model still ends the start-up with its one line
            raise ModelLoadError(f"model directory {directory} does not exist")

    def load_in_background(self) -> None:
        threading.Thread(target=self._load_in_background, name="model-loader", daemon=True).start()

    def _load(self) -> ReasonerPipeline:
        quiet_transformers()
        pipeline = ReasonerPipeline.from_pretrained(self.choice.source, device=self.device, engine=self.default_engine)
        if pipeline.engine == "fast":  # its compiled-ahead steps load (or build, the first time) in the background
            getattr(pipeline.backend, "start_engine", lambda: None)()
        return pipeline

    def _load_in_background(self) -> None:
        started = time.monotonic()
        try:
            self._pipeline = self._load()
            print(
                f"Model {self.choice.label} loaded in {time.monotonic() - started:.0f} s; the studio is ready.",
                flush=True,
            )
        except Exception as error:  # noqa: BLE001 - kept, and told to every step that asks
            self._failure = error
            print(f"error: the model failed to load: {error}", flush=True)
        finally:
            self._loaded.set()

    @property
    def loaded(self) -> bool:
        """The load is over, well or not."""
        return self._loaded.is_set()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self._failure is None

    def wait_until_loaded(self, timeout: float | None = None) -> bool:
        return self._loaded.wait(timeout)

    def loading_line(self) -> str:
        """The page's status line while the model loads (the onnx engine exports then, on first use)."""
        if self.default_engine == "onnx":
            return f"The model is loading, then {ONNX_EXPORT_NOTE} The steps answer once it is ready."
        return "The model is loading; the steps answer once it is ready."

    def _loaded_pipeline(self) -> ReasonerPipeline:
        if not self._loaded.is_set():
            raise ModelStillLoading("the model is still loading; try again in a few seconds")
        if self._failure is not None:
            raise ModelLoadError(f"the model failed to load: {self._failure}")
        return self._pipeline

    @property
    def engine(self) -> str:
        return self._loaded_pipeline().engine

    def pipeline(self, engine: str | None = None) -> ReasonerPipeline:
        """The pipeline on `engine` (the current one if None); an engine that fails to start
        leaves the current one serving."""
        pipeline = self._loaded_pipeline()
        with self._lock:
            pipeline.use_engine(check_engine(engine or pipeline.engine))
            return pipeline

    @property
    def label(self) -> str:
        """Who draws, as the store records it: the model, and the adapter by name and weights hash."""
        return self._adapter_label or self.choice.label

    def label_of(self, adapter: Path) -> str:
        return f"{self.choice.label} + {adapter.name}@{adapter_digest(adapter)[:12]}"

    def use_adapter(self, adapter: Path | None) -> None:
        """Serve the base model with `adapter` from now on (None: the base alone). The tuned
        pipeline loads once and stays; a broken adapter raises its one line and nothing changes."""
        tuned = self.tuned(adapter)
        label = None if adapter is None else self.label_of(adapter)
        with self._lock:
            if self._base is None:
                self._base = self._loaded_pipeline()
            self._pipeline, self.adapter, self._adapter_label = tuned, adapter, label

    def tuned(self, adapter: Path | None) -> ReasonerPipeline:
        """The pipeline of the base model with `adapter` (the base's own for None)."""
        base = self._base or self._loaded_pipeline()
        if adapter is None:
            return base
        if adapter not in self._tuned:
            # a learnt adapter continues an adapted entry's own (ui/learning.py), so it goes on its base
            source, _ = base_and_adapter(self.choice.source)
            self._tuned[adapter] = ReasonerPipeline.from_pretrained(
                source, device=self.device, engine=base.engine, adapter=adapter
            )
        return self._tuned[adapter]

    def current(self) -> ReasonerPipeline:
        """The loaded pipeline, whatever its engine (for checks that run no model)."""
        return self._loaded_pipeline()

    def info_markdown(self) -> str:
        if not self._loaded.is_set():
            return LOADING_INFO
        if self._failure is not None:
            return f"**Model:** {self.choice.label} failed to load ({self._failure})"
        pipeline = self.pipeline()
        info = pipeline.info
        text = (
            f"**Model:** {self.label}  \n"
            f"**Size:** {info.parameters / 1e6:.1f} M parameters, {info.dtype}, draws {info.image_size} px  \n"
            f"**Device:** {info.device}  \n"
            f"**World:** {info.world} ({self.current().world.description})"
        )
        if not getattr(pipeline.backend, "supports_reflection", True):  # a think-then-generate renderer
            text += "  \n**Reflection:** this model does not look at its pictures; Reflect answers that it cannot."
        return text


def adapter_digest(adapter: Path) -> str:
    """sha256 of an adapter's weights file (what the store records beside its name)."""
    import hashlib

    with open(adapter / "adapter_model.safetensors", "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
