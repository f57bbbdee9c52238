"""The preference reward model (`python -m finetune reward-model`): it learns a taste from pixels.

Stores are built through the real Store API (think, draw, prefer, as the studio calls them) with
pictures of random shapes scenes drawn by the world's renderer, and verdicts from a synthetic
taste that looks at each scene. The reward model sees only the pictures and the prompts; it must
order held-out prompts' pairs as the taste does, for two unlike tastes, and stay near chance when
the verdicts are random.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from finetune.__main__ import main as finetune_main
from finetune.config import ConfigError, GRPOConfig
from finetune.preferences import MIN_PAIRS, RewardModelError, read_preferences, split_by_prompt
from finetune.reward_model import (
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    RewardModelConfig,
    load_reward_model,
    save_reward_model,
    train_reward_model,
)
from finetune.rewards import RewardEnsemble
from reasoner.shapes import make_suite
from reasoner.shapes.plan import Scene, ShapeObject, format_plan
from reasoner.shapes.render import blank_canvas, draw_object
from reasoner.shapes.world import CELL_SIZE, CELLS, COLORS, SHAPES
from reasoner.store import Actor, DrawRequest, NewCandidate, Store, png_bytes

ACTOR = Actor("anon-taste", "shapes", "hf")
SETTINGS = {"n": 4, "seed": 0, "cfg_scale": 1.0, "temperature": 1.0, "plan_temperature": 1.0}
WARM = {"red": 1.0, "yellow": 1.0, "green": -1.0, "blue": -1.0}


# -- synthetic pictures and tastes ----------------------------------------------------------------


class Picture:
    """A random scene drawn by the shapes renderer, each object up to 3 px off its cell's centre."""

    def __init__(self, rng: random.Random):
        cells = rng.sample(CELLS, rng.randint(1, 4))
        self.objects = [
            (ShapeObject(rng.choice(list(COLORS)), rng.choice(SHAPES), r, c), (rng.randint(-3, 3), rng.randint(-3, 3)))
            for r, c in cells
        ]
        pixels = blank_canvas()
        for obj, offset in self.objects:
            draw_object(pixels, obj, offset)
        self.pixels = pixels
        self.plan = format_plan(Scene.from_objects(o for o, _ in self.objects))

    def image(self):
        from PIL import Image

        return Image.fromarray(self.pixels, "RGB")

    def painted(self) -> np.ndarray:
        return self.pixels.any(-1)


def lowest(picture: Picture, prompt: str) -> float:
    """Prefers the picture whose objects sit lowest (mean height of their centres, in pixels)."""
    return float(np.mean([obj.row * CELL_SIZE + dy for obj, (_, dy) in picture.objects]))


def painted_area(picture: Picture, prompt: str) -> float:
    """Prefers more paint: more and larger objects (squares over circles over triangles)."""
    return float(picture.painted().sum())


def warmth(picture: Picture, prompt: str) -> float:
    """Prefers warm colours: red and yellow area counts for, green and blue against."""
    return float(
        sum(WARM[obj.color] * np.all(picture.pixels == COLORS[obj.color], -1).sum() for obj, _ in picture.objects)
    )


def asked_colour(picture: Picture, prompt: str) -> float:
    """Prefers more area of the first colour the prompt names (any paint when it names none):
    a taste that needs the prompt."""
    named = [word for word in prompt.split() if word in COLORS]
    if not named:
        return painted_area(picture, prompt)
    return float(np.all(picture.pixels == COLORS[named[0]], -1).sum())


def build_store(data_dir, taste, draws: int = 100, prompts: int = 25, seed: int = 0, random_verdicts: bool = False):
    """A studio store of `draws` draws of 4 candidates over `prompts` prompts, each given a verdict
    by `taste` (3 of 4 a pick, the rest a full ranking); `random_verdicts`: the verdicts are shuffled."""
    rng = random.Random(seed)
    store = Store.open(data_dir)
    texts = [p.prompt for p in make_suite("train", prompts, seed)]
    for draw in range(draws):
        prompt = texts[draw % len(texts)]
        pictures, values = [], []
        while len(pictures) < 4:  # a clear taste: no two candidates of a draw tie
            picture = Picture(rng)
            value = taste(picture, prompt)
            if all(abs(value - v) > 1e-6 for v in values):
                pictures.append(picture)
                values.append(value)
        order = sorted(range(4), key=lambda i: -values[i])
        if random_verdicts:
            rng.shuffle(order)
        thought = store.think(ACTOR, prompt, pictures[0].plan)
        candidates = [
            NewCandidate(draw * 4 + i, png_bytes(p.image(), {"prompt": prompt, "seed": draw * 4 + i}))
            for i, p in enumerate(pictures)
        ]
        drawn = store.draw(ACTOR, DrawRequest(prompt, pictures[0].plan, SETTINGS, candidates, turn_id=thought.turn_id))
        if draw % 4 == 3:
            store.prefer(ACTOR, drawn.draw_id, "rank", order)
        else:
            store.prefer(ACTOR, drawn.draw_id, "pick", order[:1])
    return store


