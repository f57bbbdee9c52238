"""The studio's event handlers: check the form, call the pipeline, record the action, return the page.

Each handler is one step of the loop (think, draw, prefer, reflect, redraw) and works alone from
its inputs, so `gradio_client` can drive the loop by the API names in README. A ReasonerError
becomes a gr.Error with its one line; the server goes on. No handler touches a model: they call
`reasoner.pipeline` and `reasoner.store`.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from reasoner.engine.progress import image_steps_to
from reasoner.errors import ReasonerError
from reasoner.pipeline import ReasonerPipeline
from reasoner.records import Candidate, DrawSettings, Plan, Reflection, redraw_seed
from reasoner.store import Actor, DrawRef, DrawRequest, NewCandidate, PreferenceError, Store, png_bytes

from . import arguments, forms
from .config import StudioConfig
from .models import ONNX_EXPORT_NOTE, Models
from .page_errors import error_line
from .uploads import checked_recipe, recipe_of_upload

HISTORY_LIMIT = 100


@contextlib.contextmanager
def shown_errors() -> Iterator[None]:
    """A ReasonerError becomes a gr.Error that the page shows; the server goes on."""
    try:
        yield
    except ReasonerError as error:
        raise gr.Error(html.escape(str(error), quote=False), print_exception=False) from None


def required_id(value, what: str) -> int:
    return arguments.record_id(
        value, what, f"there is no {what} yet: {'draw' if what != 'turn' else 'pick a turn'} first"
    )


@dataclass
class Studio:
    models: Models
    store: Store
    config: StudioConfig

    # -- who and what -----------------------------------------------------------------------------

    def actor(self, request: gr.Request | None, engine: str | None = None) -> Actor:
        username = getattr(request, "username", None)
        session = getattr(request, "session_hash", None)
        return Actor(forms.who_is(username, session), self.models.label, engine or self.models.default_engine)

    def history_owner(self, request: gr.Request | None) -> str | None:
        """With auth on, people see and act on only their own turns (another's id reads as one that
        does not exist); a local studio shows every turn."""
        return self.actor(request).who if self.config.auth_on else None

    # -- the loop ---------------------------------------------------------------------------------

    def think(self, prompt, seed, random_seed, plan_temperature, engine, request: gr.Request):
        """The model's plan for the prompt. Returns (plan, plan status, turn id, seed used)."""
        with shown_errors():
            seed = forms.pick_seed(seed, random_seed)
            pipeline = self.models.pipeline(engine)
            prompt = pipeline.check_prompt(arguments.text(prompt, "prompt"))
            plan = pipeline.think(prompt, seed, forms.number(plan_temperature, "plan temperature"))
            thought = self.store.think(self.actor(request, engine), prompt, plan.text)
        return plan.text, plan_line(pipeline, prompt, plan.text, "model"), thought.turn_id, seed

    def check_plan(self, plan: str, prompt: str | None = None) -> str:
        """The line next to the plan box while a person edits it (no model work)."""
        if not self.models.ready:
            return "The plan is checked once the model has loaded."
        return plan_line(self.models.current(), prompt, (plan or "").strip(), "person")

    def draw(
        self,
        prompt,
        plan,
        turn_id,
        n,
        seed,
        random_seed,
        cfg_scale,
        temperature,
        plan_temperature,
        engine,
        vary_plans=False,
        request: gr.Request = None,
        progress=gr.Progress(),
    ):  # noqa: B008 - how Gradio passes progress
        """Draw N candidates in one batch from the plan (the prompt alone if it is empty), or, with
        `vary_plans`, each from a plan it thinks itself (the model's plan in the box is then not
        drawn; a person's is drawn as written, so an edit turns varying off).

        Yields (gallery, draw id, turn id, seed used, status, best); the last yield has the draw id.
        """
        with shown_errors():
            seed = forms.pick_seed(seed, random_seed)
            pipeline = self.models.pipeline(engine)
            prompt = pipeline.check_prompt(arguments.text(prompt, "prompt"))
            turn_id, owner = arguments.optional_record_id(turn_id, "turn"), self.history_owner(request)
            if turn_id is not None:
                self.store.turn_prompt(turn_id, owner)  # before any drawing: a turn that is not theirs does not exist
            to_draw = self.plan_to_draw(pipeline, arguments.text(plan, "plan", optional=True), turn_id, prompt, owner)
            vary = arguments.flag(vary_plans, "vary plans") and (to_draw is None or to_draw.source == "model")
            settings = forms.draw_settings(n, seed, cfg_scale, temperature, plan_temperature, vary)
            plan_text = None if to_draw is None or vary else to_draw.text

            yield None, None, turn_id, seed, forms.drawing_line(settings), first_best(0)
            recipe = self.recipe_maker(prompt, plan_text, settings, engine)
            drawing = lambda: pipeline.draw(prompt, None if vary else to_draw, settings)  # noqa: E731
            kept = self.draw_batch(settings, drawing, recipe, progress)
            request_ = DrawRequest(prompt, plan_text, asdict(settings), [c for c, _ in kept], turn_id=turn_id)
            drawn = self.store.draw(self.actor(request, engine), request_, owner)
        yield self.finished(drawn, kept, seed)

    def prefer(self, draw_id, verdict, best, ranking, request: gr.Request):
        """Record a verdict on a draw: 'best' (one candidate), 'ranking' (best first) or 'all bad'."""
        with shown_errors():
            draw = self.store.draw_info(required_id(draw_id, "draw"), self.history_owner(request))
            kind, order = forms.parse_verdict(verdict, best, ranking, len(draw.candidates))
            preference_id = self.store.prefer(self.actor(request), draw.draw_id, kind, order)
        return f"Saved preference #{preference_id} on draw #{draw.draw_id}: {forms.verdict_text(kind, order)}."

    def reflect(self, draw_id, candidate, plan_temperature, engine, request: gr.Request):
        """The model looks at one candidate and says what is wrong. Returns (reflection, revised plan,
        reflection id, status); the revised plan is the drawn plan when the model revised nothing."""
        with shown_errors():
            draw = self.store.draw_info(required_id(draw_id, "draw"), self.history_owner(request))
            index = forms.whole_number(candidate, "candidate") - 1
            if not 0 <= index < len(draw.candidates):
                raise PreferenceError(
                    f"candidate {index + 1} does not exist: this draw has 1 to {len(draw.candidates)}"
                )
            chosen = draw.candidates[index]
            with Image.open(self.store.image_file(chosen.path)) as image:
                picture = image.convert("RGB")
            pipeline = self.models.pipeline(engine)
            drawn_from = Plan(draw.plan, draw.plan_source or "model") if draw.plan else None  # None: a direct draw
            reflection = pipeline.reflect(
                draw.prompt, drawn_from, picture, chosen.seed, forms.number(plan_temperature, "plan temperature")
            )
            # the revision as it would be drawn: a bare one keeps the drawn plan's reasoning
            revised = pipeline.plan_to_redraw(drawn_from, reflection).text if reflection.needs_revision else None
            stored = self.store.reflect(self.actor(request, engine), draw.draw_id, index, reflection.text, revised)
        shown = revised if revised is not None else (draw.plan or "")
        status = (
            f"The model revised the plan after looking at #{index + 1}."
            if revised is not None
            else f"The model proposed no new plan for #{index + 1}; edit the plan below to redraw differently."
        )
        checks = world_checks(pipeline)
        disputed = checks and checks.reflection_disputed(draw.prompt, picture, reflection.text)
        if disputed:  # the model calls it right, the detector does not: say so, do not hide it
            status = f"**⚠ The checker disagrees:** {html.escape(disputed, quote=False)}. {status}"
        return reflection.text, shown, stored.reflection_id, status

    def redraw(
        self,
        reflection_id,
        reflection_text,
        revised_plan,
        n,
        seed,
        random_seed,
        cfg_scale,
        temperature,
        plan_temperature,
        engine,
        request: gr.Request,
        progress=gr.Progress(),
    ):  # noqa: B008 - how Gradio passes progress
        """Draw again from the revised plan (both it and the reflection may have been edited)."""
        with shown_errors():
            owner = self.history_owner(request)
            info = self.store.reflection_info(required_id(reflection_id, "reflection"), owner)
            reflection_text = forms.checked_reflection(reflection_text)
            seed = forms.pick_seed(seed, random_seed)
            pipeline = self.models.pipeline(engine)
            drawn_from = Plan(info.drawn_plan, info.drawn_plan_source or "model") if info.drawn_plan else None
            revised = self.plan_to_draw(
                pipeline, arguments.text(revised_plan, "revised plan", optional=True), info.turn_id, info.prompt, owner
            )
            reflection = Reflection(
                reflection_text, revised, source="model" if reflection_text == info.text else "person"
            )
            plan_text = revised.text if revised is not None else (drawn_from.text if drawn_from else None)
            if plan_text == info.drawn_plan and not arguments.flag(random_seed, "random seed"):
                # the same plan again: fresh seeds, as the command line's redraws take, or it would
                # draw the very pictures reflected on
                seed = redraw_seed(seed, 1)
            settings = forms.draw_settings(n, seed, cfg_scale, temperature, plan_temperature)

            yield None, None, info.turn_id, seed, forms.drawing_line(settings, "Redrawing"), first_best(0)
            recipe = self.recipe_maker(info.prompt, plan_text, settings, engine, reflection.text)
            kept = self.draw_batch(
                settings, lambda: pipeline.redraw(info.prompt, drawn_from, reflection, settings), recipe, progress
            )
            request_ = DrawRequest(
                info.prompt,
                plan_text,
                asdict(settings),
                [c for c, _ in kept],
                turn_id=info.turn_id,
                reflection_id=info.reflection_id,
                reflection_text=reflection.text,
            )
            drawn = self.store.draw(self.actor(request, engine), request_, owner)
        yield self.finished(drawn, kept, seed)

    def start_engine(self, engine):
        """The page's engine choice, started as it is made (the next step then runs on it at once):
        the onnx engine's first use exports the model for about 2 minutes, and the status line says
        so meanwhile (issue 15.13). Yields status lines; an error is the last one."""
        if engine == "onnx":
            yield f"**Starting the onnx engine:** {ONNX_EXPORT_NOTE}"
        try:
            with shown_errors():
                self.models.wait_until_loaded()  # chosen while the model loads: started once it is in
                self.models.pipeline(engine)
        except Exception as error:  # noqa: BLE001 - every error becomes the status line
            yield error_line(error)
            return
        yield "The onnx engine is ready." if engine == "onnx" else ""

    # -- history ----------------------------------------------------------------------------------

    def history(self, request: gr.Request):
        turns = self.store.recent_turns(HISTORY_LIMIT, self.history_owner(request))
        return [
            [t.turn_id, t.created_at[:19].replace("T", " "), t.who, t.prompt, t.plan or "", t.draws, t.preferences]
            for t in turns
        ]

    def reopen(self, turn_id, request: gr.Request):
        """A stored turn back in the studio: prompt, plan, last draw and last reflection, to continue."""
        with shown_errors():
            state = self.store.turn_state(required_id(turn_id, "turn"), self.history_owner(request))
        draw, reflection = state.last_draw, state.last_reflection
        gallery = (
            [(str(self.store.image_file(c.path)), forms.caption(c.index, c.seed)) for c in draw.candidates]
            if draw
            else []
        )
        verdicts = "; ".join(map(shown_verdict, state.verdicts)) or "no verdict yet"
        return (
            state.prompt,
            state.plan or "",
            state.turn_id,
            gallery,
            draw.draw_id if draw else None,
            reflection.text if reflection else "",
            (reflection.revised_plan or reflection.drawn_plan or "") if reflection else "",
            reflection.reflection_id if reflection else None,
            f"Reopened turn #{state.turn_id} ({verdicts}). Continue where it was left.",
        )

    def open_recipe(self, path):
        """Prompt, plan and settings from a studio PNG, to make it again or continue from it."""
        with shown_errors():
            made = recipe_of_upload(path)
            fields = checked_recipe(made, self.models.current().info.default_cfg_scale)
        return (
            *fields.values(),
            f"Opened the recipe of a picture by {html.escape(str(made.get('model', 'an unknown model')))}.",
        )

    # -- helpers ----------------------------------------------------------------------------------

    def plan_to_draw(
        self, pipeline: ReasonerPipeline, text: str, turn_id: int | None, prompt: str, owner: str | None
    ) -> Plan | None:
        """None for an empty plan; the model's plan as written; a person's plan once it is checked.
        A plan is the model's only when it is exactly what the model wrote in this turn, for this
        prompt (`Store.plan_source`); anything else, however it is labelled, is checked."""
        text = text.strip()
        if not text:
            return None
        if self.store.plan_source(turn_id, text, prompt, owner) == "model":
            return Plan(text, "model")
        return pipeline.check_plan(Plan(text, "person"))

    def recipe_maker(
        self, prompt: str, plan: str | None, settings: DrawSettings, engine, reflection: str | None = None
    ):
        """seed -> the recipe a picture of this draw carries."""
        model, engine = self.models.label, engine or self.models.default_engine
        return lambda seed: forms.recipe(prompt, plan, settings, seed, model, engine, reflection)

    def draw_batch(self, settings: DrawSettings, draw: Callable[[], list[Candidate]], recipe, progress):
        """Draw all `settings.n` candidates in one batch (issue 19.3: parts of a batch cost nearly
        a whole batch each), the progress bar following its image tokens; write every picture with
        its recipe and return the (candidate, file) list."""
        heard = ProgressSteps(progress, settings.n)
        with image_steps_to(heard):
            drawn = draw()
        kept: list[tuple[NewCandidate, Path]] = []
        for candidate in drawn:
            plan = None if candidate.plan is None else candidate.plan.text
            made = recipe(candidate.seed) | ({"plan": plan} if plan is not None else {})
            png = png_bytes(candidate.image, made)
            kept.append((NewCandidate(candidate.seed, png, plan), self.store.keep_image(png)))
        return kept

    def finished(self, drawn: DrawRef, kept, seed: int):
        n = len(drawn.candidates)
        status = (
            f"Drew {n} candidate{'s' * (n > 1)} (draw #{drawn.draw_id}, turn #{drawn.turn_id}). "
            "Pick the best, rank them, or mark all bad; then reflect."
        )
        return gallery_of(kept), drawn.draw_id, drawn.turn_id, seed, status, 1


