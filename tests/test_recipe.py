"""The shapes-model recipe: training batches hold exactly the engine's layout; a tiny run works."""

import json

import pytest
import torch
from safetensors.torch import load_file

from reasoner.shapes import parse_plan, render_plan
from weights.recipe.data import DrawPool, make_draw_pool
from weights.recipe.sequences import IMAGE, TEXT, draw_only, dropped_context, think_and_draw
from weights.recipe.texts import IMAGE_IS_RIGHT, plan_text, reflection_text
from weights.recipe.vq import encode_tokens, pixels_from_images


def test_tensor_pool_rows_equal_the_layout_builders(tiny_backend):
    backend = tiny_backend
    vq = backend.model.model.vqmodel
    examples = make_draw_pool(backend, vq, count=12, seed=0, device="cpu", workers=1, unrelated_share=0.3)
    pool = DrawPool(examples, backend, "cpu")
    rows = torch.arange(12).repeat(4)
    variants = torch.arange(4).repeat_interleave(12)
    batch = pool.assemble(rows, variants)
    for b, (row, variant) in enumerate(zip(rows.tolist(), variants.tolist())):
        e = examples[row]
        if variant == pool.THINK:
            expected = draw_only(e.draw_ids, e.image_tokens)
            expected.train = [
                t or (e.follows_prompt and e.think_length <= i < len(e.draw_ids)) for i, t in enumerate(expected.train)
            ]
        elif variant == pool.DIRECT:
            expected = draw_only(e.direct_ids, e.image_tokens)
        else:
            context = e.draw_ids if variant == pool.DROPPED_THINK else e.direct_ids
            expected = draw_only(dropped_context(backend, context), e.image_tokens)
        n = len(expected.ids)
        assert batch.ids[b, :n].tolist() == expected.ids
        assert batch.kinds[b, :n].tolist() == expected.kinds
        assert batch.train[b, :n].tolist() == expected.train
        assert not batch.train[b, n:].any() and (batch.kinds[b, n:] == TEXT).all()


def test_think_and_draw_trains_the_plan_and_its_end(tiny_backend):
    plan = plan_text("a circle the color of the sky", parse_plan("blue circle @ top-left"))
    assert plan == "the sky is blue; needed: 1 blue circle, nothing else. Plan: blue circle @ top-left"
    sequence = think_and_draw(tiny_backend, "a circle the color of the sky", plan, [1] * 81)
    trained_text = [t for t, k, train in zip(sequence.ids, sequence.kinds, sequence.train) if train and k == TEXT]
    assert tiny_backend.tokenizer.decode(trained_text[:-1]) == " " + plan
    assert trained_text[-1] == tiny_backend.boi_id  # the model learns to end its plan by starting to draw
    assert sequence.kinds.count(IMAGE) == 81


def test_reflection_texts():
    seen, right = parse_plan("red circle @ top-left"), parse_plan("blue circle @ top-left")
    assert reflection_text("a blue circle", right, None) == "I see blue circle @ top-left; " + IMAGE_IS_RIGHT
    assert reflection_text("a blue circle", seen, right) == (
        "I see red circle @ top-left; needed: 1 blue circle, nothing else. Plan: blue circle @ top-left"
    )
    # the eval reads the reading back out of either form
    from reasoner.shapes import reading_in

    assert reading_in(reflection_text("a blue circle", right, None)) == "blue circle @ top-left"
    assert reading_in(reflection_text("a blue circle", seen, right)) == "red circle @ top-left"
    assert reading_in(reflection_text("a blue circle", None, right)) == "nothing clear"


def test_vq_tokens_and_processor_pixels_agree(tiny_backend):
    """Training reads pictures as the understanding path's processor does, and tokens have the grid's count."""
    picture = render_plan("red circle @ top-left; blue square @ bottom-right")
    ours = pixels_from_images([picture])
    assert torch.allclose(ours, tiny_backend.pixel_values(picture).float(), atol=1e-6)
    assert encode_tokens(tiny_backend.model.model.vqmodel, ours).shape == (1, 81)