def config(data_dir, out, **overrides) -> RewardModelConfig:
    values = {"data_dir": str(data_dir), "out": str(out), "epochs": 20, "progress": False, **overrides}
    return RewardModelConfig(**values)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_cli(data_dir, out, *flags: str) -> int:
    return finetune_main(["reward-model", "--data-dir", str(data_dir), "--out", str(out), "--no_progress", *flags])


@pytest.fixture(scope="module")
def lowest_store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("lowest") / "data", lowest, draws=120, prompts=30, seed=1)


@pytest.fixture(scope="module")
def lowest_model(lowest_store, tmp_path_factory):
    """A reward model of the 'lowest objects' taste, trained by the command line, and what it printed."""
    out = tmp_path_factory.mktemp("rm") / "lowest"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert train_cli(lowest_store.data_dir, out, "--epochs", "20", "--seed", "0", "--device", "cpu") == 0
    return SimpleNamespace(dir=out, printed=printed.getvalue())


# -- it learns a taste, and nothing from random verdicts -------------------------------------------


def test_learns_the_lowest_taste_on_held_out_prompts(lowest_model):
    metrics = json.loads((lowest_model.dir / METRICS_FILE).read_text())
    assert f"held-out accuracy {metrics['heldout_accuracy']:.3f}" in lowest_model.printed
    assert metrics["heldout_accuracy"] >= 0.8, metrics
    assert metrics["train_accuracy"] >= metrics["heldout_accuracy"] - 0.05
    # 120 draws: 90 picks (3 pairs each) and 30 full rankings (6 pairs each), 30 prompts
    assert metrics["train_pairs"] + metrics["heldout_pairs"] == 90 * 3 + 30 * 6
    prompts = len({p.prompt for p in make_suite("train", 30, 1)})  # 28: two come up twice
    assert metrics["train_prompts"] + metrics["heldout_prompts"] == prompts
    assert metrics["heldout_prompts"] == round(0.2 * prompts)
    assert metrics["verdicts"] == {"pick": 90, "rank": 30, "all_bad": 0}
    assert metrics["pictures"] == 480
    assert {"train_accuracy", "heldout_accuracy", "train_pairs", "heldout_pairs", "train_prompts"} <= set(metrics)


def test_learns_a_second_unlike_taste(tmp_path):
    store = build_store(tmp_path / "data", painted_area, draws=120, prompts=30, seed=2)
    _, metrics = train_reward_model(config(store.data_dir, tmp_path / "rm"))
    assert metrics["heldout_accuracy"] >= 0.8, metrics


def test_random_verdicts_stay_near_chance(tmp_path):
    store = build_store(tmp_path / "data", lowest, draws=120, prompts=30, seed=3, random_verdicts=True)
    _, metrics = train_reward_model(config(store.data_dir, tmp_path / "rm"))
    assert metrics["train_accuracy"] > 0.8  # it fits what it saw...
    assert abs(metrics["heldout_accuracy"] - 0.5) < 0.12, metrics  # ...and that says nothing of other prompts


def test_the_split_keeps_each_prompt_on_one_side(lowest_store):
    from finetune.preferences import read_preferences, split_by_prompt

    preferences = read_preferences(lowest_store.data_dir)
    train, heldout = split_by_prompt(preferences.pairs, 0.2, seed=0)
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in heldout})
    assert len(train) + len(heldout) == len(preferences.pairs)
    assert split_by_prompt(preferences.pairs, 0.2, seed=0) == (train, heldout)  # the seed fixes it
    assert split_by_prompt(preferences.pairs, 0.2, seed=1) != (train, heldout)


def test_all_bad_verdicts_give_negatives_only_when_asked(tmp_path):
    store = build_store(tmp_path / "data", lowest, draws=12, prompts=3, seed=4)
    prompt = store.recent_turns(1)[0].prompt
    drawn = store.draw(
        ACTOR,
        DrawRequest(
            prompt,
            None,
            SETTINGS,
            [NewCandidate(i, png_bytes(Picture(random.Random(i)).image(), {"seed": i})) for i in range(4)],
        ),
    )
    store.prefer(ACTOR, drawn.draw_id, "all_bad", [])
    from finetune.preferences import read_preferences

    plain = read_preferences(store.data_dir)
    assert plain.verdicts["all_bad"] == 1 and not any(p.all_bad for p in plain.pairs)
    negatives = read_preferences(store.data_dir, all_bad_negatives=True)
    extra = [p for p in negatives.pairs if p.all_bad]
    # each of the 4 bad pictures loses to the best of each of the prompt's 4 picks and rankings
    assert len(extra) == 4 * 4 and {p.prompt for p in extra} == {prompt}
    assert {p.rejected for p in extra} == {c.image_hash for c in drawn.candidates}


