"""think -> draw -> reflect -> redraw on a tiny random Janus, through transformers' generate."""

import copy
import dataclasses
import io

import pytest
import torch

from reasoner.errors import InvalidPromptError, InvalidSettingError, PlanError
from reasoner.pipeline import ReasonerPipeline
from reasoner.records import DrawSettings, Plan, Reflection

PROMPT = "a circle the color of the sky"


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_think_is_reproducible_for_a_seed(tiny_pipeline):
    greedy = tiny_pipeline.think(PROMPT, seed=0, temperature=0.0)
    assert greedy.source == "model" and greedy.text
    assert tiny_pipeline.think(PROMPT, seed=5, temperature=0.0) == greedy  # greedy ignores the seed
    sampled = [tiny_pipeline.think(PROMPT, seed=s, temperature=1.0).text for s in (1, 1, 2)]
    assert sampled[0] == sampled[1]
    assert sampled[0] != sampled[2]


def test_draw_gives_n_candidates_with_consecutive_seeds(tiny_pipeline):
    plan = tiny_pipeline.think(PROMPT)
    candidates = tiny_pipeline.draw(PROMPT, plan, DrawSettings(n=3, seed=40, cfg_scale=3.0))
    assert [c.seed for c in candidates] == [40, 41, 42]
    assert [c.index for c in candidates] == [0, 1, 2]
    for candidate in candidates:
        assert candidate.image.size == (72, 72) and candidate.image.mode == "RGB"
        assert candidate.image_tokens.shape == (81,)
    assert len({png_bytes(c.image) for c in candidates}) == 3


def test_same_seed_gives_identical_plan_and_image_bytes(tiny_pipeline):
    settings = DrawSettings(n=2, seed=9, plan_temperature=1.0)
    first, second = tiny_pipeline(PROMPT, settings), tiny_pipeline(PROMPT, settings)
    assert first.plan == second.plan
    assert [png_bytes(c.image) for c in first.candidates] == [png_bytes(c.image) for c in second.candidates]


def test_a_candidate_reproduces_alone_from_its_seed(tiny_pipeline):
    plan = Plan("red circle @ top-left", source="person")
    batch = tiny_pipeline.draw(PROMPT, plan, DrawSettings(n=3, seed=100))
    alone = tiny_pipeline.draw(PROMPT, plan, DrawSettings(n=1, seed=102))
    assert torch.equal(batch[2].image_tokens, alone[0].image_tokens)


def test_greedy_first_image_token_is_the_guided_argmax(tiny_backend):
    """Check guidance against a hand-written forward pass: conditional vs prompt-dropped context."""
    model, scale = tiny_backend.model, 4.0
    context = tiny_backend.draw_context_ids(PROMPT, "red circle @ top-left")
    # the unconditional half keeps only begin-of-sentence and begin-of-image (docs/janus-notes.md)
    dropped = [t if t in (tiny_backend.bos_id, tiny_backend.boi_id) else tiny_backend.pad_id for t in context]
    with torch.no_grad():
        hidden = model.model.language_model(input_ids=torch.tensor([context, dropped])).last_hidden_state[:, -1]
        logits = model.model.generation_head(hidden)
    expected = (logits[1] + scale * (logits[0] - logits[1])).argmax().item()
    tokens = tiny_backend.generate_image_tokens(context, [0], cfg_scale=scale, temperature=0.0, top_k=0)
    assert tokens[0, 0].item() == expected


def test_direct_draw_uses_no_plan(tiny_backend):
    direct = tiny_backend.draw_context_ids(PROMPT, None)
    planned = tiny_backend.draw_context_ids(PROMPT, "red circle @ top-left")
    assert direct[-1] == planned[-1] == tiny_backend.boi_id
    assert len(planned) > len(direct)
    assert tiny_backend.tokenizer.decode(planned[1:-1]) == f"User: {PROMPT}\nAssistant: red circle @ top-left"


