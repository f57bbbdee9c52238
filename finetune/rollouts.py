"""Rollouts: for each prompt a group of trajectories, each with its own sampled plan and picture.

A think trajectory is what the pipeline does for one candidate (`ReasonerPipeline.think` with the
plan seed, then `draw` with the image seed): the plan is sampled after the think context until
end-of-sentence or begin-of-image, and the picture is drawn from the think context, the plan's
sampled tokens and begin-of-image. A direct trajectory draws from the prompt alone. The token ids
are kept, since the trainer scores exactly these (`scoring.py`). Every call runs through the
backend's engine (`fast` by default), whose weights follow the model as it trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from reasoner.backends.janus import JanusBackend

SEED_SPACE = 2**31 - 1


@dataclass
class Trajectory:
    prompt: str
    group: int  # trajectories of one group share a prompt and a mode; advantages compare within it
    mode: str  # "think" or "direct"
    plan_seed: int
    image_seed: int
    context_ids: list[int]  # what precedes the plan: the think context, or the direct context
    plan_ids: list[int]  # the sampled plan's tokens, its stop token excluded; [] for direct
    plan_stop: int | None  # the stop token the plan ended with; None for direct or a plan cut at the limit
    plan_text: str | None  # None for direct
    image_tokens: torch.Tensor  # (num_image_tokens,)
    picture: Image.Image | None = None
    guide: bool = False  # a think picture scored in a direct group (`think_guides`), not sampled there

    def draw_context(self, boi_id: int) -> list[int]:
        """Everything before the first image token, as `JanusBackend.draw_context_ids` lays it out."""
        return self.context_ids + self.plan_ids + [boi_id]


@dataclass(frozen=True)
class RolloutSettings:
    group_size: int
    mode: str  # think, direct or both (one group of each per prompt)
    plan_temperature: float
    image_temperature: float
    cfg_scale: float


def trajectory_seed(run_seed: int, step: int, row: int) -> int:
    """A seed per trajectory of a step, the same on resume; plans and pictures each get their own."""
    return (run_seed * 1_000_003 + step * 10_007 + row) % SEED_SPACE


def roll_out(backend: JanusBackend, prompts: list[str], settings: RolloutSettings, run_seed: int, step: int):
    """The step's trajectories, grouped: group g holds `group_size` trajectories of one prompt."""
    modes = ["think", "direct"] if settings.mode == "both" else [settings.mode]
    trajectories = []
    for mode in modes:
        for prompt in prompts:
            group = len(trajectories) // settings.group_size
            for _ in range(settings.group_size):
                row = len(trajectories)
                trajectories.append(
                    Trajectory(
                        prompt=prompt,
                        group=group,
                        mode=mode,
                        plan_seed=trajectory_seed(run_seed, step, 2 * row),
                        image_seed=trajectory_seed(run_seed, step, 2 * row + 1),
                        context_ids=backend.think_context_ids(prompt)
                        if mode == "think"
                        else backend.draw_context_ids(prompt, None)[:-1],
                        plan_ids=[],
                        plan_stop=None,
                        plan_text=None,
                        image_tokens=torch.empty(0, dtype=torch.long),
                    )
                )
    sample_plans(backend, [t for t in trajectories if t.mode == "think"], settings.plan_temperature)
    draw(backend, trajectories, settings.cfg_scale, settings.image_temperature)
    return trajectories


def in_batches(contexts: list[list[int]], batch_size: int = 128) -> list[list[int]]:
    """Row indices of the calls to make, at most `batch_size` rows each. The engines take contexts
    of different lengths in one call (the fast engine pads them; hf runs one length at a time), so
    rows are sorted by length to keep the padding small."""
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def sample_plans(backend: JanusBackend, trajectories: list[Trajectory], temperature: float) -> None:
    """Fill in each think trajectory's plan, sampled with its plan seed."""
    stops = [backend.eos_id, backend.boi_id]
    contexts = [t.context_ids for t in trajectories]
    for rows in in_batches(contexts):
        written = backend.generate_text_ids(
            [contexts[i] for i in rows],
            None,
            [trajectories[i].plan_seed for i in rows],
            temperature,
            backend.template.max_plan_tokens,
            stops,
        )
        for i, tokens in zip(rows, written):
            stopped = bool(tokens) and tokens[-1] in stops
            trajectory = trajectories[i]
            trajectory.plan_ids = tokens[:-1] if stopped else tokens
            trajectory.plan_stop = tokens[-1] if stopped else None
            trajectory.plan_text = backend.text_from_tokens(list(tokens), stops)


def draw(backend: JanusBackend, trajectories: list[Trajectory], cfg_scale: float, temperature: float) -> None:
    """Fill in each trajectory's image tokens and picture, drawn with its image seed."""
    contexts = [t.draw_context(backend.boi_id) for t in trajectories]
    for rows in in_batches(contexts):
        tokens = backend.generate_image_token_rows(
            [contexts[i] for i in rows], [trajectories[i].image_seed for i in rows], cfg_scale, temperature, 0
        )
        for i, row, picture in zip(rows, tokens.cpu(), backend.decode_images(tokens)):
            trajectories[i].image_tokens = row
            trajectories[i].picture = picture


def think_guides(
    trajectories: list[Trajectory], rewards: list[float], count: int, score
) -> tuple[list[Trajectory], list[float]]:
    """For every direct group, up to `count` of its prompt's think pictures as direct rows, with
    their rewards: the best ones that beat every picture the group sampled itself.

    Off-policy guidance (LUFFY, Yan et al. 2025): a picture drawn with a plan joins the group of
    pictures drawn without one, in the direct context (no plan tokens), so that where the direct
    policy found nothing as good, the group still holds a better picture to move towards. Only
    there: guides added to every group (measured, benchmarks/RESULTS.md) pulled the direct policy
    towards the plans' layouts where it already drew right, and its own exact share fell. Each
    candidate is rewarded as a direct row (`score(rows) -> rewards`: no plan to judge), and the
    guides are scored as if sampled now (ratio 1 on their first pass).
    """
    direct_groups: dict[int, list[int]] = {}
    for row, t in enumerate(trajectories):
        if t.mode == "direct" and not t.guide:
            direct_groups.setdefault(t.group, []).append(row)
    group_of_prompt = {trajectories[rows[0]].prompt: group for group, rows in direct_groups.items()}
    candidates = [
        Trajectory(
            prompt=think.prompt,
            group=group_of_prompt[think.prompt],
            mode="direct",
            plan_seed=think.plan_seed,
            image_seed=think.image_seed,
            context_ids=trajectories[direct_groups[group_of_prompt[think.prompt]][0]].context_ids,
            plan_ids=[],
            plan_stop=None,
            plan_text=None,
            image_tokens=think.image_tokens,
            picture=think.picture,
            guide=True,
        )
        for think in trajectories
        if think.mode == "think" and think.prompt in group_of_prompt
    ]
    if not candidates:
        return [], []
    candidate_rewards = score(candidates)
    chosen = []
    for group, rows in direct_groups.items():
        best_sampled = max(rewards[row] for row in rows)
        better = [
            i for i, c in enumerate(candidates) if c.group == group and candidate_rewards[i] > best_sampled + 1e-6
        ]
        chosen += sorted(better, key=lambda i: -candidate_rewards[i])[:count]
    return [candidates[i] for i in chosen], [candidate_rewards[i] for i in chosen]
