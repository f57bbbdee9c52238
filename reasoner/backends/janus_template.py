"""How a Janus model is prompted to think, draw and reflect: one text layout per model family.

The layout follows T2I-R1: one sequence holds the request, the plan the model wrote (semantic
chain of thought), then the image tokens (token-level chain of thought). Drawing from a plan is
therefore the think context, the plan, then begin-of-image; drawing "direct" is the same context
with begin-of-image right away. Reflection shows the model its own picture and asks what is
wrong; the picture is read either through the understanding encoder (Janus-Pro, as trained) or,
for a model trained to, as the image tokens the VQ encodes it to, through the embedding the model
draws with (`reflect_reads`).

A model directory may carry its own layout in `reasoner.json`; Janus-Pro and T2I-R1 checkpoints,
which have none, get `JANUS_PRO_TEMPLATE`. The finetune trainer builds its sequences from the same
template, so the log-probabilities it trains are those of what the engine drew.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import ModelLoadError

TEMPLATE_FILE = "reasoner.json"
WORLDS = ("open", "shapes")
PICTURE_READERS = ("vision", "image_tokens")


@dataclass(frozen=True)
class JanusTemplate:
    # Format strings. {prompt}, {plan} and {image} are filled in; {image} becomes
    # begin-of-image, one placeholder per vision token, end-of-image.
    think: str = "<|User|>: {prompt}\n\n<|Assistant|>:"
    """Context after which the model writes its plan."""
    plan_prefix: str = ""
    """Text put between the think context and a plan when drawing from it."""
    direct: str = "<|User|>: {prompt}\n\n<|Assistant|>:"
    """Context for drawing without a plan; begin-of-image follows it."""
    reflect: str = "<|User|>: {image}\n{prompt}\n{plan}\n\n<|Assistant|>:"
    """Context after which the model writes its reflection on the image."""
    reflect_reads: str = "vision"
    """How the reflection context's {image} is filled: `vision`, the understanding encoder and its
    aligner (Janus-Pro); `image_tokens`, the picture's VQ codes through the generation embedding
    and aligner, the path the model reads its own image tokens by while drawing."""
    reflect_adapter: str = ""
    """A subdirectory of the model directory holding a LoRA adapter (peft format) that reflection
    runs with, while planning and drawing run without it (`adapters.py`); empty: none."""
    world: str = "open"
    """`shapes`: plans follow the shapes-world grammar and are validated; `open`: free text."""
    max_plan_tokens: int = 256
    max_reflection_tokens: int = 256
    max_prompt_chars: int = 1000
    default_cfg_scale: float = 5.0
    """The guidance scale this model draws best with, used when none is asked for."""

    def __post_init__(self):
        if self.world not in WORLDS:
            raise ModelLoadError(f"{TEMPLATE_FILE}: world {self.world!r} is not one of {', '.join(WORLDS)}")
        if self.reflect_reads not in PICTURE_READERS:
            raise ModelLoadError(
                f"{TEMPLATE_FILE}: reflect_reads {self.reflect_reads!r} is not one of {', '.join(PICTURE_READERS)}"
            )
        if self.reflect_adapter and (
            Path(self.reflect_adapter).is_absolute() or ".." in Path(self.reflect_adapter).parts
        ):
            raise ModelLoadError(
                f"{TEMPLATE_FILE}: reflect_adapter {self.reflect_adapter!r} must name a subdirectory"
                " of the model directory"
            )
        for name, keys in (("think", ["{prompt}"]), ("direct", ["{prompt}"]), ("reflect", ["{image}"])):
            for key in keys:
                if key not in getattr(self, name):
                    raise ModelLoadError(f"{TEMPLATE_FILE}: template {name!r} lacks {key}")

    def save(self, directory: str | Path) -> None:
        Path(directory, TEMPLATE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> JanusTemplate:
        """The template in `directory`, or Janus-Pro's when the directory has none."""
        path = Path(directory, TEMPLATE_FILE)
        if not path.exists():
            return JANUS_PRO_TEMPLATE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"{path}: not readable JSON ({error})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelLoadError(f"{path}: unknown keys {unknown}")
        return cls(**data)


# Janus-Pro's chat layout, with an instruction that asks for a T2I-R1 style semantic plan.
JANUS_PRO_TEMPLATE = JanusTemplate(
    think=(
        "<|User|>: Before drawing, plan this picture: {prompt}\n"
        "In a few short sentences, name every object the picture needs, with its color, number "
        "and shape, and say where each one goes. Resolve anything the request only implies. "
        "Describe nothing that was not asked for.\n\n<|Assistant|>:"
    ),
    plan_prefix=" ",
    direct="<|User|>: {prompt}\n\n<|Assistant|>:",
    reflect=(
        '<|User|>: {image}\nThis picture was drawn for the request "{prompt}" following the plan '
        '"{plan}". Say what in the picture does not match the request. If something is wrong, end '
        'with a corrected plan after "Plan:".\n\n<|Assistant|>:'
    ),
    world="open",
)

# The bundled shapes model and the tiny test models: short, so that small models learn it fast.
SHAPES_TEMPLATE = JanusTemplate(
    think="User: {prompt}\nAssistant:",
    plan_prefix=" ",
    direct="User: {prompt}\nAssistant:",
    reflect="User: {prompt}\nAssistant: {plan}{image}\nReflect:",
    # The picture is read as it was drawn: its image tokens, right after the plan, as in drawing.
    reflect_reads="image_tokens",
    world="shapes",
    max_plan_tokens=96,
    max_reflection_tokens=128,
    max_prompt_chars=300,
    default_cfg_scale=1.0,  # measured: the bundled model's guided half is weak; scale 3 hurts badly
)
