"""Where models come from: the catalog of names (`catalog.py`) and random models of real shapes
(`random_janus.py`, with the byte-level tokenizer of `tokenizer.py`). Loading a model's files is
the backend's (`reasoner/backends/janus_loading.py`)."""

from .catalog import CATALOG, DEFAULT_MODEL, WEIGHTS_DIR, Adapted, ModelSource, catalog_names, resolve, resolve_model

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "WEIGHTS_DIR",
    "Adapted",
    "ModelSource",
    "catalog_names",
    "resolve",
    "resolve_model",
]
