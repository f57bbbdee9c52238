"""What the pipeline needs from a model, whatever draws the pictures.

Janus (`janus.py`) does all three steps in one autoregressive model. A think-then-generate backend
on diffusers would write and revise plans with a language model and draw with a diffusion model;
it implements the same methods and the pipeline does not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from PIL import Image


@dataclass(frozen=True)
class ModelInfo:
    name: str  # catalog name or directory
    kind: str  # e.g. "janus"
    world: str  # "shapes" (plans follow docs/shapes-world.md, validated) or "open" (free text)
    parameters: int
    device: str
    dtype: str
    image_size: int  # side of the square pictures it draws, in pixels
    default_cfg_scale: float = 5.0  # the guidance scale this model draws best with (its card says why)
    adapter: str | None = None  # the LoRA adapter directory merged into the weights at load time, if any

    def summary(self) -> str:
        with_adapter = f", adapter {self.adapter}" if self.adapter else ""
        return (
            f"{self.name} ({self.kind}, {self.parameters / 1e6:.1f} M parameters, {self.dtype} on {self.device}"
            f"{with_adapter})"
        )


@dataclass
class DrawnImage:
    image: Image.Image
    tokens: torch.Tensor | None  # the image tokens it was decoded from, where the model has them


class Backend(Protocol):
    info: ModelInfo
    max_prompt_chars: int
    engine: str  # who runs the token loops (reasoner/engine)

    def use_engine(self, engine: str) -> None:
        """Run the token loops on `engine` from now on, keeping the loaded weights."""

    def write_plan(self, prompt: str, seed: int, temperature: float) -> str:
        """The model's plan for `prompt`: free text, for shapes models ending in `Plan: ...`."""

    def write_plans(self, prompt: str, seeds: list[int], temperature: float) -> list[str]:
        """One plan per seed, in one batch; plan k is what `write_plan(prompt, seeds[k], ...)` writes."""

    def draw_images(
        self, prompt: str, plan: str | None, seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> list[DrawnImage]:
        """One picture per seed; `plan=None` draws from the prompt alone."""

    def draw_images_from_plans(
        self, prompt: str, plans: list[str], seeds: list[int], cfg_scale: float, temperature: float, top_k: int
    ) -> list[DrawnImage]:
        """Picture k from plans[k] with seeds[k], in one batch; each what `draw_images` gives it alone."""

    def write_reflection(self, prompt: str, plan: str, image: Image.Image, seed: int, temperature: float) -> str:
        """What the model says about its own picture; a revision ends with `Plan: ...`."""
