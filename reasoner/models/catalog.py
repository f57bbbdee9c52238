"""Model names the library knows, and where their files are. Nothing here downloads anything."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelLoadError

# The bundled model's files live in the repository's weights/ folder (built by `python -m weights.build`);
# the library only reads that path, it imports nothing from weights/.
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
CATALOG = {
    "shapes": WEIGHTS_DIR / "shapes",  # the bundled default (trained on the shapes world, docs/shapes-world.md)
}
DEFAULT_MODEL = "shapes"


def resolve_model(name_or_dir: str) -> tuple[Path, str]:
    """(directory, display name) for a catalog name or a local directory."""
    if name_or_dir in CATALOG:
        directory = CATALOG[name_or_dir]
        if not (directory / "config.json").is_file():
            raise ModelLoadError(
                f"the bundled model {name_or_dir!r} is missing from {directory}: pass --model DIR with a "
                "Hugging Face Janus directory (`python -m weights.random_janus DIR` writes a small random one)"
            )
        return directory, name_or_dir
    return Path(name_or_dir).expanduser(), name_or_dir
