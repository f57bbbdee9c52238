import random

import pytest

from reasoner.errors import PlanError, ReasonerError
from reasoner.shapes import Scene, ShapeObject, extract_plan_text, format_plan, parse_plan, random_scene


def test_round_trip_on_random_scenes():
    rng = random.Random(11)
    for _ in range(1000):
        scene = random_scene(rng)
        assert 1 <= len(scene) <= 4
        plan = format_plan(scene)
        assert parse_plan(plan) == scene
        assert format_plan(parse_plan(plan)) == plan


def test_scene_equality_ignores_input_order():
    rng = random.Random(3)
    for _ in range(200):
        scene = random_scene(rng)
        shuffled = list(scene.objects)
        rng.shuffle(shuffled)
        assert Scene.from_objects(shuffled) == scene
        assert hash(Scene(tuple(shuffled))) == hash(scene)


def test_format_is_canonical_reading_order():
    scene = Scene.from_objects(
        [
            ShapeObject("blue", "square", 1, 1),
            ShapeObject("red", "circle", 0, 0),
            ShapeObject("green", "triangle", 0, 2),
        ]
    )
    assert format_plan(scene) == "red circle @ top-left; green triangle @ top-right; blue square @ middle-center"
    assert [o.cell for o in scene] == ["top-left", "top-right", "middle-center"]


def test_parse_is_tolerant_of_case_whitespace_and_trailing_separator():
    expected = parse_plan("red circle @ top-left; blue square @ middle-center")
    assert parse_plan("  RED  Circle@Top-Left ;\n blue square @ middle - center ; ") == expected
    assert parse_plan("red circle @ top-left; blue square @ middle-center.") == expected


def test_plan_follows_the_last_marker():
    text = "I think. Plan: green circle @ top-left\nOn reflection...\nplan:  red circle @ top-left  "
    assert extract_plan_text(text) == "red circle @ top-left"
    assert extract_plan_text("  red circle @ top-left ") == "red circle @ top-left"
    assert parse_plan(text) == Scene((ShapeObject("red", "circle", 0, 0),))


@pytest.mark.parametrize(
    "plan, message",
    [
        ("", "empty plan"),
        ("  ", "empty plan"),
        ("The sky is blue. Plan:", "empty plan"),
        ("red circle top-left", 'clause 1 "red circle top-left": expected "COLOR SHAPE @ ROW-COLUMN"'),
        ("big red circle @ top-left", 'clause 1 "big red circle @ top-left": expected "COLOR SHAPE @ ROW-COLUMN"'),
        (
            "red circle @ top-left; blue squre @ top-right",
            'clause 2 "blue squre @ top-right": unknown shape "squre" (expected circle, square or triangle)',
        ),
        (
            "purple circle @ top-left",
            'clause 1 "purple circle @ top-left": unknown color "purple" (expected red, green, blue or yellow)',
        ),
        (
            "red circle @ top-middle",
            'clause 1 "red circle @ top-middle": unknown cell "top-middle" '
            "(expected ROW-COLUMN with ROW top, middle or bottom and COLUMN left, center or right)",
        ),
        ("red circle @ top-left;; blue square @ top-right", "clause 2 is empty"),
        (
            "red circle @ top-left; blue square @ top-center; red circle @ top-right; "
            "red square @ middle-left; red square @ middle-center",
            "5 objects; a plan holds at most 4",
        ),
        (
            "red circle @ top-left; blue square @ bottom-right; green square @ top-left",
            "two objects in cell top-left (clauses 1 and 3)",
        ),
    ],
)
def test_plan_errors_name_the_fault(plan, message):
    with pytest.raises(PlanError) as caught:
        parse_plan(plan)
    assert str(caught.value) == message
    assert isinstance(caught.value, ReasonerError)
    assert "\n" not in str(caught.value)


def test_scene_rejects_two_objects_in_a_cell_and_too_many_objects():
    with pytest.raises(PlanError, match="two objects in cell middle-center"):
        Scene.from_objects([ShapeObject("red", "circle", 1, 1), ShapeObject("blue", "square", 1, 1)])
    with pytest.raises(PlanError, match="5 objects; a scene holds at most 4"):
        Scene.from_objects(ShapeObject("red", "circle", r, c) for r, c in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)])


def test_shape_object_validates_and_names_its_cell():
    assert ShapeObject("yellow", "triangle", 2, 1).cell == "bottom-center"
    with pytest.raises(ValueError):
        ShapeObject("pink", "circle", 0, 0)
    with pytest.raises(ValueError):
        ShapeObject("red", "circle", 3, 0)


def test_random_scene_is_seeded_and_bounded():
    first = [random_scene(random.Random(5)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = random.Random(8)
    sizes = {len(random_scene(rng, 2, 3)) for _ in range(200)}
    assert sizes == {2, 3}
    with pytest.raises(ValueError):
        random_scene(rng, 1, 5)
