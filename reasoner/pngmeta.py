"""PNG files that carry their own recipe: prompt, plan, seed, settings and model in a text chunk."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, PngImagePlugin

RECIPE_KEY = "reasoner-recipe"


def save_png(image: Image.Image, path: str | Path, recipe: dict) -> None:
    """Write `image` with `recipe` as JSON in an iTXt chunk. Same pixels and recipe, same bytes."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(RECIPE_KEY, json.dumps(recipe, sort_keys=True, ensure_ascii=False))
    image.save(path, format="PNG", pnginfo=info)


def read_recipe(path: str | Path) -> dict | None:
    """The recipe stored in a PNG by `save_png`, or None if it has none."""
    with Image.open(path) as image:
        text = image.text.get(RECIPE_KEY) if hasattr(image, "text") else None
    return json.loads(text) if text else None
