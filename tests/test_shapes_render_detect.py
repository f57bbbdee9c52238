import random

import numpy as np
import pytest

from reasoner.errors import PlanError
from reasoner.shapes import Scene, ShapeObject, detect, draw_object, random_scene, render_plan, render_scene
from reasoner.shapes.render import blank_canvas

PALETTE = {"red": (230, 30, 30), "green": (30, 190, 60), "blue": (40, 80, 240), "yellow": (245, 215, 30)}


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max(), xs.min(), xs.max()


def test_image_is_72_rgb_black_with_exact_palette_fills():
    image = render_plan("red circle @ top-left; green square @ middle-center; blue triangle @ bottom-right")
    assert image.size == (72, 72) and image.mode == "RGB"
    pixels = np.asarray(image)
    colors = {tuple(int(v) for v in p) for p in pixels.reshape(-1, 3)}
    assert colors == {(0, 0, 0), PALETTE["red"], PALETTE["green"], PALETTE["blue"]}
    assert render_scene(Scene()).getextrema() == ((0, 0), (0, 0), (0, 0))


def test_rendering_is_deterministic():
    plan = "yellow triangle @ top-center; red square @ bottom-left"
    assert render_plan(plan).tobytes() == render_plan(plan).tobytes()


def test_geometry_follows_the_spec():
    def mask_of(shape):
        pixels = np.asarray(render_scene(Scene((ShapeObject("red", shape, 1, 1),))))
        return pixels.any(axis=-1)

    # Cell middle-center spans [24, 48); its 16 px box is [28, 44).
    circle = mask_of("circle")
    assert _bbox(circle) == (28, 43, 28, 43)
    assert 0.75 <= circle.sum() / 256 <= 0.85
    square = mask_of("square")
    assert _bbox(square) == (29, 42, 29, 42) and square.sum() == 14 * 14
    triangle = mask_of("triangle")
    top, bottom, left, right = _bbox(triangle)
    assert (bottom - top + 1, right - left + 1) == (14, 16)  # height 14, base 16
    assert triangle[bottom, left : right + 1].all()  # the base is the bottom row
    apex = np.nonzero(triangle[top])[0]
    assert apex.tolist() == [35, 36]  # apex at the top centre (x = 36)
    assert 0.45 <= triangle.sum() / (14 * 16) <= 0.6


def test_render_plan_rejects_invalid_plans():
    with pytest.raises(PlanError, match="two objects in cell top-left"):
        render_plan("red circle @ top-left; blue circle @ top-left")


def test_detect_recovers_2000_random_scenes_exactly():
    rng = random.Random(2024)
    for _ in range(2000):
        scene = random_scene(rng)
        detection = detect(render_scene(scene))
        assert detection.scene == scene
        assert detection.noise_pixels == 0 and detection.stray_pixels == 0


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
def test_detect_accepts_objects_off_centre_by_up_to_3_px(shape):
    for row, col in [(0, 0), (1, 1), (2, 2), (0, 2)]:
        obj = ShapeObject("green", shape, row, col)
        for dx in range(-3, 4):
            for dy in range(-3, 4):
                pixels = blank_canvas()
                draw_object(pixels, obj, (dx, dy))
                assert detect(pixels).scene == Scene((obj,)), (dx, dy)


def test_full_scenes_with_every_object_shifted_stay_apart():
    rng = random.Random(7)
    for _ in range(300):
        scene = random_scene(rng, 2, 4)
        pixels = blank_canvas()
        for obj in scene:
            draw_object(pixels, obj, (rng.randint(-3, 3), rng.randint(-3, 3)))
        assert detect(pixels).scene == scene


def test_noise_blobs_under_20_px_are_ignored():
    scene = Scene((ShapeObject("blue", "square", 1, 1),))
    pixels = np.asarray(render_scene(scene)).copy()
    pixels[2:6, 2:6] = PALETTE["red"]  # 16 px
    pixels[60:64, 2:6] = PALETTE["yellow"]  # 16 px
    pixels[64, 2:5] = PALETTE["yellow"]  # joins the blob above: 19 px
    pixels[2:4, 60:62] = PALETTE["green"]  # 4 px
    detection = detect(pixels)
    assert detection.scene == scene
    assert detection.noise_pixels == 16 + 19 + 4
    pixels[64, 5] = PALETTE["yellow"]  # 20 px: now an object
    assert len(detect(pixels).objects) == 2


def test_colors_count_within_distance_80_and_stray_pixels_are_counted():
    rng = np.random.default_rng(0)
    scene = Scene((ShapeObject("yellow", "circle", 0, 1), ShapeObject("red", "triangle", 2, 0)))
    pixels = np.asarray(render_scene(scene)).astype(int)
    jitter = rng.integers(-25, 26, size=pixels.shape)  # at most sqrt(3) * 25 < 80 away
    noisy = np.clip(pixels + jitter * (pixels.sum(-1, keepdims=True) > 0), 0, 255).astype(np.uint8)
    noisy[70, 70] = (128, 128, 128)  # neither background nor a palette color
    detection = detect(noisy)
    assert detection.scene == scene
    assert detection.stray_pixels == 1


def test_color_tolerance_is_80_inclusive():
    pixels = blank_canvas()
    pixels[2:7, 2:7] = (230, 110, 30)  # exactly 80 from red
    pixels[50:55, 50:55] = (230, 111, 30)  # just over 80 from red, far from the rest
    detection = detect(pixels)
    assert [(o.color, o.cell) for o in detection.objects] == [("red", "top-left")]
    assert detection.stray_pixels == 25


def test_two_components_in_one_cell_are_reported_without_a_scene():
    pixels = blank_canvas()
    pixels[2:8, 2:8] = PALETTE["red"]
    pixels[14:20, 14:20] = PALETTE["blue"]
    detection = detect(pixels)
    assert len(detection.objects) == 2 and {o.cell for o in detection.objects} == {"top-left"}
    assert detection.scene is None and not detection.valid_scene
    assert detection.problem == "two objects in cell top-left"


def test_more_than_four_objects_are_reported_without_a_scene():
    pixels = blank_canvas()
    for row, col in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]:
        draw_object(pixels, ShapeObject("red", "square", row, col))
    detection = detect(pixels)
    assert len(detection.objects) == 5
    assert detection.scene is None and detection.problem == "5 objects; a scene holds at most 4"


def test_detect_rejects_other_image_sizes():
    with pytest.raises(ValueError, match="72x72"):
        detect(np.zeros((64, 64, 3), dtype=np.uint8))
