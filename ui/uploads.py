"""Uploaded pictures: only a PNG of bounded size is opened, and only its recipe is read."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from reasoner.errors import ReasonerError
from reasoner.pngmeta import read_recipe
from reasoner.records import LAST_SEED, MAX_PLAN_CHARS, DrawSettings

from . import arguments

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
                raise UploadError(
                    f"that picture is {image.width} x {image.height}; the studio opens at most 4096 x 4096"
                )
        recipe = read_recipe(path)
    except Image.DecompressionBombError:
        raise UploadError(
            "that PNG's header claims far more pixels than any studio picture: a decompression bomb; it was not opened"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UploadError("that file is not a picture the studio can open") from None
    if not isinstance(recipe, dict) or "prompt" not in recipe:
        raise UploadError("that PNG carries no studio recipe (prompt, plan, seed, settings)")
    return recipe


def checked_recipe(recipe: dict, default_cfg_scale: float) -> dict:
    """A recipe's fields as the sliders and boxes take them, each checked like the form's own input
    (a PNG's text chunk is anyone's to write): prompt, plan, seed, cfg_scale, temperature, plan_temperature."""
    field = recipe.get
    try:
        return {
            "prompt": arguments.text(recipe["prompt"], "the recipe's prompt"),
            "plan": plan_text(field("plan", None)),
            "seed": arguments.whole(field("seed", 0), "the recipe's seed", 0, LAST_SEED),
            "cfg_scale": arguments.real(field("cfg_scale", default_cfg_scale), "the recipe's cfg_scale", 1.0, 20.0),
            "temperature": arguments.real(
                field("temperature", DrawSettings.temperature), "the recipe's temperature", 0.0, 5.0
            ),
            "plan_temperature": arguments.real(
                field("plan_temperature", DrawSettings.plan_temperature), "the recipe's plan_temperature", 0.0, 5.0
            ),
        }
    except arguments.ArgumentError as error:
        raise UploadError(str(error)) from None


def plan_text(plan) -> str:
    text = arguments.text(plan, "the recipe's plan", optional=True)
    if len(text) > MAX_PLAN_CHARS:
        raise arguments.ArgumentError(
            f"the recipe's plan is {len(text)} characters long; the limit is {MAX_PLAN_CHARS}"
        )
    return text