def test_reflect_then_redraw_from_a_revised_plan(tiny_pipeline):
    settings = DrawSettings(n=2, seed=3)
    plan = tiny_pipeline.think(PROMPT)
    candidates = tiny_pipeline.draw(PROMPT, plan, settings)
    reflection = tiny_pipeline.reflect(PROMPT, plan, candidates[0].image, seed=candidates[0].seed)
    assert isinstance(reflection, Reflection) and reflection.text
    assert tiny_pipeline.reflect(PROMPT, plan, candidates[0].image, seed=candidates[0].seed) == reflection

    # a person edits the reflection's plan: redraw draws from that plan, not the first one
    edited = Reflection(
        "the circle should be blue", Plan("blue circle @ middle-center", source="person"), source="person"
    )
    redrawn = tiny_pipeline.redraw(PROMPT, plan, edited, settings)
    direct = tiny_pipeline.draw(PROMPT, edited.revised_plan, settings)
    assert [torch.equal(a.image_tokens, b.image_tokens) for a, b in zip(redrawn, direct)] == [True, True]
    # a reflection that revises nothing redraws the same plan
    unchanged = tiny_pipeline.redraw(PROMPT, plan, Reflection("the image is right", None), settings)
    assert torch.equal(unchanged[0].image_tokens, candidates[0].image_tokens)


def test_a_bare_revision_keeps_the_reasoning_of_the_plan_it_revises(tiny_pipeline):
    planned = Plan(
        "a square has 4 sides; needed: 4 red squares, nothing else. Plan: red square @ top-left; red circle @ top-"
        "center"
    )
    bare = Reflection(
        "I see ...; needed: 4 red squares. Plan: red square @ top-left; red square @ top-center",
        Plan("Plan: red square @ top-left; red square @ top-center"),
    )
    redraw = tiny_pipeline.plan_to_redraw(planned, bare)
    expected = "a square has 4 sides; needed: 4 red squares, nothing else. "
    expected += "Plan: red square @ top-left; red square @ top-center"
    assert redraw.text == expected
    assert redraw.source == "model"
    # a revision with reasoning of its own is drawn as it is; so is one of a plan with none, and a person's
    reasoned = Reflection("wrong", Plan("needed: 2 red squares. Plan: red square @ top-left; red square @ top-center"))
    assert tiny_pipeline.plan_to_redraw(planned, reasoned) is reasoned.revised_plan
    assert tiny_pipeline.plan_to_redraw(Plan("red square @ top-left", source="person"), bare) is bare.revised_plan
    assert tiny_pipeline.plan_to_redraw(None, bare) is bare.revised_plan
    edited = Reflection("wrong", Plan("red square @ top-left", source="person"), source="person")
    assert tiny_pipeline.plan_to_redraw(planned, edited) is edited.revised_plan  # a person's, as written
    # nothing revised: the plan as it was
    assert tiny_pipeline.plan_to_redraw(planned, Reflection("the image is right.", None)) is planned


def reading_as(backend, reads):
    """The backend with its reflections reading pictures as `reads` says."""
    reader = copy.copy(backend)
    reader.template = dataclasses.replace(backend.template, reflect_reads=reads)
    return reader


@pytest.mark.parametrize("reads", ["vision", "image_tokens"])
def test_reflection_sees_the_image(tiny_backend, reads):
    """Two different pictures give the model different inputs, read either way."""
    from PIL import Image

    from reasoner.backends.janus import picture_inputs

    backend = reading_as(tiny_backend, reads)
    black, white = Image.new("RGB", (72, 72)), Image.new("RGB", (72, 72), (255, 255, 255))
    ids = torch.tensor([backend.reflect_context_ids(PROMPT, "red circle @ top-left")])
    assert (ids == backend.image_token_id).sum().item() == 81
    with torch.no_grad():
        features = [backend.picture_features(backend.pixel_values(im)) for im in (black, white)]
        logits = [backend.model(input_ids=ids, mm_encoder_outputs=picture_inputs(f)).logits[0, -1] for f in features]
    assert not torch.allclose(logits[0], logits[1])


