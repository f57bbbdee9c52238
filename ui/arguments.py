"""Every endpoint's arguments checked at the edge, as the client sent them.

The API events run with `preprocess=False` (ui/layout.py), so Gradio neither coerces a value
(123 -> "123", 1.5 -> 2) nor fails on one with its generic "upstream app has raised an exception":
each check here either returns the value as the handler wants it or raises ArgumentError, one line
naming the argument. Numbers must arrive as JSON numbers, text as JSON strings.
"""

from __future__ import annotations

import math

from reasoner.errors import InvalidSettingError

MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id cannot exist


class ArgumentError(InvalidSettingError):
    """An argument of the wrong type or out of its range."""


def text(value, name: str, optional: bool = False) -> str:
    """A string that UTF-8 can hold (a lone surrogate cannot be stored or tokenized)."""
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be text, not {kind_of(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ArgumentError(
            f"{name} holds a character that is not valid text (a lone surrogate at position {error.start})"
        ) from None
    return value


def whole(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """An int (or an integral float, as JSON may send 3.0) within [low, high]."""
    if value is None or value == "":
        raise ArgumentError(f"{name} is empty")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, float):
        raise ArgumentError(f"{name}={value} is not a whole number")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(
            f"{name}={short(value)} is not a number"
            if isinstance(value, str)
            else f"{name} must be a whole number, not {kind_of(value)}"
        )
    return in_range(value, name, low, high)


def real(value, name: str, low: float | None = None, high: float | None = None) -> float:
    """A finite int or float within [low, high]."""
    if value is None or value == "":
        raise ArgumentError(f"{name} is empty")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(
            f"{name}={short(value)} is not a number"
            if isinstance(value, str)
            else f"{name} must be a number, not {kind_of(value)}"
        )
    if isinstance(value, int) and abs(value) > 2**53:
        raise ArgumentError(f"{name}={short(value)} is out of range {low}..{high}")
    if not math.isfinite(value):
        raise ArgumentError(f"{name}={value} is not a finite number")
    return in_range(float(value), name, low, high)


def flag(value, name: str) -> bool:
    if value is None:
        return False  # an unticked box the client left out
    if not isinstance(value, bool):
        raise ArgumentError(f"{name} must be true or false, not {kind_of(value)}")
    return value


def choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ArgumentError(f"{name} {short(value)} is not one of {', '.join(choices)}")
    return value


def record_id(value, what: str, missing: str) -> int:
    """A stored row's id; `missing` is the message when there is none yet. An id too large to be
    stored reads like any id that does not exist."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        raise ArgumentError(missing)
    number = whole(value, f"{what} id", low=None)
    if not 1 <= number <= MAX_ID:
        raise ArgumentError(f"{what} {short(number)} does not exist")
    return number


def optional_record_id(value, what: str) -> int | None:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    return record_id(value, what, "")


def in_range(value, name: str, low, high):
    if (low is not None and value < low) or (high is not None and value > high):
        raise ArgumentError(f"{name}={short(value)} is out of range {low}..{high}")
    return value


def kind_of(value) -> str:
    return {type(None): "nothing", bool: "true/false", str: "text", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def short(value) -> str:
    """A value as a message shows it: bounded, whatever a client sent."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"  # str() of a huge int raises
    shown = repr(value) if isinstance(value, str) else str(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