# -- saved, reloaded, scored the same ----------------------------------------------------------------


def test_saved_model_reloads_and_scores_identically(lowest_model, lowest_store, tmp_path):
    assert sorted(p.name for p in lowest_model.dir.iterdir()) == sorted([CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE])
    saved = json.loads((lowest_model.dir / CONFIG_FILE).read_text())
    assert saved["format"] == "reasoner-reward-model" and saved["training"]["epochs"] == 20
    pictures = [Picture(random.Random(100 + i)).image() for i in range(6)]
    prompts = ["a red circle", "two squares", "a red circle", "", "three blue triangles", "a red circle"]
    model = load_reward_model(lowest_model.dir)
    scores = model.score(pictures, prompts)
    again = load_reward_model(lowest_model.dir).score(pictures, prompts)
    assert scores == again
    # each picture is scored alone: order and company do not change its score
    reverse = model.score(pictures[::-1], prompts[::-1])[::-1]
    assert np.allclose(scores, reverse, atol=1e-6)
    assert np.allclose(model.score(pictures[:1], prompts[:1]), scores[:1], atol=1e-6)
    # saving again replaces the earlier reward model in place, whole
    copy = tmp_path / "copy"
    shutil.copytree(lowest_model.dir, copy)
    save_reward_model(model, copy, saved["training"], saved["metrics"])
    assert load_reward_model(copy).score(pictures, prompts) == scores
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial or old copy left


def test_it_prefers_low_pictures_it_never_saw(lowest_model):
    model = load_reward_model(lowest_model.dir)
    clear, right = 0, 0
    for i in range(40):
        rng = random.Random(500 + i)
        a, b = Picture(rng), Picture(rng)
        if abs(lowest(a, "") - lowest(b, "")) < 12:  # a clear difference: half a cell or more
            continue
        low, high = (a, b) if lowest(a, "") > lowest(b, "") else (b, a)
        score_low, score_high = model.score([low.image(), high.image()], ["a red circle", "a red circle"])
        clear += 1
        right += score_low > score_high
    assert clear >= 15 and right / clear >= 0.85, (right, clear)


# -- bad input: one line, exit code 2 ---------------------------------------------------------------


