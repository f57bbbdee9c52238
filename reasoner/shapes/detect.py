"""The reference detector of docs/shapes-world.md: recover each object's color, shape and cell from an image.

For each palette color: mask the pixels within COLOR_TOLERANCE of its fill, split the mask into
connected components, drop components under MIN_COMPONENT_PIXELS as noise, put each remaining
component in the cell holding its centroid, and name its shape by how much of its bounding box
it fills.

Connectivity is 8 (pixels touching at a corner belong together): a triangle's staircase edge, or
a thin anti-aliased edge from a model, can hang together by corners only, and 4-connectivity would
break such a shape into pieces that count as extra objects or noise. Distinct objects never
touch: even moved 3 px towards each other, neighbouring objects keep a gap of 2 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from reasoner.shapes.plan import Scene, ShapeObject
from reasoner.shapes.world import (
    BACKGROUND,
    CANVAS_SIZE,
    CELL_SIZE,
    CIRCLE_MIN_FILL,
    COLOR_TOLERANCE,
    COLORS,
    GRID_SIZE,
    MAX_OBJECTS,
    MIN_COMPONENT_PIXELS,
    SQUARE_MIN_FILL,
    cell_name,
)

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class DetectedObject:
    """One component taken for an object, with the measurements that named it."""

    color: str
    shape: str
    row: int
    col: int
    pixels: int
    fill_ratio: float  # component pixels / bounding-box area
    centroid: tuple[float, float]  # (x, y) in pixels

    @property
    def cell(self) -> str:
        return cell_name(self.row, self.col)

    def to_shape_object(self) -> ShapeObject:
        return ShapeObject(self.color, self.shape, self.row, self.col)


@dataclass(frozen=True)
class Detection:
    """What the detector saw in one image.

    `objects` lists every object found, in reading order, even when they cannot form a scene
    (two in one cell, or more than MAX_OBJECTS); then `scene` is None and `problem` says why.
    """

    objects: tuple[DetectedObject, ...]
    noise_pixels: int  # palette-colored pixels in components too small to be objects
    stray_pixels: int  # pixels farther than COLOR_TOLERANCE from background and every palette color
    scene: Scene | None
    problem: str | None

    @property
    def valid_scene(self) -> bool:
        return self.scene is not None


def shape_from_fill(fill_ratio: float) -> str:
    if fill_ratio >= SQUARE_MIN_FILL:
        return "square"
    if fill_ratio >= CIRCLE_MIN_FILL:
        return "circle"
    return "triangle"


def _cell_index(coordinate: float) -> int:
    return min(GRID_SIZE - 1, max(0, int(coordinate // CELL_SIZE)))


def _as_pixels(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    pixels = np.asarray(image)
    if pixels.shape != (CANVAS_SIZE, CANVAS_SIZE, 3):
        raise ValueError(f"expected a {CANVAS_SIZE}x{CANVAS_SIZE} RGB image, got an array of shape {pixels.shape}")
    return pixels.astype(np.float32)


# Reference colors in a fixed order: the background first, then the palette.
_REFERENCE_NAMES = ("background", *COLORS)
_REFERENCE_RGB = np.asarray([BACKGROUND, *COLORS.values()], dtype=np.float32)


def _color_masks(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """For each reference color, the pixels within COLOR_TOLERANCE of it, all at once as
    |p - c|^2 = |p|^2 - 2 p.c + |c|^2 (one small matrix product; exact, as every term is an
    integer well inside float32's 2^24)."""
    flat = pixels.reshape(-1, 3)
    distance_squared = (
        (flat**2).sum(axis=1, keepdims=True) - 2 * flat @ _REFERENCE_RGB.T + (_REFERENCE_RGB**2).sum(axis=1)
    )
    within = (distance_squared <= COLOR_TOLERANCE**2).T.reshape(len(_REFERENCE_NAMES), *pixels.shape[:2])
    return dict(zip(_REFERENCE_NAMES, within))


def _components(color: str, mask: np.ndarray) -> tuple[list[DetectedObject], int]:
    """The objects of one color mask, and how many of its pixels were noise."""
    labels, _ = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    objects, noise = [], 0
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        component = labels[box] == index
        size = int(component.sum())
        if size < MIN_COMPONENT_PIXELS:
            noise += size
            continue
        ys, xs = np.nonzero(component)
        # Pixel centres sit at +0.5; the box's start puts the component back on the canvas.
        cx = float(xs.mean()) + box[1].start + 0.5
        cy = float(ys.mean()) + box[0].start + 0.5
        fill = size / component.size
        objects.append(
            DetectedObject(
                color=color,
                shape=shape_from_fill(fill),
                row=_cell_index(cy),
                col=_cell_index(cx),
                pixels=size,
                fill_ratio=fill,
                centroid=(cx, cy),
            )
        )
    return objects, noise


def _scene_problem(objects: list[DetectedObject]) -> str | None:
    if len(objects) > MAX_OBJECTS:
        return f"{len(objects)} objects; a scene holds at most {MAX_OBJECTS}"
    seen: set[tuple[int, int]] = set()
    for obj in objects:
        if (obj.row, obj.col) in seen:
            return f"two objects in cell {obj.cell}"
        seen.add((obj.row, obj.col))
    return None


def detect(image: Image.Image | np.ndarray) -> Detection:
    """Detect the objects of a 72 x 72 RGB image (a PIL image or an (H, W, 3) array)."""
    pixels = _as_pixels(image)
    masks = _color_masks(pixels)
    objects: list[DetectedObject] = []
    noise_pixels = 0
    for color in COLORS:
        if masks[color].any():
            found, noise = _components(color, masks[color])
            objects.extend(found)
            noise_pixels += noise
    matched = np.logical_or.reduce(list(masks.values()))
    objects.sort(key=lambda o: (o.row, o.col, o.color, o.shape))
    problem = _scene_problem(objects)
    scene = None if problem else Scene.from_objects(o.to_shape_object() for o in objects)
    return Detection(
        objects=tuple(objects),
        noise_pixels=noise_pixels,
        stray_pixels=int((~matched).sum()),
        scene=scene,
        problem=problem,
    )


def detect_scene(image: Image.Image | np.ndarray) -> Scene | None:
    """The detected scene, or None when the objects found cannot form one."""
    return detect(image).scene
