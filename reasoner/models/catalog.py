"""Model names the library knows, and where their files are. Nothing here downloads anything.

An entry is a model directory, or `Adapted(base, adapter)`: a base model directory plus a LoRA
adapter directory merged into it at load time (what finetune trains). An adapted entry is listed
and loads only once its adapter directory exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError

# The bundled model's files live in the repository's weights/ folder (built by `python -m weights.build`);
# the library only reads that path, it imports nothing from weights/.
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


@dataclass(frozen=True)
class Adapted:
    """A catalog entry that is a base model directory plus a LoRA adapter directory."""

    base: Path
    adapter: Path

    @property
    def available(self) -> bool:
        return (self.adapter / "adapter_config.json").is_file()


CATALOG: dict[str, Path | Adapted] = {
    "shapes": WEIGHTS_DIR / "shapes",  # the bundled default (trained on the shapes world, docs/shapes-world.md)
    # the bundled model after GRPO (python -m finetune writes the adapter); listed once it exists
    "shapes-grpo": Adapted(WEIGHTS_DIR / "shapes", WEIGHTS_DIR / "shapes-grpo"),
    # the think-then-generate model (python -m weights.build shapes-diffusion writes it); listed once it exists
    "shapes-diffusion": WEIGHTS_DIR / "shapes-diffusion",
}
DEFAULT_MODEL = "shapes"
# Plain entries listed only once their directory is built: the command that builds each
BUILT_LATER = {"shapes-diffusion": "python -m weights.build shapes-diffusion"}


@dataclass(frozen=True)
class ModelSource:
    """What to load: a model directory, the name it is shown by, an adapter to merge in, and which
    backend reads it (`model_kind`)."""

    directory: Path
    name: str
    adapter: Path | None = None
    kind: str = "janus"


THINK_GENERATE = "think-generate"  # reasoner/backends/think_generate.py


def model_kind(directory: Path) -> str:
    """Which backend reads `directory`: "think-generate" when its reasoner.json says so, or, when
    that file is missing or unreadable, when it has a planner/ or renderer/ (so that backend's
    loader names the fault); "janus" otherwise, whose loader reports anything else as before."""
    try:
        kind = json.loads((directory / "reasoner.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = THINK_GENERATE if (directory / "planner").is_dir() or (directory / "renderer").is_dir() else None
    return THINK_GENERATE if kind == THINK_GENERATE else "janus"


def model_present(directory: Path) -> bool:
    """A bundled entry's files are there: a Janus config.json or a think-then-generate reasoner.json."""
    return (directory / "config.json").is_file() or (
        (directory / "reasoner.json").is_file() and model_kind(directory) == THINK_GENERATE
    )


def catalog_names() -> list[str]:
    """The names one can choose now: every plain entry, and each adapted one whose adapter exists."""
    return [name for name, entry in CATALOG.items() if available(name, entry)]


def available(name: str, entry: Path | Adapted) -> bool:
    if isinstance(entry, Adapted):
        return entry.available
    return name not in BUILT_LATER or model_present(entry)


def missing_base(name: str, directory: Path) -> ModelLoadError:
    return ModelLoadError(
        f"the bundled model {name!r} is missing from {directory}: pass --model DIR with a "
        "Hugging Face Janus directory (`python -m weights.random_janus DIR` writes a small random one)"
    )


def resolve(name_or_dir: str, adapter: str | Path | None = None) -> ModelSource:
    """The source of a catalog name or a local directory, with `adapter` (a LoRA adapter directory,
    `--adapter`) merged in when given; it is shown as `name+adapter`."""
    entry = CATALOG.get(name_or_dir)
    if isinstance(entry, Adapted):
        if adapter is not None:
            raise ModelLoadError(f"{name_or_dir!r} is a base model plus an adapter already; --adapter cannot add one")
        if not entry.available:
            raise ModelLoadError(
                f"{name_or_dir!r} is not available: its adapter {entry.adapter} has not been trained yet "
                f"(choose one of {', '.join(catalog_names())})"
            )
        if not model_present(entry.base):
            raise missing_base(name_or_dir, entry.base)
        return ModelSource(entry.base, name_or_dir, entry.adapter, model_kind(entry.base))
    if entry is not None:
        if name_or_dir in BUILT_LATER and not model_present(entry):
            raise ModelLoadError(
                f"{name_or_dir!r} is not available: {entry} has not been built yet ({BUILT_LATER[name_or_dir]}; "
                f"choose one of {', '.join(catalog_names())})"
            )
        if not model_present(entry):
            raise missing_base(name_or_dir, entry)
        directory = entry
    else:
        directory = Path(name_or_dir).expanduser()
    if adapter is None:
        return ModelSource(directory, name_or_dir, kind=model_kind(directory))
    return ModelSource(directory, f"{name_or_dir}+{adapter}", Path(adapter).expanduser(), model_kind(directory))


def base_and_adapter(name_or_dir: str) -> tuple[str, Path | None]:
    """A base-plus-adapter catalog entry as (its base directory, its adapter); anything else as
    (itself, None). Learning from such an entry continues its adapter, so what it learns replaces
    that adapter on the same base."""
    entry = CATALOG.get(name_or_dir)
    if isinstance(entry, Adapted):
        return str(entry.base), entry.adapter
    return name_or_dir, None


def add_adapted(name_or_dir: str, adapter: str | Path) -> str:
    """Enter `name_or_dir` plus the adapter directory `adapter` in the catalog, as `name+adapter`
    (the studio's --adapter: the UI then loads and shows it as any catalog model); returns the name."""
    source = resolve(name_or_dir)
    name = f"{source.name}+{adapter}"
    CATALOG[name] = Adapted(source.directory, Path(adapter).expanduser())
    return name


def resolve_model(name_or_dir: str) -> tuple[Path, str]:
    """(directory, display name) for a catalog name or a local directory (an adapted entry: its base)."""
    source = resolve(name_or_dir)
    return source.directory, source.name
