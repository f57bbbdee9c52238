"""Contexts of different lengths in one call: each row gives the tokens it gives alone.

The fast engine pads them into one batch (left padding, per-row positions, masked padding keys);
hf and onnx run one length a call. Greedy and seeded sampling, image tokens (with guidance, whose
prompt-dropped rows are padded the same way), plans and reflections, on the tiny model and on the
bundled one.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from reasoner.backends.janus import JanusBackend
from reasoner.engine.padding import left_pad, prefill_mask, step_mask

PROMPTS = [
    "a red circle",
    "two green squares",
    "a square the color of the sky",
    "three yellow triangles left of a red circle",
    "a red circle",
]
PLANS = [
    "red circle @ top-left",
    "green square @ middle-left; green square @ bottom-right",
    None,  # drawn from the prompt alone: the shortest context
    "yellow triangle @ top-left; yellow triangle @ middle-center; yellow triangle @ bottom-right",
    "red circle @ top-left",  # the first context again, with another seed
]
SEEDS = [3, 4, 5, 6, 7]


def over(backend: JanusBackend, engine: str) -> JanusBackend:
    return JanusBackend(
        backend.model, backend.tokenizer, backend.image_processor, backend.template, name="t", engine=engine
    )


def assert_rows_match_alone(backend: JanusBackend) -> None:
    draw = [backend.draw_context_ids(p, plan) for p, plan in zip(PROMPTS, PLANS)]
    think = [backend.think_context_ids(p) for p in PROMPTS]
    assert len({len(c) for c in draw}) >= 3 and len({len(c) for c in think}) >= 3
    stops = [backend.eos_id, backend.boi_id]
    for temperature in (0.0, 1.0):
        rows = backend.generate_image_token_rows(draw, SEEDS, 3.0, temperature, 0)
        alone = torch.cat([backend.generate_image_tokens(c, [s], 3.0, temperature, 0) for c, s in zip(draw, SEEDS)])
        assert torch.equal(rows, alone), temperature
        texts = backend.generate_text_ids(think, None, SEEDS, temperature, 32, stops)
        assert texts == [
            backend.generate_text_ids([c], None, [s], temperature, 32, stops)[0] for c, s in zip(think, SEEDS)
        ]


def test_left_padding_positions_and_masks():
    padded, starts = left_pad([[5, 6, 7], [8], [9, 9]], pad=0)
    assert padded == [[5, 6, 7], [0, 0, 8], [0, 9, 9]] and starts == [0, 2, 1]
    mask = prefill_mask(torch.tensor(starts), 3)[:, 0]
    assert mask[1].tolist() == [[True, False, False], [False, True, False], [False, False, True]]
    assert mask[2].tolist() == [[True, False, False], [False, True, False], [False, True, True]]
    step = step_mask(torch.tensor(starts), torch.arange(4), torch.tensor([3]), True, torch.float32)
    assert (step[:, 0, 0] == 0).tolist() == [[True] * 4, [False, False, True, True], [False, True, True, True]]
    assert step_mask(None, torch.arange(4), torch.tensor([3]), True, torch.float32) is None  # the unpadded path


def test_each_row_of_mixed_lengths_gives_what_it_gives_alone(tiny_backend):
    assert_rows_match_alone(over(tiny_backend, "fast"))


def test_hf_takes_mixed_lengths_and_agrees_with_fast(tiny_backend):
    hf, fast = over(tiny_backend, "hf"), over(tiny_backend, "fast")
    draw = [hf.draw_context_ids(p, plan) for p, plan in zip(PROMPTS[1:4], PLANS[1:4])]
    assert torch.equal(
        fast.generate_image_token_rows(draw, SEEDS[:3], 3.0, 1.0, 0),
        hf.generate_image_token_rows(draw, SEEDS[:3], 3.0, 1.0, 0),
    )


def test_mixed_length_reflections_carry_each_rows_picture(tiny_backend):
    fast, hf = over(tiny_backend, "fast"), over(tiny_backend, "hf")
    pictures = [Image.new("RGB", (72, 72), color) for color in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    contexts = [fast.reflect_context_ids(p, plan or "") for p, plan in zip(PROMPTS[:3], PLANS[:3])]
    assert len({len(c) for c in contexts}) == 3
    pixels = torch.cat([fast.pixel_values(p) for p in pictures])
    for temperature in (0.0, 1.0):
        written = fast.generate_text_ids(contexts, pixels, SEEDS[:3], temperature, 24, [fast.eos_id])
        alone = [
            fast.generate_text_ids([c], fast.pixel_values(p), [s], temperature, 24, [fast.eos_id])[0]
            for c, p, s in zip(contexts, pictures, SEEDS)
        ]
        assert written == alone == hf.generate_text_ids(contexts, pixels, SEEDS[:3], temperature, 24, [fast.eos_id])


@pytest.mark.slow  # compiles the padded and unpadded steps
def test_the_step_compiled_on_a_cpu_takes_mixed_lengths(tiny_backend):
    compiled = JanusBackend(
        tiny_backend.model,
        tiny_backend.tokenizer,
        tiny_backend.image_processor,
        tiny_backend.template,
        name="t",
        fast_compile=True,
    )
    draw = [compiled.draw_context_ids(p, plan) for p, plan in zip(PROMPTS[:3], PLANS[:3])]
    rows = compiled.generate_image_token_rows(draw, SEEDS[:3], 3.0, 1.0, 0)
    hf = over(tiny_backend, "hf")
    assert torch.equal(rows, torch.cat([hf.generate_image_tokens(c, [s], 3.0, 1.0, 0) for c, s in zip(draw, SEEDS)]))


@pytest.mark.slow  # the module's ONNX export
def test_the_onnx_engine_takes_mixed_lengths(tiny_model_dir, onnx_cache):
    assert_rows_match_alone(JanusBackend.from_pretrained(tiny_model_dir, name="tiny", engine="onnx"))


@pytest.mark.slow  # the bundled model on the CPU
def test_the_bundled_model_gives_each_row_what_it_gives_alone():
    from weights.catalog import resolve_model

    directory = resolve_model("shapes")[0]
    if not (directory / "config.json").is_file():
        pytest.skip("the bundled model is not built")
    assert_rows_match_alone(JanusBackend.from_pretrained(directory, name="shapes", engine="fast"))
