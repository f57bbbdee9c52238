import random

import pytest

from reasoner.errors import InvalidPromptError
from reasoner.shapes import (
    PromptSpec,
    Unscorable,
    accuracy_by_category,
    make_suite,
    parse_plan,
    parse_prompt,
    render_plan,
    render_scene,
    resolve_prompt,
    sample_scene_for,
    score_image,
    score_scene,
)

# The world knowledge of docs/shapes-world.md, written out again here so that the tables in the code are
# checked against the page rather than against themselves.
COLOR_OF = {
    "sky": "blue", "sea": "blue", "ocean": "blue", "blueberry": "blue",
    "grass": "green", "leaf": "green", "frog": "green", "lime": "green",
    "sun": "yellow", "banana": "yellow", "lemon": "yellow", "egg yolk": "yellow",
    "blood": "red", "strawberry": "red", "tomato": "red", "fire truck": "red",
}  # fmt: skip


def spec(text) -> PromptSpec:
    parsed = parse_prompt(text)
    assert isinstance(parsed, PromptSpec), parsed
    return parsed


def holds(text, plan) -> bool:
    return spec(text).is_satisfied_by(parse_plan(plan))


@pytest.mark.parametrize("thing", sorted(COLOR_OF))
def test_every_color_reference_resolves_in_every_form(thing):
    color = COLOR_OF[thing]
    for text in (
        f"a circle the color of the {thing}",
        f"a circle the color of a {thing}",
        f"a circle the color of {thing}",
        f"a circle colored like a {thing}",
        f"a circle colored like the {thing}",
        f"a {thing}-colored circle",
        f"A {thing.upper()}-COLORED CIRCLE",
    ):
        parsed = spec(text)
        assert parsed.category == "reasoning"
        assert holds(text, f"{color} circle @ middle-center"), text
        other = "red" if color != "red" else "blue"
        assert not holds(text, f"{other} circle @ middle-center"), text
        assert color in resolve_prompt(text)


@pytest.mark.parametrize(
    "phrase, shape",
    [
        ("a shape with no corners", "circle"),
        ("a shape with three corners", "triangle"),
        ("a shape with three sides", "triangle"),
        ("a shape with four equal sides", "square"),
        ("a shape with four corners", "square"),
    ],
)
def test_every_shape_reference_resolves(phrase, shape):
    assert spec(phrase).category == "reasoning"
    for candidate in ("circle", "square", "triangle"):
        assert holds(phrase, f"green {candidate} @ top-left") == (candidate == shape)
    assert holds(f"two red {phrase[2:].replace('shape', 'shapes')}", f"red {shape} @ top-left; red {shape} @ top-right")
    assert f"is a {shape}" in resolve_prompt(phrase)


@pytest.mark.parametrize(
    "reference, count",
    [("a triangle has corners", 3), ("a square has sides", 4), ("a pair of shoes", 2)],
)
def test_every_number_reference_resolves(reference, count):
    text = f"as many squares as {reference}"
    assert spec(text).category == "reasoning"
    cells = ["top-left", "top-right", "bottom-left", "bottom-right"]
    for n in range(1, 5):
        plan = "; ".join(f"blue square @ {cell}" for cell in cells[:n])
        assert holds(text, plan) == (n == count)
    assert str(count) in resolve_prompt(text)


@pytest.mark.parametrize(
    "layout, cells",
    [
        ("in a row across the top", ["top-left", "top-center", "top-right"]),
        ("in a row across the middle", ["middle-left", "middle-center", "middle-right"]),
        ("in a row across the bottom", ["bottom-left", "bottom-center", "bottom-right"]),
        ("down the left side", ["top-left", "middle-left", "bottom-left"]),
        ("down the center side", ["top-center", "middle-center", "bottom-center"]),
        ("down the right side", ["top-right", "middle-right", "bottom-right"]),
    ],
)
def test_row_and_column_layouts(layout, cells):
    text = f"three circles {layout}"
    assert spec(text).category == "reasoning"
    assert holds(text, "; ".join(f"red circle @ {cell}" for cell in cells))
    elsewhere = "bottom-right" if "top-left" in cells else "top-left"
    assert not holds(text, "; ".join(f"red circle @ {cell}" for cell in cells[:2] + [elsewhere]))
    assert not holds(text, "; ".join(f"red circle @ {cell}" for cell in cells[:2]))
    mixed = f"a red square and two circles {layout}"
    assert holds(mixed, f"red square @ {cells[0]}; green circle @ {cells[1]}; blue circle @ {cells[2]}")


