"""Render scenes to 72 x 72 images, exactly as docs/shapes-world.md draws them.

Shapes are rasterised by pixel centres (a pixel is filled when its centre lies inside the shape),
with no anti-aliasing, so rendering is exact and deterministic.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image

from reasoner.shapes.plan import Scene, ShapeObject, parse_plan
from reasoner.shapes.world import (
    BACKGROUND,
    CANVAS_SIZE,
    CELL_SIZE,
    CIRCLE_RADIUS,
    COLORS,
    SQUARE_SIDE,
    TRIANGLE_BASE,
    TRIANGLE_HEIGHT,
)

# Pixel-centre coordinates of the whole canvas; y first, as numpy indexes images.
_Y, _X = np.mgrid[0:CANVAS_SIZE, 0:CANVAS_SIZE] + 0.5


@cache
def shape_mask(shape: str, row: int, col: int, dx: int = 0, dy: int = 0) -> np.ndarray:
    """Boolean canvas mask of one shape centred in its cell, moved by (dx, dy) pixels."""
    cx = col * CELL_SIZE + CELL_SIZE / 2 + dx
    cy = row * CELL_SIZE + CELL_SIZE / 2 + dy
    if shape == "circle":
        mask = (_X - cx) ** 2 + (_Y - cy) ** 2 <= CIRCLE_RADIUS**2
    elif shape == "square":
        half = SQUARE_SIDE / 2
        mask = (np.abs(_X - cx) <= half) & (np.abs(_Y - cy) <= half)
    elif shape == "triangle":
        # Apex at the top centre, 16 px base at the bottom, 14 px tall, centred vertically. Each
        # of the 14 pixel rows takes the triangle's width at its lower edge, so the apex row has
        # 2 pixels and the base row all 16 (sampling at row centres would lose the apex row).
        top = cy - TRIANGLE_HEIGHT / 2
        row_bottom = _Y + 0.5 - top  # depth below the apex of each pixel row's lower edge
        half_width = row_bottom * (TRIANGLE_BASE / 2) / TRIANGLE_HEIGHT
        inside_rows = (row_bottom >= 1) & (row_bottom <= TRIANGLE_HEIGHT)
        mask = inside_rows & (np.abs(_X - cx) <= half_width)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask.flags.writeable = False  # cached: nobody may change it
    return mask


def draw_object(pixels: np.ndarray, obj: ShapeObject, offset: tuple[int, int] = (0, 0)) -> None:
    """Paint one object into an (H, W, 3) uint8 array; `offset` (dx, dy) moves it off centre."""
    dx, dy = offset
    pixels[shape_mask(obj.shape, obj.row, obj.col, dx, dy)] = COLORS[obj.color]


def blank_canvas() -> np.ndarray:
    pixels = np.empty((CANVAS_SIZE, CANVAS_SIZE, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    return pixels


def render_scene(scene: Scene) -> Image.Image:
    """The one image of a scene: 72 x 72 RGB, black background, each object centred in its cell."""
    pixels = blank_canvas()
    for obj in scene.objects:
        draw_object(pixels, obj)
    return Image.fromarray(pixels, mode="RGB")


def render_plan(text: str) -> Image.Image:
    """Render a plan (or a model's output ending in one); raises `PlanError` if it is invalid."""
    return render_scene(parse_plan(text))
