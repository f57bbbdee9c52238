"""Rewards: plain callables `reward(prompts, plans, pictures) -> list[float]`, summed with weights.

`plans[i]` is the plan text trajectory i drew from ("" for a direct rollout), `pictures[i]` its
PIL picture. Built in:
- `checker`: the shapes world's checker. 1 when the detected scene meets every requirement of the
  prompt and holds nothing else; otherwise partial credit, up to 0.5, for the checks it passes
  (object count, objects of the asked colour and shape, layout, relation), so a group that is all wrong still ranks.
- `plan_valid`: 1 when the plan parses in the shapes grammar and its objects meet the prompt by
  themselves (what the picture would need), 0.5 when it parses only, 0 otherwise; 1 for direct
  rollouts (no plan to judge, so the reward does not tell think from direct).
- `plan_followed`: the picture against its own plan, not the prompt (what a renderer is for: Dual-GRPO's
  renderer half, `dual_grpo.py`): 1 when the detected scene is the plan's scene, otherwise 0.5 x the
  share of objects the two have in common; the checker for a direct rollout (no plan).
- `preference`: the score of the reward model of people's verdicts (`python -m finetune
  reward-model`, `reward_model.py`) in the directory `preference_model` names, from the picture
  and the prompt, standardised by the scores of the pictures it was trained on and squashed into
  (0, 1) (`RewardModel.preference`): 0.5 is a typical training picture, 0.73 one a standard
  deviation better liked. Bounded, so a checker weight of 2 keeps any wrong picture (partial
  credit <= 0.5) below every right one, whatever the taste.
Anything else is `module:function` (an HPS, ImageReward or CLIP scorer whose weights are on disk),
imported once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from reasoner.errors import PlanError
from reasoner.shapes import Scene, parse_plan, parse_prompt
from reasoner.shapes.detect import detect
from reasoner.shapes.prompts import Unscorable
from reasoner.worlds import plan_body

from .config import ConfigError

Reward = Callable[[list[str], list[str], list[Image.Image]], list[float]]


def partial_credit(scene: Scene | None, prompt: str) -> float:
    """1.0 exact; else 0.5 x the fraction of the prompt's checks the scene passes; 0 unscorable."""
    spec = parse_prompt(prompt)
    if isinstance(spec, Unscorable) or scene is None:
        return 0.0
    if spec.explain_failure(scene) is None:
        return 1.0
    requirements = spec.requirements
    objects = scene.objects
    unused = list(objects)
    matched = 0
    for group in requirements.groups:  # greedily: each object counts for one group
        for _ in range(group.count):
            match = next((o for o in unused if group.matches(o)), None)
            if match is not None:
                unused.remove(match)
                matched += 1
    checks = [float(len(objects) == requirements.total), matched / max(1, requirements.total)]
    if requirements.layout is not None:
        checks.append(float(frozenset(o.position for o in objects) in requirements.layout.alternatives))
    if requirements.relation is not None:
        shares = list(requirements._attribute_matches(objects))
        checks.append(float(any(requirements._relation_holds(s) for s in shares)))
    return 0.5 * sum(checks) / len(checks)


def checker(prompts: list[str], plans: list[str], pictures: list[Image.Image]) -> list[float]:
    return [partial_credit(detect(picture).scene, prompt) for prompt, picture in zip(prompts, pictures)]


def plan_valid(prompts: list[str], plans: list[str], pictures: list[Image.Image]) -> list[float]:
    scores = []
    for prompt, plan in zip(prompts, plans):
        if not plan:
            scores.append(1.0)
            continue
        try:
            scene = parse_plan(plan_body(plan))
        except PlanError:
            scores.append(0.0)
            continue
        scores.append(0.5 + 0.5 * (partial_credit(scene, prompt) == 1.0))
    return scores


def preference_reward(model_dir: str | Path) -> Reward:
    """The `preference` reward: the reward model in `model_dir` scores each picture with its prompt."""
    from .reward_model import load_reward_model

    model = load_reward_model(model_dir)

    def preference(prompts: list[str], plans: list[str], pictures: list[Image.Image]) -> list[float]:
        return model.preference(pictures, prompts)

    return preference


def plan_followed(prompts: list[str], plans: list[str], pictures: list[Image.Image]) -> list[float]:
    scores = []
    for prompt, plan, picture in zip(prompts, plans, pictures):
        seen = detect(picture).scene
        if not plan:
            scores.append(partial_credit(seen, prompt))
            continue
        try:
            planned = parse_plan(plan_body(plan))
        except PlanError:
            scores.append(0.0)  # nothing to follow: the planner's half is what gets this wrong
            continue
        if seen == planned:
            scores.append(1.0)
        elif seen is None:
            scores.append(0.0)
        else:
            common = set(seen.objects) & set(planned.objects)
            scores.append(0.5 * len(common) / max(len(seen), len(planned), 1))
    return scores


BUILT_IN: dict[str, Reward] = {"checker": checker, "plan_valid": plan_valid, "plan_followed": plan_followed}


def load_reward(name: str, preference_model: str | Path | None = None) -> Reward:
    """A built-in reward, `preference` (the reward model in `preference_model`), or the function
    `module:function` names."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    if name == "preference":
        if not preference_model:
            raise ConfigError("rewards: preference needs a reward model directory (preference_model)")
        return preference_reward(preference_model)
    module_name, _, function_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"rewards: module {module_name!r} could not be imported ({error})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"rewards: {module_name!r} has no function {function_name!r}")
    return function


@dataclass
class RewardEnsemble:
    """The weighted sum of named rewards; each component's values are kept for the metrics."""

    names: list[str]
    weights: list[float]
    functions: list[Reward]

    @classmethod
    def of(cls, names: list[str], weights: list[float], preference_model: str | Path | None = None) -> RewardEnsemble:
        return cls(list(names), list(weights), [load_reward(name, preference_model) for name in names])

    def __call__(
        self, prompts: list[str], plans: list[str], pictures: list[Image.Image]
    ) -> tuple[list[float], dict[str, list[float]]]:
        """(total per trajectory, {name: that reward's values})."""
        components = {}
        for name, function in zip(self.names, self.functions):
            values = [float(v) for v in function(prompts, plans, pictures)]
            if len(values) != len(prompts):
                raise ValueError(f"reward {name} gave {len(values)} values for {len(prompts)} trajectories")
            components[name] = values
        totals = [
            sum(w * components[name][i] for name, w in zip(self.names, self.weights)) for i in range(len(prompts))
        ]
        return totals, components
