"""The reasoning pipeline: think, draw, reflect and redraw, each usable alone, as typed records.

    pipeline = ReasonerPipeline.from_pretrained("shapes")
    turn = pipeline("a circle the color of the sky", DrawSettings(n=4, seed=7), reflect=True)

The pipeline checks input, lays out seeds and turns model text into records; the backend owns the
model. What depends on the model's world (which plans are valid, how a plan is read) is asked of
the world object (`reasoner/worlds.py`), never decided by its name here. A plan a person wrote is
validated before drawing (for shapes models, against the grammar in docs/shapes-world.md); a plan
the model wrote is drawn as written, since it is the model's own chain of thought, and
`plan_problem` tells the UI what is wrong with it. Settings with no guidance scale (`cfg_scale`
None, the default) draw at the model's own (`ModelInfo.default_cfg_scale`), and the turn records
that number.
"""

from __future__ import annotations

from dataclasses import replace

from PIL import Image

from .backends.base import Backend, ModelInfo
from .errors import InvalidPromptError, InvalidSettingError, PlanError
from .records import Candidate, DrawSettings, Plan, Reflection, ReflectionRound, Turn, check_reflect_rounds, redraw_seed
from .reflection_loop import run_reflection_rounds
from .worlds import World, plan_body, plan_reasoning, world_named


