import collections
import re

import pytest

from reasoner.shapes import CATEGORIES, PromptSpec, make_suite, parse_prompt, prompt_split

STRUCTURE_OF = {"colors": "single", "attribution": "two"}  # same templates, told apart by the suite
COLOR_THINGS = [
    "sky", "sea", "ocean", "blueberry", "grass", "leaf", "frog", "lime",
    "sun", "banana", "lemon", "egg yolk", "blood", "strawberry", "tomato", "fire truck",
]  # fmt: skip
SHAPE_FEATURES = ["no corners", "three corners", "three sides", "four equal sides", "four corners"]
NUMBER_PHRASES = ["a triangle has corners", "a square has sides", "a pair of shoes"]
LAYOUTS = [
    "in a row across the top", "in a row across the middle", "in a row across the bottom",
    "down the left side", "down the center side", "down the right side", "in opposite corners",
]  # fmt: skip


def test_suites_are_deterministic_for_a_seed():
    assert make_suite("train", 120, seed=4) == make_suite("train", 120, seed=4)
    assert make_suite("dev", 120, seed=4) == make_suite("dev", 120, seed=4)
    assert make_suite("train", 120, seed=4) != make_suite("train", 120, seed=5)


def test_suites_are_balanced_over_categories():
    suite = make_suite("dev", 803, seed=0)
    counts = collections.Counter(item.category for item in suite)
    assert set(counts) == set(CATEGORIES) and len(suite) == 803
    assert max(counts.values()) - min(counts.values()) <= 1
    assert make_suite("train", 0, seed=0) == []
    with pytest.raises(ValueError):
        make_suite("test", 8, seed=0)


def test_train_and_dev_never_share_a_prompt():
    train = make_suite("train", 2000, seed=0) + make_suite("train", 800, seed=1)
    dev = make_suite("dev", 2000, seed=0) + make_suite("dev", 800, seed=1)
    train_texts = {item.prompt.lower() for item in train}
    dev_texts = {item.prompt.lower() for item in dev}
    assert not train_texts & dev_texts
    assert {prompt_split(t) for t in train_texts} == {"train"}
    assert {prompt_split(t) for t in dev_texts} == {"dev"}
    assert prompt_split("A  Red circle") == prompt_split("a red circle")  # split follows canonical text


@pytest.mark.parametrize("split", ["train", "dev"])
def test_suite_prompts_parse_into_their_category(split):
    for item in make_suite(split, 800, seed=2):
        parsed = parse_prompt(item.prompt)
        assert isinstance(parsed, PromptSpec), (item, parsed)
        assert parsed.category == STRUCTURE_OF.get(item.category, item.category), item


@pytest.mark.parametrize("split", ["train", "dev"])
def test_suites_cover_every_form_and_reference(split):
    suite = make_suite(split, 8 * 40, seed=3)  # 40 per category: more than any category's forms
    texts = collections.defaultdict(list)
    for item in suite:
        texts[item.category].append(item.prompt)

    def covers(category, pattern):
        return any(re.search(pattern, text) for text in texts[category])

    assert covers("single", r"^a ") and covers("single", r"^one ")
    for color in ("red", "green", "blue", "yellow"):
        assert covers("colors", rf"^(a|one) {color} ")
    for number in ("two", "a pair of", "three", "four"):
        assert covers("counting", rf"^{number} ")
    for relation in ("left of", "right of", "above", "below"):
        assert covers("position", rf" {relation} ")
    for place in ("top-left corner", "top-right corner", "bottom-left corner", "bottom-right corner", "center"):
        assert covers("placement", rf"in the {place}$")
    assert covers("two", " and ") and covers("attribution", " and ")

    for thing in COLOR_THINGS:
        assert covers("reasoning", rf"\b{thing}\b"), thing
    for form in (r"the color of", r"colored like", r"-colored "):
        assert covers("reasoning", form), form
    for feature in SHAPE_FEATURES:
        assert covers("reasoning", rf"with {feature}$"), feature
    for phrase in NUMBER_PHRASES:
        assert covers("reasoning", rf"^as many .* as {phrase}$"), phrase
    for layout in LAYOUTS:
        assert covers("reasoning", rf"{layout}$"), layout
