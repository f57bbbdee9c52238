"""Turning what a person typed or clicked into records, and records into what the page shows."""

from __future__ import annotations

import hashlib
import html
import random
import re

from reasoner.errors import InvalidSettingError, PlanError
from reasoner.records import LAST_SEED, MAX_REFLECTION_CHARS, DrawSettings
from reasoner.store import PreferenceError
from reasoner.worlds import plan_body

from . import arguments

VERDICTS = ("best", "ranking", "all bad")  # the choices of the verdict radio, in the API too


def who_is(username: str | None, session_hash: str | None) -> str:
    """The user name when auth is on; otherwise an anonymous id derived from the browser session."""
    if username:
        return username
    digest = hashlib.sha256((session_hash or "no-session").encode()).hexdigest()[:12]
    return f"anon-{digest}"


def whole_number(value, name: str) -> int:
    return arguments.whole(value, name)


def number(value, name: str) -> float:
    return arguments.real(value, name)


def pick_seed(seed, random_seed: bool) -> int:
    """The seed to use: a fresh one when "random" is ticked (shown back, so it reproduces)."""
    if arguments.flag(random_seed, "random seed"):
        return random.SystemRandom().randint(0, LAST_SEED)
    return whole_number(seed, "seed")


def draw_settings(n, seed: int, cfg_scale, temperature, plan_temperature, vary_plans: bool = False) -> DrawSettings:
    """DrawSettings from the form; out-of-range values raise InvalidSettingError naming the field."""
    numbers = [
        number(v, name)
        for v, name in (
            (cfg_scale, "CFG scale"),
            (temperature, "image temperature"),
            (plan_temperature, "plan temperature"),
        )
    ]
    return DrawSettings(
        n=whole_number(n, "candidates"),
        seed=seed,
        cfg_scale=numbers[0],
        temperature=numbers[1],
        plan_temperature=numbers[2],
        vary_plans=vary_plans,
    )


def drawing_line(settings: DrawSettings, verb: str = "Drawing") -> str:
    """The status line while a draw runs (its pictures come when the whole batch is drawn)."""
    each = f", each from a plan of its own (plan temperature {settings.plan_temperature:g})" * settings.vary_plans
    n = settings.n
    return f"{verb} {n} candidate{'s' * (n > 1)} in one batch{each}…"


def parse_verdict(verdict: str, best, ranking: str | None, count: int) -> tuple[str, list[int]]:
    """(kind, 0-based candidate indices best first) from the form, which numbers candidates from 1."""
    verdict = arguments.text(verdict, "verdict", optional=True).strip().lower()
    if verdict == "all bad":
        return "all_bad", []
    if verdict == "best":
        return "pick", [whole_number(best, "best candidate") - 1]
    if verdict == "ranking":
        items = [item for item in re.split(r"[\s,;>]+", arguments.text(ranking, "ranking", optional=True)) if item]
        if not items:
            raise PreferenceError("the ranking is empty: list candidate numbers best first, e.g. 2, 1, 3")
        order = [ranking_item(item) - 1 for item in items]
        if len(order) == 1 and count > 1:
            raise PreferenceError("a ranking names at least two candidates, best first; use 'best' for one")
        return "rank", order
    raise PreferenceError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")


def ranking_item(item: str) -> int:
    if not item.isdecimal() or len(item) > 6:
        raise InvalidSettingError(f"ranking item {arguments.short(item)} is not a number")
    return int(item)


def checked_reflection(text: str | None) -> str:
    """A reflection as a person left it: free text, but not empty and not endless."""
    text = arguments.text(text, "reflection", optional=True).strip()
    if not text:
        raise PlanError("the reflection is empty: reflect first, or write what is wrong with the picture")
    if len(text) > MAX_REFLECTION_CHARS:
        raise PlanError(f"the reflection is {len(text)} characters long; the limit is {MAX_REFLECTION_CHARS}")
    return text


def verdict_text(kind: str, order: list[int]) -> str:
    numbers = ", ".join(str(i + 1) for i in order)
    return {"pick": f"best is #{numbers}", "rank": f"ranking {numbers}", "all_bad": "all bad"}[kind]


def caption(index: int, seed: int, plan: str | None = None) -> str:
    """A candidate's caption; a varied candidate's names the plan it drew (its `Plan:` part)."""
    own = f" · {plan_body(plan)}" if plan else ""
    return f"#{index + 1} · seed {seed}{own}"


def recipe(
    prompt: str,
    plan: str | None,
    settings: DrawSettings,
    seed: int,
    model: str,
    engine: str,
    reflection: str | None = None,
) -> dict:
    """What a PNG carries about how it was made (the command line writes the same keys)."""
    made = {
        "prompt": prompt,
        "plan": plan,
        "seed": seed,
        "model": model,
        "engine": engine,
        "cfg_scale": settings.cfg_scale,
        "temperature": settings.temperature,
        "top_k": settings.top_k,
        "plan_temperature": settings.plan_temperature,
    }
    if reflection is not None:
        made["reflection"] = reflection
    return made


def plan_status(problem: str | None, text: str, source: str) -> str:
    """The line next to a plan box (Markdown; user text in it is escaped)."""
    problem = None if problem is None else html.escape(problem, quote=False)
    if not (text or "").strip():
        return "Empty plan: **Draw** will draw from the prompt alone."
    if problem is None:
        return "**Valid plan.**"
    if source == "model":
        return f"**The model's plan is not valid:** {problem}. Edit it, or draw it as the model wrote it."
    return f"**Not a valid plan:** {problem}"
