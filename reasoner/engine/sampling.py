"""Token choice: the one home of the guidance mix and of temperature + top-k, read by the fast and
ONNX engines here and by the reference's `SeededSampler` (`reasoner/backends/sampling.py`).

The semantics: guidance
`uncond + s * (cond - uncond)` on float32 scores, temperature 0 = argmax of the guided scores,
otherwise temperature, top-k and one draw per candidate from that candidate's own generator.

The draw is written out as the one-sample method `torch.multinomial` itself uses:
`argmax(p / q)` with `q ~ Exp(1)` drawn per vocabulary entry (the Gumbel-max trick in exponential
form). Writing it out splits the draw in two:

- `RowNoise.draw()` fills a (candidates, vocab) buffer, row k from generator k. It runs outside any
  compiled or CUDA-graph-captured code, since per-row generators cannot be captured; on a GPU that
  is one small kernel per candidate per step, queued without a sync.
- `pick()` does the arithmetic (mix, temperature, top-k, softmax, argmax) and is traced into the
  compiled decode step.

Drawn from a generator seeded the same way, `q` is exactly the noise `torch.multinomial` would
draw, so on the same scores the engines pick the reference's tokens; each candidate consumes only
its own stream, so a candidate reproduces from its seed whatever the batch beside it.
"""

from __future__ import annotations

import torch


def guided(logits: torch.Tensor, cfg_scale: torch.Tensor | float | None) -> torch.Tensor:
    """(rows, vocab) float32 scores: the batch is [conditional rows; unconditional rows] when guided."""
    scores = logits.float()
    if cfg_scale is None:
        return scores
    half = scores.shape[0] // 2  # halves by slicing, not chunk(2): an exported step keeps its rows dynamic
    conditional, unconditional = scores[:half], scores[half:]
    return unconditional + cfg_scale * (conditional - unconditional)


def probabilities(scores: torch.Tensor, temperature: torch.Tensor | float, top_k: int) -> torch.Tensor:
    """(rows, vocab) sampling probabilities of guided scores: temperature, then the k best (0: all)."""
    scores = scores / temperature
    if 0 < top_k < scores.shape[-1]:
        kth_best = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth_best, float("-inf"))
    return torch.softmax(scores, dim=-1)


def pick(
    scores: torch.Tensor, noise: torch.Tensor | None, temperature: torch.Tensor | float, top_k: int
) -> torch.Tensor:
    """(rows,) token ids. `noise` None is greedy (temperature 0); else (rows, vocab) Exp(1) noise."""
    if noise is None:
        return scores.argmax(-1)
    return (probabilities(scores, temperature, top_k) / noise).argmax(-1)


class RowNoise:
    """Exp(1) noise for one step, one row per candidate, row k from the generator of seed k."""

    def __init__(self, seeds: list[int], buffer: torch.Tensor):
        if buffer.shape[0] != len(seeds):
            raise ValueError(f"{len(seeds)} seeds for a noise buffer of {buffer.shape[0]} rows")
        self.generators = [torch.Generator(device=buffer.device).manual_seed(int(seed)) for seed in seeds]
        self.buffer = buffer  # (candidates, vocab) float32; a compiled step may hold its address

    def draw(self) -> torch.Tensor:
        for row, generator in zip(self.buffer, self.generators):
            row.exponential_(generator=generator)
        return self.buffer