def one_pair_store(data_dir):
    store = Store.open(data_dir)
    pictures = [Picture(random.Random(i)).image() for i in range(2)]
    drawn = store.draw(
        ACTOR,
        DrawRequest(
            "a red circle", None, SETTINGS, [NewCandidate(i, png_bytes(p, {})) for i, p in enumerate(pictures)]
        ),
    )
    store.prefer(ACTOR, drawn.draw_id, "pick", [1])
    return store


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "data directory {data} does not exist"),
        ("no store", "holds no preference store"),
        ("no verdicts", "holds no preferences yet"),
        ("one pair", f"gives 1 preference pair; need at least {MIN_PAIRS} pairs"),
        ("one prompt", "pairs are of one prompt; need pairs of at least 2 prompts"),
        ("out is something else", "exists and is not an earlier reward model"),
        ("out is a file", "is a file, not a reward model directory"),
        ("bad epochs", "epochs=0: must be at least 1"),
        ("bad features", "features='clip': must be one of cnn, vq"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(case, expected, tmp_path, lowest_store, capsys):
    data, out, flags = tmp_path / "data", tmp_path / "rm", []
    if case == "no store":
        data.mkdir()
    elif case == "no verdicts":
        Store.open(data).think(ACTOR, "a red circle", "red circle @ top-left")
    elif case == "one pair":
        one_pair_store(data)
    elif case == "one prompt":
        build_store(data, lowest, draws=4, prompts=1)
    elif case.startswith("out"):
        data = lowest_store.data_dir
        if case == "out is a file":
            out.write_text("not a model")
        else:
            out.mkdir()
            (out / "notes.txt").write_text("keep me")
    elif case == "bad epochs":
        flags = ["--epochs", "0"]
    elif case == "bad features":
        flags = ["--features", "clip"]
    assert train_cli(data, out, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert expected.format(data=data) in err
    if case == "out is something else":
        assert (out / "notes.txt").read_text() == "keep me"
    elif case != "out is a file":
        assert not out.exists()


@pytest.mark.parametrize(
    "fault, expected",
    [
        ("no dir", "reward model directory {rm} does not exist"),
        ("no config", "has no config.json: not a reward model"),
        ("corrupt config", "config.json is not valid JSON"),
        ("other config", "config.json is not a reward model's config"),
        ("no weights", "has no model.safetensors: the reward model is incomplete"),
        ("corrupt weights", "model.safetensors cannot be read, the file is corrupt"),
        ("wrong weights", "model.safetensors does not fit"),
    ],
)
def test_loading_a_broken_reward_model_says_what_is_wrong(fault, expected, lowest_model, tmp_path):
    from safetensors.torch import save_file

    rm = tmp_path / "rm"
    if fault != "no dir":
        shutil.copytree(lowest_model.dir, rm)
    if fault == "no config":
        (rm / CONFIG_FILE).unlink()
    elif fault == "corrupt config":
        (rm / CONFIG_FILE).write_text('{"format": "reasoner-rew')
    elif fault == "other config":
        (rm / CONFIG_FILE).write_text('{"model_type": "janus"}')
    elif fault == "no weights":
        (rm / WEIGHTS_FILE).unlink()
    elif fault == "corrupt weights":
        (rm / WEIGHTS_FILE).write_bytes((rm / WEIGHTS_FILE).read_bytes()[:500])
    elif fault == "wrong weights":
        save_file({"taste": torch.zeros(3)}, rm / WEIGHTS_FILE)
    with pytest.raises(RewardModelError) as caught:
        load_reward_model(rm)
    message = str(caught.value)
    assert "\n" not in message and expected.format(rm=rm) in message, message


# -- the GRPO reward ----------------------------------------------------------------------------------


def test_preference_reward_scores_trajectories_in_the_ensemble(lowest_model):
    pictures = [Picture(random.Random(900 + i)).image() for i in range(3)]
    prompts = ["a red circle", "a red circle", "two blue squares"]
    plans = ["Plan: red circle @ top-left", "", "Plan: blue square @ top-left; blue square @ top-right"]
    ensemble = RewardEnsemble.of(["checker", "preference"], [1.0, 0.5], preference_model=str(lowest_model.dir))
    totals, components = ensemble(prompts, plans, pictures)
    scores = load_reward_model(lowest_model.dir).score(pictures, prompts)
    calibration = json.loads((lowest_model.dir / CONFIG_FILE).read_text())["calibration"]
    expected = [1 / (1 + math.exp(-(s - calibration["mean"]) / calibration["std"])) for s in scores]
    assert components["preference"] == pytest.approx(expected)
    assert totals == pytest.approx([c + 0.5 * p for c, p in zip(components["checker"], expected)])
    with pytest.raises(ConfigError, match="preference needs a reward model directory"):
        RewardEnsemble.of(["preference"], [1.0])


def test_preference_is_standardised_on_the_training_pictures_and_bounded(lowest_model, lowest_store):
    """The raw score's scale is arbitrary (tens for a model that fits its pairs); the reward GRPO
    sums with the checker is the score standardised by the training pictures', in (0, 1)."""
    model = load_reward_model(lowest_model.dir)
    calibration = json.loads((lowest_model.dir / CONFIG_FILE).read_text())["calibration"]
    assert calibration == model.calibration and calibration["std"] > 0
    preferences = read_preferences(lowest_store.data_dir)
    train, _ = split_by_prompt(preferences.pairs, 0.2, 0)
    seen = {}
    for pair in train:
        for image_hash in (pair.chosen, pair.rejected):
            seen[image_hash] = pair.prompt
    pictures = [Image.open(preferences.images[h]) for h in seen]
    scores = np.array(model.score(pictures, list(seen.values())))
    assert scores.mean() == pytest.approx(calibration["mean"], abs=1e-3 * calibration["std"])
    assert scores.std(ddof=1) == pytest.approx(calibration["std"], rel=1e-3)
    preference = np.array(model.preference(pictures, list(seen.values())))
    assert ((preference > 0) & (preference < 1)).all()
    assert 0.35 < preference.mean() < 0.65  # a typical training picture sits near the middle
    order = np.argsort(scores)
    assert (np.diff(preference[order]) >= 0).all()  # the same order as the score


def test_grpo_config_requires_an_existing_preference_model(lowest_model, tmp_path):
    common = {"out": str(tmp_path / "run"), "rewards": ["checker", "preference"], "reward_weights": [1.0, 1.0]}
    with pytest.raises(ConfigError, match=r"^preference_model='': the preference reward needs"):
        GRPOConfig(**common)
    with pytest.raises(ConfigError, match=r"^preference_model='.*nowhere': does not exist"):
        GRPOConfig(**common, preference_model=str(tmp_path / "nowhere"))
    assert GRPOConfig(**common, preference_model=str(lowest_model.dir)).preference_model == str(lowest_model.dir)
    assert GRPOConfig(out=str(tmp_path / "run")).preference_model == ""  # not needed without the reward
