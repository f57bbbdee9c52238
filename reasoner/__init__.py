"""Reasoner Studio's engine: a text-to-image model that thinks, draws and reflects."""

from .errors import ReasonerError
from .records import Candidate, DrawSettings, Plan, Reflection, Turn

__all__ = ["Candidate", "DrawSettings", "Plan", "ReasonerError", "Reflection", "Turn", "ReasonerPipeline"]


def __getattr__(name):
    # The pipeline pulls in torch and transformers; import it only when asked for.
    if name == "ReasonerPipeline":
        from .pipeline import ReasonerPipeline

        return ReasonerPipeline
    raise AttributeError(name)
