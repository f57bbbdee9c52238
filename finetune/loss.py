"""The GRPO objective: group-normalised advantages, the clipped ratio, k3 KL to the reference.

One advantage per trajectory, shared by every token it trains (its plan's and its picture's:
BiCoT-GRPO's one policy gradient over both chains). The loss is a token-level mean over the
whole step's trained tokens, so micro-batches add up to the same gradient as one big batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def group_advantages(rewards: torch.Tensor, groups: torch.Tensor, scale: bool, eps: float = 1e-4) -> torch.Tensor:
    """(reward - its group's mean), divided by the group's std when `scale` (GRPO; off: Dr. GRPO)."""
    advantages = torch.empty_like(rewards)
    for group in groups.unique():
        rows = groups == group
        values = rewards[rows]
        centred = values - values.mean()
        advantages[rows] = centred / (values.std() + eps) if scale else centred
    return advantages


@dataclass
class LossParts:
    loss: torch.Tensor  # this micro-batch's share of the step's loss (sum over its tokens / step tokens)
    kl: float  # sum of per-token KL over this micro-batch's trained tokens
    clipped: float  # trained tokens whose ratio was clipped
    tokens: int  # trained tokens in this micro-batch


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
    beta: float,
    step_tokens: int,
) -> LossParts:
    """logps, old_logps, ref_logps, mask: (R, L) per trained token; advantages (R,).

    `old_logps` None: the rollouts' policy is the current one (one pass per batch), ratio 1.
    """
    old = logps.detach() if old_logps is None else old_logps
    ratio = torch.exp(logps - old)
    advantage = advantages[:, None]
    clipped_ratio = ratio.clamp(1 - clip_range, 1 + clip_range)
    per_token = -torch.min(ratio * advantage, clipped_ratio * advantage)
    kl = torch.zeros_like(logps)
    if beta > 0 and ref_logps is not None:
        delta = ref_logps - logps
        kl = torch.exp(delta) - delta - 1  # k3: unbiased, always >= 0
        per_token = per_token + beta * kl
    mask = mask.to(logps.dtype)
    loss = (per_token * mask).sum() / max(step_tokens, 1)
    was_clipped = ((ratio - clipped_ratio).abs() > 0).to(logps.dtype) * mask
    return LossParts(loss, float((kl.detach() * mask).sum()), float(was_clipped.detach().sum()), int(mask.sum()))