class ReasonerPipeline:
    def __init__(self, backend: Backend):
        self.backend = backend

    @classmethod
    def from_pretrained(
        cls, model: str = "shapes", device: str = "cpu", dtype=None, engine: str = "hf", adapter=None
    ) -> ReasonerPipeline:
        """The pipeline over a catalog name or model directory, with a LoRA adapter directory merged in."""
        from .backends.janus import JanusBackend
        from .backends.think_generate import ThinkGenerateBackend
        from .models import resolve

        source = resolve(model, adapter)  # its kind: the directory's reasoner.json says which backend reads it
        backend = ThinkGenerateBackend if source.kind == "think-generate" else JanusBackend
        return cls(
            backend.from_pretrained(
                source.directory, device=device, dtype=dtype, name=source.name, engine=engine, adapter=source.adapter
            )
        )

    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    @property
    def world(self) -> World:
        """The rules of the world this model draws in (its `reasoner.json` names it)."""
        return world_named(self.info.world)

    @property
    def engine(self) -> str:
        return self.backend.engine

    def use_engine(self, engine: str) -> None:
        """Run on another engine (hf, fast, onnx) without loading the weights again."""
        self.backend.use_engine(engine)

    # -- input checks -----------------------------------------------------------------------------

    def check_prompt(self, prompt: str) -> str:
        prompt = (prompt or "").strip()
        if not prompt:
            raise InvalidPromptError("the prompt is empty")
        limit = self.backend.max_prompt_chars
        if len(prompt) > limit:
            raise InvalidPromptError(f"the prompt is {len(prompt)} characters long; the limit is {limit}")
        return prompt

    def plan_problem(self, plan: Plan | str) -> str | None:
        """Why `plan` is not a valid plan for this model's world, or None if it is."""
        try:
            self.check_plan(plan)
        except PlanError as error:
            return str(error)
        return None

    def check_plan(self, plan: Plan | str) -> Plan:
        """`plan` as a Plan; raises PlanError naming the fault if it is not valid."""
        if isinstance(plan, str):
            plan = Plan(plan, source="person")
        if not plan.body:
            raise PlanError("the plan is empty")
        problem = self.world.check_plan(plan.text)
        if problem is not None:
            raise PlanError(problem)
        return plan

    def model_text(self, plan: Plan) -> str:
        """What the model reads for `plan`, as its world says (`World.model_text`): in the shapes
        world a plan with no reasoning gets the reasoning it implies; an open world reads it as
        written."""
        return self.world.model_text(plan.text)

    def with_model_defaults(self, settings: DrawSettings) -> DrawSettings:
        """`settings` with the model's own guidance scale where they name none."""
        if settings.cfg_scale is not None:
            return settings
        return DrawSettings(**{**settings.__dict__, "cfg_scale": self.info.default_cfg_scale})

    def _plan_to_draw(self, plan: Plan | str | None) -> Plan | None:
        if plan is None:
            return None
        if isinstance(plan, str) or plan.source != "model":
            return self.check_plan(plan)
        return plan

    # -- the steps --------------------------------------------------------------------------------

    def think(self, prompt: str, seed: int = 0, temperature: float = 0.0) -> Plan:
        """The model's plan for `prompt`."""
        prompt = self.check_prompt(prompt)
        DrawSettings(seed=seed, plan_temperature=temperature)  # range checks
        return Plan(self.backend.write_plan(prompt, seed, temperature), source="model")

    def draw(self, prompt: str, plan: Plan | str | None, settings: DrawSettings) -> list[Candidate]:
        """`settings.n` candidates from the plan, or from the prompt alone when `plan` is None; with
        `settings.vary_plans`, each from a plan of its own (`draw_varied`). One batch either way."""
        prompt = self.check_prompt(prompt)
        settings = self.with_model_defaults(settings)
        if settings.vary_plans:
            return self.draw_varied(prompt, plan, settings)
        plan = self._plan_to_draw(plan)
        drawn = self.backend.draw_images(
            prompt,
            None if plan is None else self.model_text(plan),
            settings.seeds(),
            settings.cfg_scale,
            settings.temperature,
            settings.top_k,
        )
        return [Candidate(k, seed, d.image, d.tokens) for k, (seed, d) in enumerate(zip(settings.seeds(), drawn))]

    def draw_varied(self, prompt: str, plan: Plan | str | None, settings: DrawSettings) -> list[Candidate]:
        """T2I-R1's group: candidate k samples its own plan (at the plan temperature, with its own
        seed `seed + k`) and draws from it, so the candidates differ in layout, not only in detail.
        Each reproduces alone: `think(prompt, seed + k, T)`, then one candidate from that plan with
        that seed. The model's plan in `plan`, if any, is not drawn; a person's plan is refused
        rather than silently replaced (it is drawn as written, with vary_plans off)."""
        if plan is not None and (isinstance(plan, str) or plan.source != "model"):
            raise InvalidSettingError(
                "vary_plans gives every candidate a plan of its own; to draw a plan you wrote, turn vary_plans off"
            )
        seeds = settings.seeds()
        plans = [Plan(text, "model") for text in self.backend.write_plans(prompt, seeds, settings.plan_temperature)]
        drawn = self.backend.draw_images_from_plans(
            prompt, [self.model_text(p) for p in plans], seeds, settings.cfg_scale, settings.temperature, settings.top_k
        )
        return [
            Candidate(k, seed, d.image, d.tokens, plan) for k, (seed, d, plan) in enumerate(zip(seeds, drawn, plans))
        ]

    def reflect(
        self, prompt: str, plan: Plan | str | None, image: Image.Image, seed: int = 0, temperature: float = 0.0
    ) -> Reflection:
        """The model looks at `image`, drawn from `plan` (None: from the prompt alone), and says what
        is wrong with it; a revision carries the plan to redraw from."""
        prompt = self.check_prompt(prompt)
        plan = self._plan_to_draw(plan)
        text = self.backend.write_reflection(
            prompt, "" if plan is None else self.model_text(plan), image, seed, temperature
        )
        return Reflection(text, revised_plan_in(text))

    def plan_to_redraw(self, plan: Plan | str | None, reflection: Reflection) -> Plan | str | None:
        """What a redraw draws from: the reflection's revised plan, or `plan` if it revised nothing.

        A revision the model wrote with no reasoning of its own (a bare `Plan: ...`) keeps the
        reasoning of the plan it revises: the reasoning about the prompt stands and the revision
        changes what to draw. That is the form the model learned to draw from and to reflect on;
        the reasoning a bare plan would otherwise get (`model_text`) reads off its clauses, and the
        shapes model misread redraws drawn from it on a second look (three triangles read as two).
        A person's revision is drawn as they wrote it, as any plan of theirs.
        """
        if not reflection.needs_revision:
            return plan
        revised = reflection.revised_plan
        reasoning = plan_reasoning(plan.text if isinstance(plan, Plan) else plan or "")
        if revised.source != "model" or not reasoning or plan_reasoning(revised.text):
            return revised
        return Plan(f"{reasoning} Plan: {revised.body}", source=revised.source)

    def redraw(
        self, prompt: str, plan: Plan | str | None, reflection: Reflection, settings: DrawSettings
    ) -> list[Candidate]:
        """Draw again from the reflection's revision of `plan` (`plan_to_redraw`), as one plan."""
        return self.draw(prompt, self.plan_to_redraw(plan, reflection), replace(settings, vary_plans=False))

    def __call__(
        self,
        prompt: str,
        settings: DrawSettings = DrawSettings(),  # noqa: B008 - a frozen record, safe to share
        think: bool = True,
        plan: Plan | str | None = None,
        reflect: bool = False,
        reflect_rounds: int = 1,
    ) -> Turn:
        # 1. Check inputs; the turn records the guidance scale it draws with
        turn = Turn(prompt=self.check_prompt(prompt), settings=self.with_model_defaults(settings))
        check_reflect_rounds(reflect_rounds)
        # 2. Think: the model's plan, unless a person gave one, thinking is off, or every candidate
        #    thinks its own (vary_plans, in step 3)
        if settings.vary_plans and (plan is not None or not think):
            raise InvalidSettingError(
                "vary_plans thinks a plan for every candidate: it needs think on and no plan given"
            )
        if plan is not None:
            turn.plan = self.check_plan(plan)
        elif think and not settings.vary_plans:
            turn.plan = self.think(turn.prompt, settings.seed, settings.plan_temperature)
        # 3. Draw the candidates
        turn.candidates = self.draw(turn.prompt, turn.plan, turn.settings)
        # 4. Reflect on each candidate and redraw it from the revised plan, then look at the redraw,
        #    until a reflection finds the picture right or `reflect_rounds` are spent
        if reflect:
            turn.rounds = [
                self.reflection_rounds(
                    turn.prompt, candidate.plan or turn.plan, candidate, turn.settings, reflect_rounds
                )
                for candidate in turn.candidates
            ]
        return turn

    def reflection_rounds(
        self, prompt: str, plan: Plan | None, candidate: Candidate, settings: DrawSettings, rounds: int
    ) -> list[ReflectionRound]:
        """At most `rounds` looks at a candidate, each at the picture the one before redrew: the
        loop of `reflection_loop.py` (which the eval runs for many prompts at once) on one chain."""

        def look(_rows, plans, pictures, round_number):
            return [self.reflect(prompt, plans[0], pictures[0].image, pictures[0].seed, settings.plan_temperature)]

        def redraw(_rows, reflections, plans, round_number):
            # A fresh seed for every round, so a redraw of an unchanged plan differs.
            single = replace(settings, n=1, seed=redraw_seed(candidate.seed, round_number), vary_plans=False)
            plan_to_draw = self.plan_to_redraw(plans[0], reflections[0])
            picture = self.draw(prompt, plan_to_draw, single)[0]
            picture.index = candidate.index
            return [(plan_to_draw, picture)]

        chain = run_reflection_rounds([plan], [candidate], rounds, look, redraw)[0]
        return [ReflectionRound(step.reflection, step.redrawn, step.plan) for step in chain]


def revised_plan_in(reflection_text: str) -> Plan | None:
    """The plan a reflection proposes after its last `Plan:` marker, or None when it proposes none.

    The same plan again still counts: the model saw a drawing slip, and the redraw (with a fresh
    seed) is its fix.
    """
    body = plan_body(reflection_text)
    if not body or body == reflection_text.strip():  # no `Plan:` marker, or nothing after it
        return None
    return Plan(f"Plan: {body}", source="model")