def test_opposite_corners_take_either_diagonal():
    text = "a red circle and a blue square in opposite corners"
    assert holds(text, "red circle @ top-left; blue square @ bottom-right")
    assert holds(text, "blue square @ top-right; red circle @ bottom-left")
    assert not holds(text, "red circle @ top-left; blue square @ top-right")
    assert not holds(text, "red circle @ top-left; blue square @ middle-center")


@pytest.mark.parametrize(
    "word, count",
    [("one", 1), ("a", 1), ("an", 1), ("two", 2), ("a pair of", 2), ("three", 3), ("four", 4)],
)
def test_number_words(word, count):
    text = f"{word} yellow triangles"
    cells = ["top-left", "top-right", "bottom-left", "bottom-right"]
    for n in range(1, 5):
        assert holds(text, "; ".join(f"yellow triangle @ {c}" for c in cells[:n])) == (n == count)


@pytest.mark.parametrize(
    "text, category, satisfying, failing",
    [
        ("a red circle", "single", "red circle @ bottom-right",
         ["blue circle @ top-left", "red square @ top-left", "red circle @ top-left; blue square @ top-right"]),
        ("a red circle and a blue square", "two", "blue square @ top-left; red circle @ bottom-center",
         ["red circle @ top-left", "red square @ top-left; blue circle @ top-right",
          "red circle @ top-left; blue square @ top-right; green triangle @ bottom-left"]),
        ("three circles", "counting", "red circle @ top-left; blue circle @ top-right; red circle @ middle-left",
         ["red circle @ top-left; blue circle @ top-right",
          "red circle @ top-left; blue circle @ top-right; red square @ middle-left",
          "red circle @ top-left; blue circle @ top-right; red circle @ middle-left; red circle @ bottom-left"]),
        ("two yellow triangles", "counting", "yellow triangle @ top-left; yellow triangle @ bottom-right",
         ["yellow triangle @ top-left; red triangle @ bottom-right", "yellow triangle @ top-left"]),
        ("a red circle left of a blue square", "position", "red circle @ bottom-left; blue square @ top-center",
         ["red circle @ top-center; blue square @ bottom-center", "red circle @ top-right; blue square @ top-left",
          "red circle @ top-left; blue square @ top-right; blue square @ bottom-right"]),
        ("a red circle right of a blue square", "position", "red circle @ top-right; blue square @ top-left",
         ["red circle @ top-left; blue square @ top-right"]),
        ("a red circle above a blue square", "position", "red circle @ top-right; blue square @ middle-left",
         ["red circle @ middle-left; blue square @ middle-right", "red circle @ bottom-left; blue square @ top-left"]),
        ("a red circle below a blue square", "position", "red circle @ bottom-right; blue square @ top-right",
         ["red circle @ top-left; blue square @ bottom-left"]),
        ("a blue circle in the top-left corner", "placement", "blue circle @ top-left",
         ["blue circle @ top-center", "blue circle @ top-left; red square @ bottom-right"]),
        ("a red square in the center", "placement", "red square @ middle-center",
         ["red square @ top-left", "red square @ middle-center; red square @ middle-left"]),
        ("a green square in the bottom-right corner", "placement", "green square @ bottom-right",
         ["green square @ bottom-left"]),
        ("a circle the color of the sky", "reasoning", "blue circle @ top-left",
         ["yellow circle @ top-left", "blue circle @ top-left; blue circle @ top-right"]),
        ("as many squares as a triangle has corners", "reasoning",
         "red square @ top-left; blue square @ middle-center; red square @ bottom-right",
         ["red square @ top-left; blue square @ middle-center",
          "red square @ top-left; blue square @ middle-center; red circle @ bottom-right"]),
    ],
)  # fmt: skip
def test_categories_satisfied_and_not(text, category, satisfying, failing):
    parsed = spec(text)
    assert parsed.category == category
    assert parsed.is_satisfied_by(parse_plan(satisfying))
    for plan in failing:
        assert not parsed.is_satisfied_by(parse_plan(plan)), plan
        assert parsed.explain_failure(parse_plan(plan))


