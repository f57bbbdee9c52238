"""Contexts of different lengths in one batch: left padding, per-row positions and key masks.

Row r of a batch is left-padded by `start[r]` slots to the longest context, so every row ends at
the same slot and all rows decode in step, one slot at a time. Its rotary position at slot t is
`t - start[r]`, and its queries never see its padding keys: the row computes what it computes alone.
A batch whose rows all have one length has no padding and takes the engines' unmasked paths.
"""

from __future__ import annotations

import torch


def left_pad(rows: list[list[int]], pad: int) -> tuple[list[list[int]], list[int]]:
    """The rows left-padded with `pad` to the longest, and each row's padding (its first real slot)."""
    length = max(map(len, rows))
    return [[pad] * (length - len(row)) + list(row) for row in rows], [length - len(row) for row in rows]


def prefill_positions(start: torch.Tensor, length: int) -> torch.Tensor:
    """(rows, length) rotary position of each slot: slot minus the row's padding (0 on padding)."""
    return (torch.arange(length, device=start.device) - start[:, None]).clamp(min=0)


def prefill_mask(start: torch.Tensor, length: int) -> torch.Tensor:
    """(rows, 1, length, length) boolean attention mask: causal, from the row's first real slot.

    A padding query sees its own key only, so that its (never read) output stays finite: a row of
    keys all hidden would give NaN, and NaN times a zero attention weight is still NaN.
    """
    slots = torch.arange(length, device=start.device)
    causal = slots[None, :] <= slots[:, None]  # (query, key)
    real = slots[None, None, :] >= start[:, None, None]  # (rows, 1, key)
    return (causal & (real | torch.eye(length, dtype=torch.bool, device=start.device)))[:, None]


def step_mask(
    start: torch.Tensor | None, kv_positions: torch.Tensor, input_pos: torch.Tensor, exact_reads: bool, dtype
) -> torch.Tensor | None:
    """The additive mask of a decode step over cache positions `kv_positions` (L,): 0 where a row
    may look (from its first real slot `start` (rows,) up to `input_pos`), -inf elsewhere.

    (rows, 1, 1, L) with padding; (1, 1, 1, L) without; None when there is nothing to hide (no
    padding, and the reads end at `input_pos`).
    """
    hidden = None if exact_reads else kv_positions > input_pos  # (L,): beyond the step's position
    if start is not None:
        before = kv_positions[None, :] < start[:, None]  # (rows, L): the row's padding
        hidden = before if hidden is None else before | hidden
    if hidden is None:
        return None
    zeros = torch.zeros(hidden.shape, dtype=dtype, device=kv_positions.device)
    return zeros.masked_fill(hidden, float("-inf")).view(-1, 1, 1, kv_positions.shape[0])


def by_length(contexts: list[list[int]]) -> list[list[int]]:
    """Row indices grouped by context length, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for index, context in enumerate(contexts):
        groups.setdefault(len(context), []).append(index)
    return list(groups.values())


def run_by_length(contexts: list[list[int]], run) -> list:
    """For loops that take one context length a call (hf's `generate`, the onnx engine): `run(rows)`
    on each group of rows of one length; each row's result, in the rows' order."""
    results = [None] * len(contexts)
    for rows in by_length(contexts):
        for index, result in zip(rows, run(rows)):
            results[index] = result
    return results
