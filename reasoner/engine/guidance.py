"""Classifier-free guidance's unconditional half: the one home of the prompt-drop rule.

A drawing context's unconditional form keeps begin-of-sentence and begin-of-image and replaces
every other token by pad: the rule transformers' Janus `generate` applies in image mode
(docs/janus-notes.md). The fast and onnx engines build their guidance rows with it, and the training
recipe drops prompts with it, so the model learns the very context it is guided against. The mix of
the two halves' scores is `sampling.guided`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SpecialTokens:
    bos: int
    boi: int  # begin-of-image: ends every drawing context
    pad: int  # replaces every token but BOS/BOI in the unconditional context

    @property
    def kept(self) -> tuple[int, int]:
        """The tokens a prompt-dropped context keeps."""
        return (self.bos, self.boi)


def unconditional_ids(context_ids: list[int], special: SpecialTokens) -> list[int]:
    """The prompt-dropped context for guidance: every token but BOS and BOI becomes pad."""
    return [t if t in special.kept else special.pad for t in context_ids]


def unconditional_tensor(ids: torch.Tensor, special: SpecialTokens) -> torch.Tensor:
    """`unconditional_ids` on a tensor of contexts (any shape), on its device."""
    kept = torch.tensor(special.kept, device=ids.device)
    return torch.where(torch.isin(ids, kept), ids, special.pad)


def guidance_rows(contexts: list[list[int]], special: SpecialTokens) -> list[list[int]]:
    """[conditional rows; unconditional rows]: each context, then each one's prompt-dropped form."""
    return contexts + [unconditional_ids(c, special) for c in contexts]
