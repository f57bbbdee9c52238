"""Decode engines: who runs the token loops for a Janus model.

`hf` is transformers' own `generate` (the reference, in `reasoner/backends/janus.py`). `fast`
(`fast.py`: static KV cache, prefill and a compiled decode-one-token step, CUDA graphs on GPU) and
`onnx` (`onnx_runtime.py`: the decoder step, heads and VQ decoder exported to ONNX and run by ONNX
Runtime) give the reference's tokens for greedy settings and the same sampling distribution, with
each candidate drawn from its own seed. `reasoner/commands/bench.py` times them side by side.
The engine reads tensors only: it imports nothing from the backends, the commands or weights/.
"""

from __future__ import annotations

from ..errors import InvalidSettingError
from .guidance import SpecialTokens

ENGINES = ("hf", "fast", "onnx")
BUILT_ENGINES = ("hf", "fast", "onnx")  # the engines this checkout can run
DEFAULT_ENGINE = "fast"

__all__ = ["BUILT_ENGINES", "DEFAULT_ENGINE", "ENGINES", "SpecialTokens", "check_engine", "make_engine"]


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise InvalidSettingError(f"engine {name!r} is not one of {', '.join(ENGINES)}")
    if name not in BUILT_ENGINES:
        raise InvalidSettingError(f"engine {name!r} is not built yet; use one of {', '.join(BUILT_ENGINES)}")
    return name


def make_engine(name: str, model, special: SpecialTokens, model_dir=None, **options):
    """The fast or onnx engine over a loaded `JanusForConditionalGeneration` (hf needs none)."""
    check_engine(name)
    if name == "fast":
        from .fast import FastEngine

        return FastEngine(model, special, **options)
    if name == "onnx":
        from .onnx_runtime import OnnxEngine

        return OnnxEngine(model, special, model_dir=model_dir, **options)
    raise InvalidSettingError(f"engine {name!r} runs inside the backend; there is nothing to make")
