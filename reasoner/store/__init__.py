"""The preference store: prompts, turns, plans and reflections (the model's and a person's edits),
candidates with their seeds and settings, and the verdicts people give, in SQLite under the data
directory; pictures stored once by content hash beside it. See store.py and export.py."""

from .errors import PreferenceError, StoreError
from .export import ExportSummary, export_dataset, preference_pairs
from .images import png_bytes
from .records import (
    Actor,
    CandidateRef,
    DrawInfo,
    DrawRef,
    DrawRequest,
    NewCandidate,
    ReflectionInfo,
    ReflectionRef,
    ThinkRef,
    TurnState,
    TurnSummary,
)
from .store import DB_NAME, PREFERENCE_KINDS, Store

__all__ = [
    "DB_NAME",
    "PREFERENCE_KINDS",
    "Actor",
    "CandidateRef",
    "DrawInfo",
    "DrawRef",
    "DrawRequest",
    "ExportSummary",
    "NewCandidate",
    "PreferenceError",
    "ReflectionInfo",
    "ReflectionRef",
    "Store",
    "StoreError",
    "ThinkRef",
    "TurnState",
    "TurnSummary",
    "export_dataset",
    "png_bytes",
    "preference_pairs",
]
