"""The studio's Learn tab: learn from my choices, choose the model that draws, compare base and tuned.

Endpoints (README lists them with the loop's): `/learn` starts `python -m finetune learn` on the
store's preferences in the background (ui/learning.py), `/learn_status` says how it goes,
`/use_model` makes the base or a learnt adapter draw every later step, `/compare` draws base and
tuned side by side (the same prompt, settings and seeds, each candidate its own plan) and
`/decide` stores which of the two the person prefers. Every draw is stored with the model that
drew it, the adapter by name and weights hash (`Models.label`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import gradio as gr

from reasoner.records import DrawSettings
from reasoner.store import Actor, DrawRequest

from . import arguments, forms
from .handlers import Studio, gallery_of, required_id, shown_errors
from .learning import LearnError, LearnJobs, complete_adapters

BASE = "base"  # the model choice that serves the base model alone


@dataclass
class Learning:
    studio: Studio
    jobs: LearnJobs

    def model_choices(self) -> list[str]:
        return [BASE, *complete_adapters(self.jobs.adapters_dir)]

    def adapter_dir(self, name) -> Path | None:
        name = arguments.text(name, "model")
        if name == BASE:
            return None
        if name not in complete_adapters(self.jobs.adapters_dir):
            raise LearnError(f"adapter {name!r} does not exist: choose one of {', '.join(self.model_choices())}")
        return self.jobs.adapters_dir / name

    # -- learning ---------------------------------------------------------------------------------

    def learn(self, minutes):
        """Start learning from the store's preferences; returns the job's status line."""
        with shown_errors():
            budget = forms.number(minutes, "minutes")
            if not 1 <= budget <= 240:
                raise LearnError(f"minutes={budget:g} is out of range 1..240")
            return self.jobs.start(budget).line

    def learn_status(self):
        """(status line, the model choices: base and every finished adapter)."""
        status = self.jobs.status()
        line = status.line
        if status.state == "failed":
            line += f" The studio goes on with {self.studio.models.label}."
        return line, gr.update(choices=self.model_choices())

    def use_model(self, name):
        """Let the base model or a learnt adapter draw from now on. Returns (model info, status)."""
        with shown_errors():
            self.studio.models.use_adapter(self.adapter_dir(name))
        return self.studio.models.info_markdown(), f"Now drawing with {self.studio.models.label}."

    # -- base against tuned -----------------------------------------------------------------------

    def compare(self, prompt, adapter, n, seed, request: gr.Request = None):
        """Draw with base and with `adapter`, the same seeds, each candidate its own plan.
        Returns (base gallery, tuned gallery, comparison id, status)."""
        with shown_errors():
            models, store = self.studio.models, self.studio.store
            adapter_dir = self.adapter_dir(adapter)
            if adapter_dir is None:
                raise LearnError("choose a learnt adapter to compare with the base model")
            base, tuned = models.tuned(None), models.tuned(adapter_dir)
            prompt = base.check_prompt(arguments.text(prompt, "prompt"))
            n, seed = forms.whole_number(n, "candidates"), forms.whole_number(seed, "seed")
            settings = base.with_model_defaults(DrawSettings(n=n, seed=seed, vary_plans=True))
            who = self.studio.actor(request)
            owner = self.studio.history_owner(request)
            draws, galleries = [], []
            for pipeline, label in ((base, models.choice.label), (tuned, models.label_of(adapter_dir))):
                made_by = (label, pipeline.engine)
                recipe = lambda seed, made_by=made_by: forms.recipe(prompt, None, settings, seed, *made_by)  # noqa: E731
                drawing = lambda pipeline=pipeline: pipeline.draw(prompt, None, settings)  # noqa: E731
                kept = self.studio.draw_batch(settings, drawing, recipe, no_bar)
                request_ = DrawRequest(prompt, None, asdict(settings), [c for c, _ in kept])
                draws.append(store.draw(Actor(who.who, label, pipeline.engine), request_, owner))
                galleries.append(gallery_of(kept))
            comparison = store.compare(who, draws[0].draw_id, draws[1].draw_id, owner)
        status = f"Comparison #{comparison}: base (left), {adapter} (right), seeds {settings.seed}+. Which is better?"
        return galleries[0], galleries[1], comparison, status

    def decide(self, comparison_id, winner, request: gr.Request = None):
        """Store the person's pick between base and tuned ('base', 'tuned' or 'same')."""
        with shown_errors():
            comparison = required_id(comparison_id, "comparison")
            self.studio.store.decide(comparison, arguments.text(winner, "winner"), self.studio.history_owner(request))
        return f"Saved: {winner} for comparison #{comparison}."


def no_bar(*_args, **_kwargs) -> None:
    """A compare shows no progress bar (its two draws are one step on the page)."""