@pytest.mark.slow  # six recipe runs: minutes on a CPU
def test_a_tiny_recipe_run_writes_a_loadable_model(tmp_path):
    from reasoner.backends.janus import JanusBackend
    from weights.build import main

    out = tmp_path / "out"
    args = [
        "shapes",
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(out),
        "--vq-steps",
        "2",
        "--vq-batch",
        "4",
        "--vq-pictures",
        "16",
        "--pool-size",
        "32",
        "--draw-steps",
        "2",
        "--lm-batch",
        "4",
        "--own-prompts",
        "4",
        "--synthetic-reflections",
        "4",
        "--reflect-steps",
        "2",
        "--sample-batch",
        "4",
        "--workers",
        "1",
    ]
    assert main(args) == 0
    backend = JanusBackend.from_pretrained(out)
    assert backend.info.world == "shapes" and backend.model.dtype == torch.float32
    assert (tmp_path / "work" / "taken.json").is_file()
    # a second run resumes: every stage is found done
    assert main(args) == 0
    # a third continues from the output, as a run spread over several GPU leases does
    more = [a if a != str(tmp_path / "work") else str(tmp_path / "work2") for a in args]
    assert main(more + ["--start-from", str(out), "--out", str(tmp_path / "out2")]) == 0
    assert JanusBackend.from_pretrained(tmp_path / "out2").tokenizer.get_vocab() == backend.tokenizer.get_vocab()
    # a fourth keeps the drawing it starts from (no draw steps) and trains reflection only
    again = [a if a != str(tmp_path / "work") else str(tmp_path / "work3") for a in args]
    assert main(again + ["--start-from", str(out), "--draw-steps", "0", "--out", str(tmp_path / "out3")]) == 0
    kept = JanusBackend.from_pretrained(tmp_path / "work3" / "draw").model.state_dict()
    assert all(torch.equal(kept[k], v) for k, v in backend.model.state_dict().items())
    assert "draw_steps" not in json.loads((tmp_path / "work3" / "taken.json").read_text())
    # a fifth learns reflection in an adapter: the drawing weights stay the start's, exactly
    adapter_run = [a if a != str(tmp_path / "work") else str(tmp_path / "work4") for a in args]
    assert (
        main(
            adapter_run
            + [
                "--start-from",
                str(out),
                "--draw-steps",
                "0",
                "--draw-share",
                "0",
                "--reflect-adapter-rank",
                "2",
                "--out",
                str(tmp_path / "out4"),
            ]
        )
        == 0
    )
    adapted = JanusBackend.from_pretrained(tmp_path / "out4")
    assert adapted.template.reflect_adapter == "reflection"
    assert all(torch.equal(kept[k], v) for k, v in adapted.model.state_dict().items())
    reflecting = adapted.reflect_model.state_dict()
    assert any(not torch.equal(reflecting[k], v) for k, v in kept.items())
    # a sixth continues that adapter (the same rank), as a run spread over several leases does
    more_adapter = [a if a != str(tmp_path / "work") else str(tmp_path / "work5") for a in args]
    assert (
        main(
            more_adapter
            + [
                "--start-from",
                str(tmp_path / "out4"),
                "--draw-steps",
                "0",
                "--draw-share",
                "0",
                "--reflect-adapter-rank",
                "2",
                "--out",
                str(tmp_path / "out5"),
            ]
        )
        == 0
    )
    continued = JanusBackend.from_pretrained(tmp_path / "out5").reflect_model.state_dict()
    assert any(not torch.equal(continued[k], v) for k, v in reflecting.items())
    # a seventh trains drawing only and keeps the start's reflection adapter as it was
    redraw = [a if a != str(tmp_path / "work") else str(tmp_path / "work6") for a in args]
    assert (
        main(redraw + ["--start-from", str(tmp_path / "out4"), "--reflect-steps", "0", "--out", str(tmp_path / "out6")])
        == 0
    )
    redrawn = JanusBackend.from_pretrained(tmp_path / "out6")
    assert redrawn.template.reflect_adapter == "reflection"
    assert any(not torch.equal(kept[k], v) for k, v in redrawn.model.state_dict().items())
    kept_adapter, shipped_adapter = (
        load_file(d / "reflection" / "adapter_model.safetensors") for d in (tmp_path / "out4", tmp_path / "out6")
    )
    assert kept_adapter.keys() == shipped_adapter.keys() and all(
        torch.equal(kept_adapter[k], shipped_adapter[k]) for k in kept_adapter
    )
    assert "reflect_steps" not in json.loads((tmp_path / "work6" / "taken.json").read_text())


def test_hours_share_the_time_among_stages_and_bad_values_are_refused():
    import pytest

    from weights.build import ShapesRecipe

    recipe = ShapesRecipe(hours=2, draw_seconds=100)
    assert (recipe.vq_seconds, recipe.draw_seconds, recipe.reflect_seconds) == (1080, 100, 2160)
    for bad in (
        {"hours": -1},
        {"unrelated_share": 1.0},
        {"draw_share": -0.1},
        {"reflect_vision_lr_scale": 0.0},
        {"draw_steps": 0},
        {"reflect_steps": 0},
        {"reflect_adapter_rank": 4, "start_from": "x", "draw_steps": 0},
        {"lm_batch": 0},
        {"device": "tpu"},
    ):
        with pytest.raises(ValueError):
            ShapesRecipe(**bad)


def test_unrelated_prompt_plans_state_the_plans_own_needs(tiny_backend):
    """In the pool, a plan under an unrelated prompt reads as the pipeline gives a person's plan."""
    from reasoner.shapes import plan_with_reasoning

    examples = make_draw_pool(
        tiny_backend, tiny_backend.model.model.vqmodel, count=40, seed=1, device="cpu", workers=1, unrelated_share=0.5
    )
    unrelated = [e for e in examples if not e.follows_prompt]
    assert unrelated and len(unrelated) < len(examples)
    for e in unrelated:
        plan = tiny_backend.tokenizer.decode(e.draw_ids[e.think_length : -1]).strip()
        assert plan.startswith("needed: ") and plan == plan_with_reasoning(parse_plan(plan))


