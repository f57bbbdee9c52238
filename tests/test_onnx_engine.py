"""The ONNX Runtime engine: export (cached by model hash), token parity with the reference, the CLI."""

import json

import onnx
import pytest
import torch
from PIL import Image

from reasoner.backends.janus import JanusBackend
from reasoner.cli import main
from reasoner.engine import onnx_export
from reasoner.engine.onnx_export import GRAPHS, OPSET, model_key

pytestmark = pytest.mark.slow  # every test reads the module's ONNX export: minutes on a CPU

PROMPT = "a circle the color of the sky"
PLAN = "red circle @ top-left; blue square @ middle-center"


@pytest.fixture(scope="module")
def pair(tiny_model_dir, onnx_cache):
    ort = JanusBackend.from_pretrained(tiny_model_dir, name="tiny", engine="onnx")
    assert ort.runner.directory.is_dir()  # exported on first use
    hf = JanusBackend(ort.model, ort.tokenizer, ort.image_processor, ort.template, name="tiny", engine="hf")
    return hf, ort


def test_export_writes_the_graphs_once_per_model(pair, onnx_cache, monkeypatch, tiny_model_dir, capsys):
    _, ort = pair
    directory = ort.runner.directory
    assert directory.parent == onnx_cache
    assert directory.name == model_key(ort.model, tiny_model_dir, torch.float32)
    for name in GRAPHS:
        graph = onnx.load(str(directory / f"{name}.onnx"), load_external_data=False)
        assert any(o.domain in ("", "ai.onnx") and o.version == OPSET for o in graph.opset_import)
    step = onnx.load(str(directory / "decoder_step.onnx"), load_external_data=False)
    inputs = [i.name for i in step.graph.input]
    assert inputs[:4] == ["inputs_embeds", "past_length", "cache_key_0", "cache_value_0"]
    assert [o.name for o in step.graph.output][:3] == ["hidden", "new_key_0", "new_value_0"]
    assert json.loads((directory / "export.json").read_text())["dtype"] == "float32"

    # a second engine, and the export-onnx command, find the cache: nothing is exported again
    monkeypatch.setattr(onnx_export, "export_all", lambda *a, **k: pytest.fail("exported again"))
    assert JanusBackend.from_pretrained(tiny_model_dir, name="tiny", engine="onnx").runner.directory == directory
    assert main(["export-onnx", "--model", str(tiny_model_dir), "--out", str(onnx_cache)]) == 0
    assert capsys.readouterr().out.strip() == str(directory)


def test_the_kv_cache_is_preallocated_and_written_in_place(pair):
    """Each step writes its new positions into the one cache of the call, and reads only positions
    below its past length: the decoder's hidden state does not depend on what lies beyond."""
    _, ort = pair
    engine = ort.runner
    context = torch.tensor([ort.think_context_ids(PROMPT)])
    length = context.shape[1]
    cache = engine.empty_cache(1, length + 4)
    pointers = [c.data_ptr() for c in cache]
    first = engine.step(engine.embed_text(context), cache, 0)
    assert [c.data_ptr() for c in cache] == pointers  # written in place, never reallocated
    assert all(c[:, :, :length].abs().sum() > 0 and c[:, :, length:].abs().sum() == 0 for c in cache)
    token = torch.tensor([[5]])
    following = engine.step(engine.embed_text(token), cache, length)
    for c in cache:  # garbage past the valid positions changes nothing
        c[:, :, length + 1 :] = 1e4
    again = engine.step(engine.embed_text(token), cache, length)
    torch.testing.assert_close(again, following)
    # and the step equals the whole sequence read at once
    whole = engine.step(engine.embed_text(torch.cat([context, token], 1)), engine.empty_cache(1, length + 1), 0)
    torch.testing.assert_close(following, whole, rtol=1e-4, atol=1e-4)
    assert not torch.equal(first, following)


def test_the_cache_key_follows_the_weights(pair):
    _, ort = pair
    key = model_key(ort.model, None, torch.float32)
    assert key == model_key(ort.model, None, torch.float32)
    assert key != model_key(ort.model, None, torch.float16)
    weight = ort.model.model.generation_head.vision_head.weight
    with torch.no_grad():
        weight.add_(1.0)
        try:
            assert model_key(ort.model, None, torch.float32) != key
        finally:
            weight.sub_(1.0)


def test_greedy_tokens_match_the_reference(pair):
    hf, ort = pair
    context = hf.draw_context_ids(PROMPT, PLAN)
    for cfg_scale in (1.0, 5.0):
        expected = hf.generate_image_tokens(context, [0, 1, 2], cfg_scale, 0.0, 0)
        assert torch.equal(ort.generate_image_tokens(context, [0, 1, 2], cfg_scale, 0.0, 0), expected)
    assert ort.write_plan(PROMPT, 0, 0.0) == hf.write_plan(PROMPT, 0, 0.0)
    picture = hf.decode_images(hf.generate_image_tokens(context, [3], 5.0, 1.0, 0))[0]
    assert ort.write_reflection(PROMPT, PLAN, picture, 0, 0.0) == hf.write_reflection(PROMPT, PLAN, picture, 0, 0.0)


def test_sampling_draws_the_references_tokens_for_the_same_seeds(pair):
    hf, ort = pair
    context = hf.draw_context_ids(PROMPT, PLAN)
    expected = hf.generate_image_tokens(context, [5, 6], 3.0, 1.0, 0)
    assert torch.equal(ort.generate_image_tokens(context, [5, 6], 3.0, 1.0, 0), expected)
    # and each candidate alone gives its own tokens again
    assert torch.equal(ort.generate_image_tokens(context, [6], 3.0, 1.0, 0)[0], expected[1])


def test_the_vq_decoder_graph_gives_the_references_pixels(pair):
    hf, ort = pair
    tokens = hf.generate_image_tokens(hf.draw_context_ids(PROMPT, None), [0, 1], 5.0, 1.0, 0)
    with torch.no_grad():
        expected = hf.model.decode_image_tokens(tokens)
    assert torch.allclose(ort.runner.decode_pixels(tokens), expected, atol=1e-4)
    ours, theirs = ort.decode_images(tokens), hf.decode_images(tokens)
    assert [image.size for image in ours] == [(72, 72)] * 2
    for a, b in zip(ours, theirs):  # pixels round to the same bytes but for rare ties at .5
        difference = (torch.tensor(list(a.tobytes())) - torch.tensor(list(b.tobytes()))).abs()
        assert difference.max() <= 1


def test_generate_with_the_onnx_engine(pair, tiny_model_dir, tmp_path):
    args = ["generate", "--prompt", "a red circle", "--model", str(tiny_model_dir), "--n", "2", "--seed", "4", "--out"]
    assert main(args + [str(tmp_path / "onnx"), "--engine", "onnx"]) == 0
    assert main(args + [str(tmp_path / "hf"), "--engine", "hf"]) == 0
    rows = {
        e: [json.loads(line) for line in (tmp_path / e / "results.jsonl").read_text().splitlines()]
        for e in ("onnx", "hf")
    }
    assert [r["engine"] for r in rows["onnx"]] == ["onnx", "onnx"]
    assert [r["plan"] for r in rows["onnx"]] == [r["plan"] for r in rows["hf"]]
    for a, b in zip(rows["onnx"], rows["hf"]):
        ours, theirs = Image.open(tmp_path / "onnx" / a["image"]), Image.open(tmp_path / "hf" / b["image"])
        assert max(abs(x - y) for x, y in zip(ours.tobytes(), theirs.tobytes())) <= 1
