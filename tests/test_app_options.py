"""`python app.py` options: bad ones exit with code 2 and one line; the page is built with the five
API steps and, while the bundled model is missing, the notice that its pictures are noise."""

from __future__ import annotations

import pytest

from app import main
from ui.config import parse_auth, parse_config
from ui.models import FALLBACK_NOTICE


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--queue-size", "0"], "--queue-size 0 must be at least 1"),
        (["--max-upload-mb", "0"], "--max-upload-mb 0"),
        (["--auth", "no-colon"], "--auth takes USER:PASSWORD"),
        (["--auth", "@/nonexistent/users.txt"], "cannot be read"),
        (["--model", "/nonexistent/model"], "does not exist"),
        (["--learn-setting", "steps"], "--learn-setting 'steps': write SETTING=VALUE"),
        (["--learn-setting", "out=/tmp/x"], "--learn-setting 'out' is not a finetune learn setting"),
        (["--learn-setting", "steps=0"], "--learn-setting: steps=0: must be at least 1"),
    ],
)
def test_bad_options_exit_2_with_one_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--data-dir", str(tmp_path / "data"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_data_dir_that_cannot_be_made_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["--data-dir", str(blocker / "data"), "--device", "cpu"]) == 2
    assert "cannot be" in capsys.readouterr().err


def test_environment_and_auth_files(tmp_path, monkeypatch):
    users = tmp_path / "users.txt"
    users.write_text("ann:pw1\n\nbob:pw:with:colons\n")
    assert parse_auth([f"@{users}", "cy:pw3"]) == (("ann", "pw1"), ("bob", "pw:with:colons"), ("cy", "pw3"))
    monkeypatch.setenv("REASONER_MODEL", "/some/model")
    monkeypatch.setenv("REASONER_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("REASONER_AUTH", "ann:pw")
    config = parse_config(["--device", "cpu"])
    assert (config.model, config.data_dir, config.auth, config.host) == (
        "/some/model",
        tmp_path / "elsewhere",
        (("ann", "pw"),),
        "127.0.0.1",
    )


def test_the_page_while_the_bundled_model_is_missing(tmp_path, monkeypatch):
    from ui.studio import build_studio
    from weights import catalog

    monkeypatch.setitem(catalog.CATALOG, "shapes", tmp_path / "not-built-yet")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # restored afterwards
    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path / "gradio"))
    config = parse_config(["--data-dir", str(tmp_path / "data"), "--device", "cpu", "--engine", "hf"])
    demo, studio = build_studio(config)
    texts = [block.value or "" for block in demo.blocks.values() if type(block).__name__ == "Markdown"]
    assert FALLBACK_NOTICE in texts
    assert any("0.6 M parameters" in text and "cpu" in text for text in texts)  # the model, its size, the device
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == {"think", "draw", "prefer", "reflect", "redraw"} | {
        "learn",
        "learn_status",
        "use_model",
        "compare",
        "decide",
    }
    assert studio.store.data_dir == tmp_path / "data" and (tmp_path / "data" / "cache").is_dir()
