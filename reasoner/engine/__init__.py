"""Decode engines: who runs the token loops for a Janus model.

`hf` is transformers' own `generate` (the reference, in `reasoner/backends/janus.py`). `fast`
(static KV cache, compiled decode step) and `onnx` (ONNX Runtime) produce the same tokens for the
same seed and greedy settings.
"""

from __future__ import annotations

from ..errors import InvalidSettingError

ENGINES = ("hf", "fast", "onnx")
BUILT_ENGINES = ("hf",)  # the engines this checkout can run
DEFAULT_ENGINE = "hf"


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise InvalidSettingError(f"engine {name!r} is not one of {', '.join(ENGINES)}")
    if name not in BUILT_ENGINES:
        raise InvalidSettingError(f"engine {name!r} is not built yet; use one of {', '.join(BUILT_ENGINES)}")
    return name