def shown_verdict(line: str) -> str:
    """A stored verdict line ("draw 3: pick [1]", candidates from 0) as the studio numbers them, from 1."""
    match = re.fullmatch(r"draw (\d+): (\w+) \[([\d, ]*)\]", line)
    if not match:
        return line
    if match[2] not in ("pick", "rank", "all_bad"):
        return line
    order = [int(i) for i in match[3].split(",") if i.strip()]
    return f"draw #{match[1]}: {forms.verdict_text(match[2], order)}"


def first_best(step: int):
    """A new draw starts with best = 1, set with its first pictures (the page keeps a pick made
    after that: layout.keeping_a_pick)."""
    return 1 if step == 0 else gr.skip()


def world_checks(pipeline: ReasonerPipeline):
    """The shapes world's checks of a plan or reflection against the prompt (reasoner/shapes/
    studio_checks.py), None in other worlds: the one place the page asks which world it is in."""
    if pipeline.info.world != "shapes":
        return None
    from reasoner.shapes import studio_checks

    return studio_checks


def plan_line(pipeline: ReasonerPipeline, prompt: str | None, text: str, source: str) -> str:
    """The line next to a plan box: valid or not, and, where the world can tell, whether a valid
    plan meets the prompt."""
    problem = pipeline.plan_problem(text) if text else None
    line = forms.plan_status(problem, text, source)
    checks = world_checks(pipeline)
    if problem is None and text and checks and isinstance(prompt, str) and prompt.strip():
        missed = checks.plan_misses_prompt(prompt, text)
        if missed:
            line = f"**Valid plan, but it does not meet the prompt:** {html.escape(missed, quote=False)}."
    return line


def gallery_of(kept: list[tuple[NewCandidate, Path]]) -> list[tuple[str, str]]:
    return [(str(path), forms.caption(k, c.seed, c.plan)) for k, (c, path) in enumerate(kept)]


class ProgressSteps:
    """The image-token steps of one draw, told to Gradio's progress bar at most UPDATES times
    (each update is a message to the page)."""

    UPDATES = 20

    def __init__(self, progress, candidates: int):
        self.progress, self.candidates, self.last = progress, candidates, -1

    def __call__(self, done: int, total: int) -> None:
        shown = done * self.UPDATES // total
        if shown != self.last:
            self.last = shown
            self.progress((done, total), desc=f"drawing {self.candidates}", unit="image tokens")
