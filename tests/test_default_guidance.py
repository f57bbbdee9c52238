"""A run that names no guidance scale draws at the model's own, and its PNG recipes say which."""

import json
import shutil

from reasoner.cli import main
from reasoner.pngmeta import read_recipe


def test_generate_without_cfg_records_the_models_own_scale(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    template = json.loads((model_dir / "reasoner.json").read_text())
    (model_dir / "reasoner.json").write_text(json.dumps({**template, "default_cfg_scale": 2.5}))
    out = tmp_path / "out"
    code = main(
        [
            "generate",
            "--prompt",
            "a red circle",
            "--model",
            str(model_dir),
            "--n",
            "1",
            "--engine",
            "hf",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    (row,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert read_recipe(out / row["image"])["cfg_scale"] == 2.5
