"""Put the studio together: data directory, store, model, handlers, page."""

from __future__ import annotations

import gradio as gr

from reasoner.store import Store

from .config import StudioConfig
from .handlers import Studio
from .layout import CSS, build_page
from .learn_handlers import Learning
from .learning import LearnJobs
from .models import Models, choose_model
from .server import launch, serve_files_from


def build_studio(config: StudioConfig, background: bool = False) -> tuple[gr.Blocks, Studio]:
    """The page and its handlers. Raises ReasonerError (one line) when the model or data dir fail;
    with `background`, the weights load once `studio.models.load_in_background()` is called (app.py
    calls it when the page is served), and a model that fails then says so on the page."""
    serve_files_from(config.data_dir)  # before any Blocks exist: Gradio reads its folders then
    store = Store.open(config.data_dir)
    choice = choose_model(config.model, config.data_dir)
    models = Models(choice, config.device, config.engine, background=background)
    studio = Studio(models, store, config)
    learning = Learning(studio, LearnJobs(config.data_dir, config.model, settings=config.learn_settings))
    return build_page(studio, choice.notice, models.info_markdown(), learning), studio


def serve(demo: gr.Blocks, config: StudioConfig, prevent_thread_lock: bool = False):
    return launch(demo, config, css=CSS, prevent_thread_lock=prevent_thread_lock)
