"""The page's side of errors: a handler's one-line error goes to a lasting status line.

The API endpoints raise gr.Error, so a `gradio_client` call fails with the line. On the page a
raised error would mark every output component "Error" (and a click on them then hangs) and the
line would fade as a toast; so the buttons call `on_page(handler)`, which leaves the outputs as they
were and puts the line in the status Markdown, keeping the inputs usable (issue 15, item 8).
"""

from __future__ import annotations

import functools
import html
import inspect
import logging

import gradio as gr

log = logging.getLogger(__name__)


def error_line(error: Exception) -> str:
    if isinstance(error, gr.Error):
        return f"**Error:** {error.message}"
    log.exception("unexpected error in a studio handler")  # a bug: logged once, shown as one line
    return f"**Error:** something unexpected went wrong ({html.escape(type(error).__name__)}); the studio goes on."


def on_page(fn, outputs: int):
    """`fn` for the page: its `outputs` values, then the status line ("" when all went well); on an
    error every output is left as it was and the status says what went wrong."""

    def as_tuple(values) -> tuple:
        return (values,) if outputs == 1 else tuple(values)

    def failed(error: Exception) -> tuple:
        return (*[gr.skip()] * outputs, error_line(error))

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streamed(*args, **kwargs):
            try:
                for values in fn(*args, **kwargs):
                    yield (*as_tuple(values), "")
            except Exception as error:  # noqa: BLE001 - every error becomes the status line
                yield failed(error)

        return streamed

    @functools.wraps(fn)
    def single(*args, **kwargs):
        try:
            return (*as_tuple(fn(*args, **kwargs)), "")
        except Exception as error:  # noqa: BLE001 - every error becomes the status line
            return failed(error)

    return single
