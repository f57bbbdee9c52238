"""Who hears about image tokens as they are decoded: the studio's progress bar during one draw.

A context variable, not a parameter: the token loops sit four calls below the pipeline's draw,
and only the studio listens (the command line, eval and training do not). A listener set in a
thread is heard by the loops that thread runs, and by no other request's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

StepListener = Callable[[int, int], None]  # (image tokens decoded so far, image tokens in all)

_listener: ContextVar[StepListener | None] = ContextVar("image_step_listener", default=None)


@contextmanager
def image_steps_to(listener: StepListener) -> Iterator[None]:
    """Within the block, every image-token step of a draw calls `listener(done, total)`."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def image_step_done(done: int, total: int) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(done, total)
