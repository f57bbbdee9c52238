"""Errors a person can act on.

Every error raised for bad input derives from `ReasonerError`; its message is one line that names
the fault. The command line prints it and exits with code 2; the UI shows it next to the input.
Anything else that escapes is a bug and keeps its traceback.
"""


class ReasonerError(Exception):
    """Bad input or environment, explained in one line."""


class InvalidPromptError(ReasonerError):
    """The prompt is empty, too long, or otherwise unusable."""


class PlanError(ReasonerError):
    """A plan breaks the grammar of the world it is meant for."""


class InvalidSettingError(ReasonerError):
    """A draw or generation setting is out of range."""


class ModelLoadError(ReasonerError):
    """A model directory is missing, incomplete, corrupt or of an unsupported kind."""


class OutputError(ReasonerError):
    """Results cannot be written where they were asked for."""


def one_line(error: BaseException) -> str:
    """A library's error message on one line, cut to 300 characters, to quote inside ours."""
    text = " ".join(str(error).split())
    return text[:300] if text else type(error).__name__
