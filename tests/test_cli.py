"""`python -m reasoner generate`: the results contract of README's Command line section and one-line errors for
bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasoner.cli import main
from reasoner.pngmeta import read_recipe

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"prompt_index", "prompt", "candidate", "seed", "plan", "reflection", "image", "model", "engine", "seconds"}


def generate(*args):
    return main(["generate", *map(str, args)])


def read_results(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_generate_writes_results_and_pngs_with_their_recipe(tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\nthree squares\n")
    out = tmp_path / "out"
    assert generate("--prompts", prompts, "--model", tiny_model_dir, "--n", 2, "--seed", 5, "--out", out) == 0
    rows = read_results(out)
    assert [(r["prompt_index"], r["candidate"], r["seed"]) for r in rows] == [
        (0, 0, 5),
        (0, 1, 6),
        (1, 0, 5),
        (1, 1, 6),
    ]
    for row in rows:
        assert set(row) >= FIELDS
        assert row["plan"] and row["reflection"] is None and row["engine"] == "fast"  # the default engine
        recipe = read_recipe(out / row["image"])
        assert recipe["prompt"] == row["prompt"] and recipe["seed"] == row["seed"] and recipe["plan"] == row["plan"]
    assert not (out / "results.jsonl.partial").exists()


def test_same_seed_same_plan_and_image_bytes(tiny_model_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert (
            generate(
                "--prompt", "a blue square", "--model", tiny_model_dir, "--n", 2, "--plan-temperature", 1, "--out", out
            )
            == 0
        )
        runs.append([(r["plan"], (out / r["image"]).read_bytes()) for r in read_results(out)])
    assert runs[0] == runs[1]


def test_no_think_person_plan_and_reflect(tiny_model_dir, tmp_path):
    assert (
        generate("--prompt", "a red circle", "--model", tiny_model_dir, "--n", 1, "--no-think", "--out", tmp_path / "d")
        == 0
    )
    assert read_results(tmp_path / "d")[0]["plan"] is None

    plan = "red circle @ top-left"
    assert (
        generate(
            "--prompt", "a red circle", "--model", tiny_model_dir, "--n", 1, "--plan", plan, "--out", tmp_path / "p"
        )
        == 0
    )
    assert read_results(tmp_path / "p")[0]["plan"] == plan

    assert (
        generate("--prompt", "a red circle", "--model", tiny_model_dir, "--n", 2, "--reflect", "--out", tmp_path / "r")
        == 0
    )
    for row in read_results(tmp_path / "r"):
        assert row["reflection"] and (tmp_path / "r" / row["first_image"]).is_file()


def run_cli(*args):
    """The command as a person runs it: a fresh process, exit code and stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "reasoner", "generate", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


def assert_one_line_error(result, fragment):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert fragment in lines[-1], lines


def test_subprocess_success(tiny_model_dir, tmp_path):
    result = run_cli("--prompt", "a red circle", "--model", tiny_model_dir, "--n", 1, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(read_results(tmp_path)) == 1


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--prompt", "  "], "the prompt is empty"),
        (["--prompt", "x" * 400], "400 characters long"),
        (["--prompt", "a red circle", "--n", 0], "n=0 is out of range"),
        (["--prompt", "a red circle", "--n", 99], "n=99 is out of range"),
        (["--prompt", "a red circle", "--plan", "red circle @ top-left; blue square @ top-left"], "top-left"),
        (["--prompts", "/nonexistent/prompts.txt"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_no_results(tiny_model_dir, tmp_path, capsys, args, fragment):
    assert generate(*args, "--model", tiny_model_dir, "--out", tmp_path / "out") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert fragment in error[-1] and error[-1].startswith("error: ")
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_unknown_engine_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        generate("--prompt", "a red circle", "--engine", "tensorrt", "--out", tmp_path / "out")
    assert exit_.value.code == 2 and "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_missing_model_dir_in_a_fresh_process(tmp_path):
    """As a person sees it: exit 2, one line naming the fault, no traceback."""
    assert_one_line_error(
        run_cli("--prompt", "a", "--model", tmp_path / "nope", "--out", tmp_path / "o"), "does not exist"
    )


def test_unwritable_output_dir(tiny_model_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert generate("--prompt", "a", "--model", tiny_model_dir, "--out", blocker / "out") == 2
    assert "cannot be written" in capsys.readouterr().err


def test_a_failed_run_leaves_no_stale_results(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    assert generate("--prompt", "a red circle", "--model", tiny_model_dir, "--n", 1, "--no-think", "--out", out) == 0
    assert (out / "results.jsonl").exists()
    # the second run fails on its plan: the old results.jsonl must not pass for this run's
    assert (
        generate("--prompt", "a red circle", "--model", tiny_model_dir, "--plan", "green blob @ nowhere", "--out", out)
        == 2
    )
    assert not (out / "results.jsonl").exists()
