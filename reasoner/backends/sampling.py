"""Token choice with one random stream per candidate, as a transformers logits processor.

transformers samples a whole batch from the global RNG, so candidate k's picture would depend on
how many candidates were drawn beside it. This processor does the guidance mix, temperature,
top-k and the draw itself with one `torch.Generator` per row, and hands back scores in which only
the chosen token is finite; the caller then runs transformers' greedy path, whose argmax takes it.
A candidate's seed therefore reproduces its picture on its own. With temperature 0 it is plain
greedy decoding on the guided scores. The mix and the temperature + top-k arithmetic are the
engines' own (`reasoner/engine/sampling.py`); only the draw (`torch.multinomial`) is this file's.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from ..engine.progress import image_step_done
from ..engine.sampling import guided, probabilities


class SeededSampler(LogitsProcessor):
    def __init__(
        self,
        seeds: list[int],
        temperature: float,
        top_k: int = 0,
        guidance_scale: float | None = None,
        device: torch.device | str = "cpu",
        total_steps: int | None = None,
    ):
        self.temperature = temperature
        self.top_k = top_k
        self.guidance_scale = guidance_scale
        self.generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]
        self.steps, self.total_steps = 0, total_steps  # image tokens: each step is heard (engine/progress.py)

    def mix(self, scores: torch.Tensor) -> torch.Tensor:
        """Guided scores: the batch is [conditional rows; unconditional rows] when guidance is on."""
        return guided(scores, self.guidance_scale)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.total_steps is not None:
            self.steps += 1
            image_step_done(self.steps, self.total_steps)
        scores = self.mix(scores)
        if self.temperature == 0:
            return scores
        choice = sample_rows(scores, self.generators, self.temperature, self.top_k)
        only_choice = torch.full_like(scores, float("-inf"))
        return only_choice.scatter_(1, choice[:, None], 0.0)


def sample_rows(
    scores: torch.Tensor, generators: list[torch.Generator], temperature: float, top_k: int
) -> torch.Tensor:
    """One token per row of `scores` (rows, vocab), row i drawn with generators[i]."""
    if len(generators) != scores.shape[0]:
        raise ValueError(f"{len(generators)} generators for {scores.shape[0]} rows")
    probs = probabilities(scores, temperature, top_k)
    return torch.cat([torch.multinomial(row, 1, generator=g) for row, g in zip(probs, generators)])
