"""Teacher-forced log-probabilities of what the rollouts sampled, in one pass with gradients.

Row i's sequence is its draw context (context, plan tokens, begin-of-image) and then its image
tokens: the text through the input embeddings, the image tokens through the generation
embedding and aligner, as the engines feed them. Rows are right-padded; attention is causal, so
padding at the end changes nothing before it and needs no mask.

- Plan tokens (and the stop token the plan ended with) are scored by the language head at the
  temperature they were sampled at.
- Image tokens are scored by the generation head with the guidance mix they were sampled with:
  the same rows with the prompt-dropped context (`reasoner/engine/guidance.py`) run in the same
  batch, `uncond + s * (cond - uncond)` on float32 logits, then the temperature. At scale 1 the
  mix is the conditional logits and the second half is skipped.

So these are the log-probabilities of the very distribution the engine drew from (tested). The
scorer is an `nn.Module` so that accelerate can wrap it (DDP, DeepSpeed) and gradients are
synchronised through its forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reasoner.engine.guidance import SpecialTokens, unconditional_ids

from .rollouts import Trajectory


@dataclass
class ScoringBatch:
    """Rollout rows as tensors for `TokenScorer`."""

    text_ids: torch.Tensor  # (R, T) draw contexts, right-padded
    text_lengths: torch.Tensor  # (R,)
    unconditional_text_ids: torch.Tensor | None  # (R, T) their prompt-dropped forms; None: no guidance pass
    image_tokens: torch.Tensor  # (R, N)
    plan_positions: torch.Tensor  # (R, P) the positions whose next token is a plan token (or its stop)
    plan_targets: torch.Tensor  # (R, P)
    plan_mask: torch.Tensor  # (R, P) bool: a real plan token, not padding

    @classmethod
    def of(cls, trajectories: list[Trajectory], special: SpecialTokens, guided: bool) -> ScoringBatch:
        texts = [t.draw_context(special.boi) for t in trajectories]
        longest = max(len(text) for text in texts)
        padded = [text + [special.pad] * (longest - len(text)) for text in texts]
        unconditional = None
        if guided:
            unconditional = torch.tensor(
                [unconditional_ids(text, special) + [special.pad] * (longest - len(text)) for text in texts]
            )
        targets = [t.plan_ids + ([] if t.plan_stop is None else [t.plan_stop]) for t in trajectories]
        width = max(1, max(len(target) for target in targets))
        positions = torch.zeros(len(texts), width, dtype=torch.long)
        target_ids = torch.zeros(len(texts), width, dtype=torch.long)
        mask = torch.zeros(len(texts), width, dtype=torch.bool)
        for row, (trajectory, target) in enumerate(zip(trajectories, targets)):
            start = len(trajectory.context_ids) - 1  # hidden state t predicts token t + 1
            positions[row, : len(target)] = torch.arange(start, start + len(target))
            target_ids[row, : len(target)] = torch.tensor(target, dtype=torch.long)
            mask[row, : len(target)] = True
        return cls(
            text_ids=torch.tensor(padded),
            text_lengths=torch.tensor([len(text) for text in texts]),
            unconditional_text_ids=unconditional,
            image_tokens=torch.stack([t.image_tokens for t in trajectories]),
            plan_positions=positions,
            plan_targets=target_ids,
            plan_mask=mask,
        )

    def to(self, device) -> ScoringBatch:
        moved = {name: None if value is None else value.to(device) for name, value in self.__dict__.items()}
        return ScoringBatch(**moved)


class TokenScorer(nn.Module):
    """Per-token log-probabilities of plans (language head) and pictures (generation head)."""

    def __init__(self, janus: nn.Module, cfg_scale: float, plan_temperature: float, image_temperature: float):
        super().__init__()
        self.janus = janus
        self.cfg_scale = cfg_scale
        self.plan_temperature = plan_temperature
        self.image_temperature = image_temperature

    def hidden_states(self, text_ids: torch.Tensor, lengths: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """(R, T + N, hidden): row i's text, then its image tokens from position lengths[i]."""
        rows, text_width = text_ids.shape
        count = image_tokens.shape[1]
        filler = torch.zeros(rows, count, dtype=text_ids.dtype, device=text_ids.device)  # overwritten or past the end
        text = self.janus.get_input_embeddings()(torch.cat([text_ids, filler], dim=1))  # (R, T + N, hidden)
        image = self.janus.prepare_embeddings_for_image_generation(image_tokens)  # (R, N, hidden)
        where = lengths[:, None] + torch.arange(count, device=text_ids.device)  # (R, N) the image positions
        placed = torch.zeros_like(text).scatter(
            1, where[..., None].expand(-1, -1, text.shape[-1]), image.to(text.dtype)
        )
        is_image = torch.zeros(rows, text_width + count, dtype=torch.bool, device=text_ids.device)
        is_image.scatter_(1, where, True)
        embeddings = torch.where(is_image[..., None], placed, text)
        # use_cache=False: teacher forcing reads no KV cache, and one built here (transformers' default)
        # holds every layer's keys and values to the end of a no-grad pass (the reference's)
        return self.janus.model.language_model(inputs_embeds=embeddings, use_cache=False).last_hidden_state

    def forward(self, batch: ScoringBatch, plan: bool = True, image: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(plan log-probs (R, P), image log-probs (R, N)); a part not asked for is zeros."""
        rows, count = batch.image_tokens.shape
        guided = image and batch.unconditional_text_ids is not None and self.cfg_scale != 1
        text_ids, lengths, tokens = batch.text_ids, batch.text_lengths, batch.image_tokens
        if guided:  # [conditional rows; unconditional rows], as the engines guide
            text_ids = torch.cat([text_ids, batch.unconditional_text_ids])
            lengths, tokens = torch.cat([lengths, lengths]), torch.cat([tokens, tokens])
        hidden = self.hidden_states(text_ids, lengths, tokens)
        plan_logps = torch.zeros(batch.plan_targets.shape, device=hidden.device)
        image_logps = torch.zeros(rows, count, device=hidden.device)
        if plan:
            at = batch.plan_positions[..., None].expand(-1, -1, hidden.shape[-1])
            logits = self.janus.lm_head(hidden[:rows].gather(1, at)).float() / self.plan_temperature
            plan_logps = logits.log_softmax(-1).gather(-1, batch.plan_targets[..., None])[..., 0] * batch.plan_mask
        if image:
            # hidden state at begin-of-image (lengths - 1) predicts image token 0
            where = (lengths - 1)[:, None] + torch.arange(count, device=hidden.device)
            at = where[..., None].expand(-1, -1, hidden.shape[-1])
            logits = self.janus.model.generation_head(hidden.gather(1, at)).float()
            if guided:
                conditional, unconditional = logits.chunk(2)
                logits = unconditional + self.cfg_scale * (conditional - unconditional)
            logits = logits / self.image_temperature
            image_logps = logits.log_softmax(-1).gather(-1, batch.image_tokens[..., None])[..., 0]
        return plan_logps, image_logps
