"""Which model the studio runs, one loaded pipeline per engine, and what the UI says about it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from reasoner.engine import check_engine
from reasoner.pipeline import ReasonerPipeline
from weights.catalog import CATALOG, DEFAULT_MODEL

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


def bundled_model_present(name: str = DEFAULT_MODEL) -> bool:
    return (CATALOG[name] / "config.json").is_file()


def choose_model(name: str, data_dir: Path) -> ModelChoice:
    """`name`, or, while the bundled model is not built, a tiny random model kept in the data dir."""
    if name != DEFAULT_MODEL or bundled_model_present(name):
        return ModelChoice(name, Path(name).name if Path(name).is_dir() and name not in CATALOG else name)
    from weights.random_janus import save_random_janus

    directory = data_dir / FALLBACK_DIR
    if not (directory / "config.json").is_file():
        save_random_janus(directory, preset="tiny", seed=0)
    return ModelChoice(str(directory), "tiny random stand-in for shapes", FALLBACK_NOTICE)


class Models:
    """The loaded pipeline. Choosing another engine in the settings switches the token loops over
    the same loaded weights (`ReasonerPipeline.use_engine`); model tasks run one at a time."""

    def __init__(self, choice: ModelChoice, device: str, engine: str):
        self.choice = choice
        self.device = device
        self.default_engine = engine
        self._lock = threading.Lock()
        self._pipeline = ReasonerPipeline.from_pretrained(choice.source, device=device, engine=check_engine(engine))

    @property
    def engine(self) -> str:
        return self._pipeline.engine

    def pipeline(self, engine: str | None = None) -> ReasonerPipeline:
        """The pipeline on `engine` (the current one if None); an engine that fails to start
        leaves the current one serving."""
        with self._lock:
            self._pipeline.use_engine(check_engine(engine or self.engine))
            return self._pipeline

    def current(self) -> ReasonerPipeline:
        """The loaded pipeline, whatever its engine (for checks that run no model)."""
        return self._pipeline

    def info_markdown(self) -> str:
        info = self.pipeline().info
        return (
            f"**Model:** {self.choice.label}  \n"
            f"**Size:** {info.parameters / 1e6:.1f} M parameters, {info.dtype}, draws {info.image_size} px  \n"
            f"**Device:** {info.device}  \n"
            f"**World:** {info.world} ({self.current().world.description})"
        )
