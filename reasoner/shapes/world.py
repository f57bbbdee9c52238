"""Every constant of the shapes world (v1), in one place.

The world is specified in docs/shapes-world.md; the renderer, the detector, the prompt grammar and
the benchmark all read their numbers from here, so a change to the world is a change to this file
(and to docs/shapes-world.md), never a silent drift inside one of them. What the pipeline asks of
the world (check a plan, the text a model reads for it, score a picture) is `shapes_world.py`.
"""

from __future__ import annotations

# Canvas and grid: 3 x 3 cells of 24 px, so with 8 px image-token patches each cell is exactly
# 3 x 3 tokens and an object's tokens depend on that object alone.
CANVAS_SIZE = 72
CELL_SIZE = 24
GRID_SIZE = 3
BACKGROUND = (0, 0, 0)

ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")

# Exact fill RGB of each palette color.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 190, 60),
    "blue": (40, 80, 240),
    "yellow": (245, 215, 30),
}
SHAPES = ("circle", "square", "triangle")

MIN_OBJECTS = 1
MAX_OBJECTS = 4

# Object geometry, in pixels, centred in its cell inside a 16 x 16 box.
OBJECT_BOX = 16
CIRCLE_RADIUS = 8
SQUARE_SIDE = 14
TRIANGLE_BASE = 16
TRIANGLE_HEIGHT = 14

# Detector. A pixel counts for a color within this Euclidean RGB distance of its fill; palette
# colors are more than 160 apart, so no pixel counts for two colors.
COLOR_TOLERANCE = 80.0
MIN_COMPONENT_PIXELS = 20  # smaller components are noise, not objects
SQUARE_MIN_FILL = 0.9  # fill ratio of the component in its bounding box: >= this is a square
CIRCLE_MIN_FILL = 0.65  # ... >= this (and below SQUARE_MIN_FILL) a circle, below it a triangle
MAX_OFFSET = 3  # a detector must accept objects this far off centre (px, either axis)

# Cells, named ROW-COLUMN, listed in reading order (row by row, left to right).
CELLS: tuple[tuple[int, int], ...] = tuple((r, c) for r in range(GRID_SIZE) for c in range(GRID_SIZE))
CENTER_CELL = (1, 1)
CORNER_CELLS: tuple[tuple[int, int], ...] = ((0, 0), (0, 2), (2, 0), (2, 2))


def cell_name(row: int, col: int) -> str:
    """`top-left`, `middle-center`, ... for a (row, column) pair."""
    return f"{ROWS[row]}-{COLUMNS[col]}"


CELL_NAMES: tuple[str, ...] = tuple(cell_name(r, c) for r, c in CELLS)
CELL_BY_NAME: dict[str, tuple[int, int]] = {cell_name(r, c): (r, c) for r, c in CELLS}


def or_list(words) -> str:
    """`a, b or c`: how error messages list the expected words."""
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
