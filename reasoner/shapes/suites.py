"""Seeded prompt suites for training and evaluation, balanced over the eight categories.

Each category has a generator that writes prompts of its templates; the category a prompt is
scored under is the generator's (the `colors` and `attribution` templates read exactly like
`single` and `two` ones, so the text alone cannot tell them apart):
- single: one object, any color and shape (`a red circle`, `one red circle`);
- colors: one object, the four colors taken in turn (`a green square`);
- two: two objects of different shapes, colors free (`a red circle and a red square`);
- attribution: two objects differing in both color and shape, so swapped attributes fail;
- counting, position, placement: as in docs/shapes-world.md; reasoning: every reference, in turn.

Generators take each template form in turn (form i of a category is i modulo its number of
forms), so a suite with at least as many prompts per category as forms covers every form; the
31 reasoning forms are the 16 color, 5 shape and 3 number references and the 7 layouts.

Split rule: a prompt text belongs to `dev` when the SHA-256 of a fixed salt plus its canonical
text (lower case, single spaces) is 0 modulo 5, else to `train`. The split is a property of the
text, so the two suites can never share a prompt, whatever their seeds and sizes. Within a suite
a prompt repeats only when its form has no unused text left in its split (the whole `single` and
`colors` space is 24 texts, so dev holds only a few of them).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass

from reasoner.shapes.references import (
    COLOR_REFERENCE_FORMS,
    COLOR_REFERENCES,
    LAYOUTS,
    NUMBER_REFERENCES,
    SHAPE_REFERENCES,
)
from reasoner.shapes.requirements import RELATIONS
from reasoner.shapes.world import COLORS, CORNER_CELLS, SHAPES, cell_name

CATEGORIES = ("single", "two", "counting", "colors", "position", "attribution", "placement", "reasoning")
SPLITS = ("train", "dev")
DEV_ONE_IN = 5  # one prompt text in five belongs to dev
# Hashed before the text. Fixed, and picked (the first of `shapes-v1-K:`, K = 0, 1, ...) so that
# every template form has texts in both splits: the smallest forms hold only 6 texts (`a red
# SHAPE`, `one red SHAPE`), which an unsalted hash happens to put all in train.
_SPLIT_SALT = "shapes-v1-4:"
_ATTEMPTS = 100  # draws per form before settling for a repeat
_FORM_SHIFTS = 8  # forms tried in turn when one has no text in the split

_COLOR_NAMES = tuple(COLORS)
_COUNT_WORDS = {2: "two", 3: "three", 4: "four"}


@dataclass(frozen=True)
class SuitePrompt:
    prompt: str
    category: str  # one of CATEGORIES: the generator's, which scoring reports


def canonical_prompt(text: str) -> str:
    return " ".join(text.lower().split())


def prompt_split(text: str) -> str:
    """`dev` or `train`, from a hash of the canonical text (the same on every machine)."""
    digest = hashlib.sha256((_SPLIT_SALT + canonical_prompt(text)).encode("utf-8")).digest()
    return "dev" if int.from_bytes(digest[:8], "big") % DEV_ONE_IN == 0 else "train"


# --- phrase helpers ------------------------------------------------------------------------------


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _objects(count_word: str, color: str | None, shape: str, plural: bool) -> str:
    words = [count_word, color, shape + ("s" if plural else "")]
    return " ".join(word for word in words if word)


def _one(rng: random.Random, distinct_from: tuple[str, str] | None = None) -> tuple[str, str]:
    while True:
        pair = (rng.choice(_COLOR_NAMES), rng.choice(SHAPES))
        if pair != distinct_from:
            return pair


# --- one generator per category: (rng, form index) -> prompt text -------------------------------


def _single(rng, form):
    color, shape = _one(rng)
    return f"{('a', 'one')[form % 2]} {color} {shape}"


def _colors(rng, form):
    color = _COLOR_NAMES[form % len(_COLOR_NAMES)]
    return f"{rng.choice(('a', 'one'))} {color} {rng.choice(SHAPES)}"


def _two(rng, form):
    first, second = rng.sample(SHAPES, 2)
    return f"a {rng.choice(_COLOR_NAMES)} {first} and a {rng.choice(_COLOR_NAMES)} {second}"


def _attribution(rng, form):
    first, second = rng.sample(SHAPES, 2)
    color_a, color_b = rng.sample(_COLOR_NAMES, 2)
    return f"a {color_a} {first} and a {color_b} {second}"


_COUNTING_FORMS = ("two", "a pair of", "three", "four")


def _counting(rng, form):
    color = rng.choice((None, *_COLOR_NAMES))  # `three circles`, `three red circles`
    return _objects(_COUNTING_FORMS[form % len(_COUNTING_FORMS)], color, rng.choice(SHAPES), plural=True)


def _position(rng, form):
    relation = tuple(RELATIONS)[form % len(RELATIONS)]
    first = _one(rng)
    second = _one(rng, distinct_from=first)
    return f"a {first[0]} {first[1]} {relation} a {second[0]} {second[1]}"


_PLACES = tuple(f"in the {cell_name(*cell)} corner" for cell in CORNER_CELLS) + ("in the center",)


def _placement(rng, form):
    color, shape = _one(rng)
    return f"{rng.choice(('a', 'one'))} {color} {shape} {_PLACES[form % len(_PLACES)]}"


# Reasoning forms, the four kinds interleaved so that even a short suite mixes them.
_REASONING_ITEMS = tuple(
    item
    for group in itertools.zip_longest(COLOR_REFERENCES, SHAPE_REFERENCES, NUMBER_REFERENCES, LAYOUTS)
    for item in group
    if item is not None
)


def _with_color_reference(rng, reference, form_of_reference):
    count_word = rng.choice(("a", "a", "two"))
    plural = count_word != "a"
    noun = rng.choice(SHAPES) + ("s" if plural else "")
    template = COLOR_REFERENCE_FORMS[form_of_reference]
    if template.startswith("{name}"):  # `a sky-colored circle`
        adjective = template.format(name=reference.name)
        count_word = _article(adjective) if count_word == "a" else count_word
        text = f"{count_word} {adjective} {noun}"
    else:  # `a circle the color of the sky`, `a circle colored like the sky`
        text = f"{count_word} {noun} {template.format(phrase=reference.phrase)}"
    if rng.random() < 1 / 3:  # sometimes beside a plainly named object
        color, shape = _one(rng)
        text += f" and a {color} {shape}"
    return text


def _with_layout(rng, layout):
    shape = rng.choice(SHAPES)
    color = rng.choice((None, *_COLOR_NAMES))
    if rng.random() < 0.5:  # all alike: `three circles in a row across the top`
        return f"{_objects(_COUNT_WORDS[layout.size], color, shape, plural=True)} {layout.phrase}"
    first = _one(rng)
    rest = _objects(_COUNT_WORDS.get(layout.size - 1, "a"), color, shape, plural=layout.size > 2)
    return f"a {first[0]} {first[1]} and {rest} {layout.phrase}"


def _reasoning(rng, form):
    item = _REASONING_ITEMS[form % len(_REASONING_ITEMS)]
    cycle = form // len(_REASONING_ITEMS)
    if item in COLOR_REFERENCES:
        # Rotate the three forms over the references, and over cycles for each reference.
        which = (COLOR_REFERENCES.index(item) + cycle) % len(COLOR_REFERENCE_FORMS)
        return _with_color_reference(rng, item, which)
    if item in SHAPE_REFERENCES:
        count_word = rng.choice(("a", "one", "two"))
        color = rng.choice((None, *_COLOR_NAMES))
        noun = "shapes" if count_word == "two" else "shape"
        return f"{_objects(count_word, color, noun, plural=False)} with {item.feature}"
    if item in NUMBER_REFERENCES:
        color = rng.choice((None, *_COLOR_NAMES))
        return f"as many {_objects('', color, rng.choice(SHAPES), plural=True)} as {item.phrase}"
    return _with_layout(rng, item)


# Each category's generator and its number of template forms.
_GENERATORS = {
    "single": (_single, 2),
    "two": (_two, 1),
    "counting": (_counting, len(_COUNTING_FORMS)),
    "colors": (_colors, len(_COLOR_NAMES)),
    "position": (_position, len(RELATIONS)),
    "attribution": (_attribution, 1),
    "placement": (_placement, len(_PLACES)),
    "reasoning": (_reasoning, len(_REASONING_ITEMS)),
}
FORMS_PER_CATEGORY = {category: forms for category, (_, forms) in _GENERATORS.items()}


def _draw(generator, rng: random.Random, form: int, split: str, used: set[str]) -> str:
    """A prompt of this form in this split, unused in the suite if any such can be found.

    A form with no text at all in the split (the 3 texts of `a red SHAPE` may all hash to train)
    gives way to the next form.
    """
    for shift in range(_FORM_SHIFTS):
        repeat = None
        for _ in range(_ATTEMPTS):
            text = generator(rng, form + shift)
            if prompt_split(text) != split:
                continue
            if text not in used:
                return text
            repeat = repeat or text
        if repeat is not None:
            return repeat
    raise RuntimeError(f"no {split} prompt found near form {form} of {generator.__name__}")


def make_suite(split: str, n: int, seed: int) -> list[SuitePrompt]:
    """`n` prompts of one split, balanced over CATEGORIES (counts differ by at most one),
    interleaved by category, the same for the same (split, n, seed)."""
    if split not in SPLITS:
        raise ValueError(f'unknown split "{split}" (expected train or dev)')
    if n < 0:
        raise ValueError("n must be at least 0")
    per_category = []
    for index, category in enumerate(CATEGORIES):
        quota = n // len(CATEGORIES) + (index < n % len(CATEGORIES))
        rng = random.Random(f"shapes-suite:{split}:{seed}:{category}")
        used: set[str] = set()
        prompts = []
        for form in range(quota):
            text = _draw(_GENERATORS[category][0], rng, form, split, used)
            used.add(text)
            prompts.append(SuitePrompt(text, category))
        per_category.append(prompts)
    return [p for row in itertools.zip_longest(*per_category) for p in row if p is not None]
