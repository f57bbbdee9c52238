"""Uploaded pictures: only a PNG of bounded size is opened, and only its recipe is read."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from reasoner.errors import ReasonerError
from reasoner.pngmeta import read_recipe

MAX_RECIPE_PIXELS = 4096 * 4096


class UploadError(ReasonerError):
    """An upload that is not what the studio can open."""


def recipe_of_upload(path: str | Path | None) -> dict:
    """The recipe a studio PNG carries; UploadError for anything else."""
    if not path:
        raise UploadError("no file was uploaded")
    try:
        with Image.open(path) as image:  # reads the header only
            if image.format != "PNG":
                raise UploadError(f"that file is a {image.format or 'non-image'} file; open a PNG the studio saved")
            if image.width * image.height > MAX_RECIPE_PIXELS:
                raise UploadError(f"that picture is {image.width} x {image.height}; the studio opens at most 4096 x 4096")
        recipe = read_recipe(path)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UploadError("that file is not a picture the studio can open") from None
    if not isinstance(recipe, dict) or "prompt" not in recipe:
        raise UploadError("that PNG carries no studio recipe (prompt, plan, seed, settings)")
    return recipe
