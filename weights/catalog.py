"""The model catalog now lives in the library (`reasoner.models.catalog`); this name stays for
callers outside it (the UI, tests). The same objects: patching CATALOG here patches it there."""

from reasoner.models.catalog import CATALOG, DEFAULT_MODEL, WEIGHTS_DIR, resolve_model

__all__ = ["CATALOG", "DEFAULT_MODEL", "WEIGHTS_DIR", "resolve_model"]
