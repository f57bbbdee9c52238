"""`python -m reasoner bench`: the JSON contract of docs/engines.md and the RESULTS.md section (no timings checked)."""

import json

from reasoner.cli import main
from reasoner.commands.bench import update_results_md

KEYS = {"model", "engine", "batch", "images_per_s", "ms_per_step", "peak_mem_mb"}


def test_bench_writes_rows_and_a_results_section(tmp_path, capsys):
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Benchmark results\n\n## Reference engine on an H100\n\nkept as it is\n")
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "--models",
        "tiny",
        "--engines",
        "hf,fast",
        "--repeats",
        "1",
        "--json",
        str(out),
        "--results-md",
        str(results_md),
    ]
    assert main(args + ["--batches", "1,2"]) == 0
    data = json.loads(out.read_text())
    assert data["device"].startswith("CPU")
    rows = data["results"]
    assert [(r["model"], r["engine"], r["batch"]) for r in rows] == [
        ("tiny (random weights)", engine, batch) for batch in (1, 2) for engine in ("hf", "fast")
    ]
    for row in rows:
        assert set(row) >= KEYS and row["images_per_s"] > 0 and row["ms_per_step"] > 0 and row["peak_mem_mb"] > 0
        assert row["image_tokens"] == 81 and row["first_plan_token_ms"] > 0
    text = results_md.read_text()
    assert "kept as it is" in text and f"## Engines side by side: {data['device']}" in text
    assert "| tiny (random weights) | fast | 2 |" in text
    assert "bench: tiny (random weights) fast batch 2" in capsys.readouterr().err  # progress on stderr

    # a second run replaces its own rows and its own section, keeping the rest
    assert main(args + ["--batches", "2"]) == 0
    rows = json.loads(out.read_text())["results"]
    assert sorted((r["engine"], r["batch"]) for r in rows) == [("fast", 1), ("fast", 2), ("hf", 1), ("hf", 2)]
    text = results_md.read_text()
    assert text.count("## Engines side by side") == 1 and "kept as it is" in text


def test_results_sections_are_kept_per_device(tmp_path):
    path = tmp_path / "RESULTS.md"
    update_results_md(path, "GPU A", "## A\nold\n")
    update_results_md(path, "CPU B", "## B\n")
    update_results_md(path, "GPU A", "## A\nnew\n")
    text = path.read_text()
    assert "new" in text and "old" not in text and text.index("## A") < text.index("## B")


def test_bad_bench_arguments_are_one_line_errors(tmp_path, capsys):
    assert (
        main(["bench", "--models", "tiny", "--batches", "one", "--json", str(tmp_path / "x.json"), "--no-results-md"])
        == 2
    )
    assert "--batches 'one'" in capsys.readouterr().err
    assert (
        main(
            [
                "bench",
                "--models",
                "tiny",
                "--engines",
                "tensorrt",
                "--json",
                str(tmp_path / "x.json"),
                "--no-results-md",
            ]
        )
        == 2
    )
    assert "engine 'tensorrt' is not one of" in capsys.readouterr().err


def test_a_think_generate_model_gets_diffusers_rows_beside_the_janus_ones(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--models", "tiny,tiny-think-generate", "--engines", "hf", "--repeats", "1", "--batches", "1,2"]
    assert main(args + ["--json", str(out), "--no-results-md"]) == 0
    rows = json.loads(out.read_text())["results"]
    think_generate = [r for r in rows if r["engine"] == "diffusers"]
    assert [(r["model"], r["batch"]) for r in think_generate] == [("tiny-think-generate (random)", b) for b in (1, 2)]
    assert {r["engine"] for r in rows} == {"hf", "diffusers"}
    for row in think_generate:
        assert set(row) >= KEYS and row["images_per_s"] > 0 and row["first_plan_token_ms"] > 0