def test_a_picture_read_as_image_tokens_is_seen_as_while_drawing_it(tiny_backend):
    """With `reflect_reads` image_tokens, the shapes layout puts the picture's codes right after the
    plan, so the model's states over the picture are those it has while drawing those codes."""
    from reasoner.backends.janus import image_codes

    backend = reading_as(tiny_backend, "image_tokens")
    plan = "the sky is blue; needed: 1 blue circle, nothing else. Plan: blue circle @ top-left"
    tokens = backend.generate_image_tokens(backend.draw_context_ids(PROMPT, plan), [5], 1.0, 1.0, 0)
    pixels = backend.pixel_values(backend.decode_images(tokens)[0])
    codes = image_codes(backend.model.model.vqmodel, pixels)
    model, draw = backend.model, backend.draw_context_ids(PROMPT, plan)
    reflect = backend.reflect_context_ids(PROMPT, plan)
    assert reflect[: len(draw)] == draw and reflect[len(draw) : len(draw) + 81] == [backend.image_token_id] * 81
    with torch.no_grad():
        embeddings = model.get_input_embeddings()(torch.tensor([reflect]))
        embeddings[0, len(draw) : len(draw) + 81] = backend.picture_features(pixels)[0]
        reading = model.model.language_model(inputs_embeds=embeddings).last_hidden_state[0, : len(draw) + 81]
        drawn = torch.cat(
            [model.get_input_embeddings()(torch.tensor([draw])), model.prepare_embeddings_for_image_generation(codes)],
            1,
        )
        drawing = model.model.language_model(inputs_embeds=drawn).last_hidden_state[0]
    assert torch.allclose(reading, drawing, atol=1e-5)


def test_whole_turn_with_reflection(tiny_pipeline):
    turn = tiny_pipeline(PROMPT, DrawSettings(n=2, seed=1), reflect=True)
    assert turn.plan is not None and len(turn.candidates) == 2
    assert len(turn.reflections) == 2 and len(turn.refined) == 2


def test_direct_turn_reflects_without_a_plan(tiny_pipeline, tiny_backend):
    """A picture drawn from the prompt alone is reflected on with an empty plan in the context."""
    turn = tiny_pipeline(PROMPT, DrawSettings(n=1, seed=2), think=False, reflect=True)
    assert turn.plan is None and len(turn.reflections) == 1
    image = turn.candidates[0].image
    expected = tiny_backend.write_reflection(PROMPT, "", image, turn.candidates[0].seed, 0.0)
    assert (
        turn.reflections[0].text == expected == tiny_pipeline.reflect(PROMPT, None, image, turn.candidates[0].seed).text
    )


def test_a_bare_plan_is_read_with_the_reasoning_it_implies(tiny_pipeline, tiny_backend):
    """A person's list of clauses is drawn as the model writes plans; reasoning, when given, is kept."""
    bare = "red circle @ top-left; blue square @ middle-center"
    implied = "needed: 1 red circle at top-left and 1 blue square at middle-center, nothing else. Plan: " + bare
    assert tiny_pipeline.model_text(Plan(bare, "person")) == implied
    assert tiny_pipeline.model_text(Plan("Plan: " + bare, "model")) == implied  # a reflection's revision
    reasoned = "the sky is blue; needed: 1 blue circle, nothing else. Plan: red circle @ top-left"
    assert tiny_pipeline.model_text(Plan(reasoned, "person")) == reasoned
    assert tiny_pipeline.model_text(Plan("xx yy", "model")) == "xx yy"  # a model's garbage, as written
    drawn = tiny_pipeline.draw(PROMPT, bare, DrawSettings(n=1, seed=4))[0]
    direct = tiny_backend.draw_images(PROMPT, implied, [4], tiny_backend.info.default_cfg_scale, 1.0, 0)[0]
    assert torch.equal(drawn.image_tokens, direct.tokens)


