"""PNG files stored once by content hash under the data directory: `images/ab/abcdef....png`."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..pngmeta import save_png

IMAGES_DIR = "images"


@dataclass(frozen=True)
class StoredImage:
    hash: str  # sha256 of the file's bytes
    path: str  # relative to the data directory
    bytes: int


def png_bytes(image: Image.Image, recipe: dict) -> bytes:
    """The PNG file of `image` carrying `recipe` (reasoner.pngmeta): same inputs, same bytes."""
    buffer = io.BytesIO()
    save_png(image, buffer, recipe)
    return buffer.getvalue()


def relative_path(digest: str) -> str:
    return f"{IMAGES_DIR}/{digest[:2]}/{digest}.png"


def put_image(data_dir: Path, png: bytes) -> StoredImage:
    """Write `png` under `data_dir` unless a file with the same hash is there; return where it is.

    The file appears whole or not at all (written beside, flushed to disk, then renamed), so a
    database row that names it never points at half a picture, even after a crash.
    """
    digest = hashlib.sha256(png).hexdigest()
    relative = relative_path(digest)
    final = data_dir / relative
    if final.is_file() and final.stat().st_size == len(png):
        return StoredImage(digest, relative, len(png))
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{digest}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as file:
            file.write(png)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return StoredImage(digest, relative, len(png))