@pytest.mark.parametrize("reads", ["vision", "image_tokens"])
def test_the_reflection_stage_mixes_drawing_and_trains_the_path_that_reads_pictures(tiny_backend, reads):
    import copy
    import dataclasses

    from reasoner.backends.janus import JanusBackend
    from weights.recipe.lm import sequence_loss, train_lm
    from weights.recipe.reflections import reflect_batches, synthetic_reflections
    from weights.recipe.sequences import Batch

    model = copy.deepcopy(tiny_backend.model)
    template = dataclasses.replace(tiny_backend.template, reflect_reads=reads)
    backend = JanusBackend(
        model, tiny_backend.tokenizer, tiny_backend.image_processor, template, name="tiny", engine="hf"
    )
    vq = model.model.vqmodel
    pool = DrawPool(make_draw_pool(backend, vq, count=8, seed=0, device="cpu", workers=1), backend, "cpu")
    reflections = synthetic_reflections(backend, vq, count=6, seed=0, device="cpu")
    next_batch = reflect_batches(backend, reflections, pool, batch_size=8, seed=0, draw_share=0.75)
    batch = next_batch(0)
    assert batch.pixels.shape[0] == 2  # 2 reflections (one picture each), 6 drawing rows
    # the reflection rows' loss reaches the path that reads their pictures, and not the other one
    reflecting = Batch(batch.ids[:2], batch.kinds[:2], batch.train[:2], batch.pixels)
    sequence_loss(model, reflecting, backend.pad_id, reads)[0].backward()
    vision_grad = model.model.vision_model.embeddings.patch_embedding.weight.grad
    codes_grad = model.model.generation_embeddings.weight.grad
    read, unread = (vision_grad, codes_grad) if reads == "vision" else (codes_grad, vision_grad)
    assert read is not None and read.abs().sum() > 0
    assert unread is None or unread.abs().sum() == 0
    model.zero_grad(set_to_none=True)
    # the vision tower's own learning rate: at scale 0 it stays as it was while the language model moves
    vision_before = [p.detach().clone() for p in model.model.vision_model.parameters()]
    layer_before = model.model.language_model.layers[0].mlp.up_proj.weight.detach().clone()
    train_lm(
        model,
        next_batch,
        steps=2,
        lr=1e-3,
        pad_id=backend.pad_id,
        device="cpu",
        desc="reflect",
        warmup=1,
        vision_lr_scale=0.0,
        reads=reads,
    )
    assert all(torch.equal(a, b) for a, b in zip(vision_before, model.model.vision_model.parameters()))
    assert not torch.equal(layer_before, model.model.language_model.layers[0].mlp.up_proj.weight)


def test_synthetic_wrong_plans_are_drawn_as_planned_and_revised_to_the_prompt():
    """A wrong plan drawn faithfully: the reflection reads the plan's scene and still revises."""
    from reasoner.backends.janus import JanusBackend
    from reasoner.shapes import extract_plan_text, parse_plan, reading_in, scene_reading, score_scene
    from weights.catalog import resolve_model
    from weights.recipe.reflections import synthetic_reflections

    bundled = JanusBackend.from_pretrained(resolve_model("shapes")[0], engine="hf")  # its VQ decodes faithfully
    vq = bundled.model.model.vqmodel

    def planned(row):
        return parse_plan(extract_plan_text(row.plan))

    rows = synthetic_reflections(bundled, vq, count=24, seed=0, device="cpu", wrong_plan_share=1.0)
    wrong = [r for r in rows if not score_scene(planned(r), r.prompt).passed]
    assert len(wrong) >= 12  # most slips break the prompt; those that do not leave the plan right
    for row in wrong:
        assert reading_in(row.reflection) == scene_reading(planned(row))  # drawn as planned
        assert score_scene(parse_plan(extract_plan_text(row.reflection)), row.prompt).passed  # revised to the prompt
    without = synthetic_reflections(bundled, vq, count=24, seed=0, device="cpu")
    assert all(score_scene(planned(r), r.prompt).passed for r in without)

    # a right plan drawn with a slip is revised to a right plan of another layout
    slipped = [r for r in without if "; needed: " in r.reflection]
    assert len(slipped) >= 8
    for row in slipped:
        revised = parse_plan(extract_plan_text(row.reflection))
        assert score_scene(revised, row.prompt).passed
    assert (
        sum(parse_plan(extract_plan_text(r.reflection)) != planned(r) for r in slipped) >= len(slipped) - 2
    )  # placement prompts allow one layout


def test_another_layout_differs_where_the_prompt_allows_it():
    import random

    from reasoner.shapes import sample_scene_for, score_scene
    from weights.recipe.reflections import another_layout

    rng = random.Random(0)
    for prompt in (
        "a red circle",
        "three squares",
        "a blue circle left of a red square",
        "a circle the color of the sky",
    ):
        drawn = sample_scene_for(prompt, rng)
        other = another_layout(prompt, drawn, rng)
        assert other != drawn and score_scene(other, prompt).passed
    only = sample_scene_for("a red square in the center", rng)
    assert another_layout("a red square in the center", only, rng) == only