def test_settings_without_a_scale_draw_at_the_models_own_and_the_turn_records_it(tiny_backend):
    """DrawSettings() names no guidance scale: the pipeline draws at the model's own
    (reasoner.json's default_cfg_scale) and the turn, which the CLI and the store record, says so."""
    assert DrawSettings().cfg_scale is None
    backend = copy.copy(tiny_backend)
    backend.info = dataclasses.replace(tiny_backend.info, default_cfg_scale=2.5)
    pipeline = ReasonerPipeline(backend)
    turn = pipeline(PROMPT, DrawSettings(n=2, seed=3), think=False)
    assert turn.settings.cfg_scale == 2.5
    at_scale = pipeline.draw(PROMPT, None, DrawSettings(n=2, seed=3, cfg_scale=2.5))
    assert all(torch.equal(a.image_tokens, b.image_tokens) for a, b in zip(turn.candidates, at_scale))


def test_person_plans_are_validated_model_plans_are_drawn_as_written(tiny_pipeline):
    with pytest.raises(PlanError, match="squre"):
        tiny_pipeline.draw(PROMPT, "blue squre @ top-left", DrawSettings(n=1))
    with pytest.raises(PlanError, match="empty"):
        tiny_pipeline.draw(PROMPT, "  ", DrawSettings(n=1))
    garbage = Plan("xx yy", source="model")  # what an untrained model writes
    assert tiny_pipeline.plan_problem(garbage) is not None
    assert len(tiny_pipeline.draw(PROMPT, garbage, DrawSettings(n=1))) == 1


@pytest.mark.parametrize(
    "prompt, message",
    [("", "empty"), ("   \n", "empty"), ("x" * 301, "301 characters long; the limit is 300")],
)
def test_bad_prompts_are_named(tiny_pipeline, prompt, message):
    with pytest.raises(InvalidPromptError, match=message):
        tiny_pipeline.think(prompt)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(n=0), "n=0 is out of range"),
        (dict(n=17), "n=17 is out of range"),
        (dict(cfg_scale=0.5), "cfg_scale=0.5"),
        (dict(temperature=-1), "temperature=-1"),
        (dict(top_k=-2), "top_k=-2"),
        (dict(seed=-1), "seed=-1"),
    ],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(InvalidSettingError, match=message):
        DrawSettings(**settings)


def test_token_logprobs_score_what_the_engine_drew(tiny_backend):
    """Teacher-forced log-probs (what finetune trains) agree with the engine's own greedy choices."""
    backend = tiny_backend
    context = backend.think_context_ids(PROMPT)
    plan_ids = backend.encode(" red circle @ top-left")
    draw_context = backend.draw_context_ids(PROMPT, "red circle @ top-left")
    assert draw_context == context + plan_ids + [backend.boi_id]
    # guidance 1 and temperature 0: each image token is the argmax of the conditional distribution
    tokens = backend.generate_image_tokens(draw_context, [0, 1], cfg_scale=1.0, temperature=0.0, top_k=0)
    plan_logprobs, image_logprobs = backend.token_logprobs(context, plan_ids, tokens)
    assert plan_logprobs.shape == (2, len(plan_ids)) and image_logprobs.shape == (2, 81)
    # teacher forcing reproduces the step-by-step decode: greedy tokens are the most likely ones
    with torch.no_grad():
        embeds = torch.cat(
            [
                backend.model.get_input_embeddings()(torch.tensor([draw_context])),
                backend.model.prepare_embeddings_for_image_generation(tokens[:1]),
            ],
            1,
        )
        hidden = backend.model.model.language_model(inputs_embeds=embeds).last_hidden_state
        best = (
            backend.model.model.generation_head(hidden[0, len(draw_context) - 1 : -1])
            .float()
            .log_softmax(-1)
            .max(-1)
            .values
        )
    assert torch.allclose(image_logprobs[0].detach(), best, atol=1e-5)
    # the plan's log-probs are those of its tokens under the language head
    with torch.no_grad():
        logits = backend.model(input_ids=torch.tensor([context + plan_ids])).logits[0, len(context) - 1 : -1]
    expected = logits.log_softmax(-1).gather(-1, torch.tensor(plan_ids)[:, None])[:, 0]
    assert torch.allclose(plan_logprobs[0].detach(), expected, atol=1e-5)
    assert plan_logprobs.requires_grad and image_logprobs.requires_grad