def test_prompts_are_case_and_space_insensitive():
    assert holds("  A Red CIRCLE  To The Left Of  a blue square. ", "red circle @ top-left; blue square @ top-right")
    assert holds("a blue circle in the Top Left corner", "blue circle @ top-left")


@pytest.mark.parametrize(
    "text, reason",
    [
        ("a purple circle", 'unknown word "purple"'),
        ("a red dog", 'unknown word "dog"'),
        ("a circle the colour of the sky", 'unknown word "colour"'),
        ("circle red a", "expected a number"),
        ("four circles and a square", "asks for 5 objects"),
        ("two circles in a row across the top", "takes 3 objects"),
        ("two circles in the center", "no scene can satisfy it"),
        ("a red circle the color of the sky", "both red and blue"),
    ],
)
def test_prompts_the_checker_cannot_judge_are_unscorable(text, reason):
    parsed = parse_prompt(text)
    assert isinstance(parsed, Unscorable) and not parsed.scorable
    assert reason in parsed.reason
    score = score_image(render_plan("red circle @ top-left"), text)
    assert score.passed is None and score.reason.startswith("unscorable")
    assert resolve_prompt(text).startswith("unscorable")
    with pytest.raises(ValueError):
        sample_scene_for(parsed, random.Random(0))


def test_empty_prompt_is_an_error():
    with pytest.raises(InvalidPromptError, match="empty prompt"):
        parse_prompt("   ")


def test_resolution_states_references_and_needs():
    assert resolve_prompt("a circle the color of the sky") == "the sky is blue; needed: 1 blue circle, nothing else"
    assert resolve_prompt("as many red squares as a pair of shoes") == (
        "a pair of shoes is 2; needed: 2 red squares, nothing else"
    )
    text = resolve_prompt("two triangles in opposite corners")
    assert "top-left and bottom-right, or top-right and bottom-left" in text


def test_sampled_scenes_satisfy_their_prompts():
    rng = random.Random(99)
    suite = make_suite("train", 400, seed=1) + make_suite("dev", 400, seed=1)
    for item in suite:
        parsed = spec(item.prompt)
        for _ in range(3):
            scene = sample_scene_for(parsed, rng)
            assert parsed.is_satisfied_by(scene), (item.prompt, scene)
    for item in suite[:200]:  # and through the image, end to end
        image = render_scene(sample_scene_for(item.prompt, rng))
        score = score_image(image, item)
        assert score.passed and score.category == item.category


def test_scores_and_accuracy_by_category():
    good = score_scene(parse_plan("red circle @ top-left"), "a red circle")
    extra = score_image(render_plan("red circle @ top-left; blue square @ top-right"), "a red circle")
    unscorable = score_scene(parse_plan("red circle @ top-left"), "a red dog")
    assert good.passed is True and good.category == "single"
    assert extra.passed is False and "2 objects found" in extra.reason
    assert extra.scene == parse_plan("red circle @ top-left; blue square @ top-right")
    scene = parse_plan("red circle @ top-left; blue square @ top-right")
    position = score_scene(scene, "a blue square left of a red circle")
    assert position.passed is False and position.category == "position"
    accuracy = accuracy_by_category([good, extra, unscorable, position])
    assert accuracy == {"single": 0.5, "position": 0.0, "overall": 1 / 3}
