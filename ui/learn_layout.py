"""The Learn tab: learn from my choices, the model that draws, base and tuned side by side."""

from __future__ import annotations

import gradio as gr

from reasoner.records import MAX_CANDIDATES

from .layout import MODEL, PAGE_ONLY, RAW, connect_step
from .learn_handlers import BASE, Learning

STATUS_POLL_S = 3.0


def learn_tab(learning: Learning) -> dict:
    lui = {}
    gr.Markdown(
        "**Learn from my choices** trains an adapter on your saved picks (a reward model of your taste, "
        "then GRPO with it and the checker), in the background; drawing goes on meanwhile. "
        "When it is done, choose it below and compare it with the base model."
    )
    with gr.Row():
        lui["minutes"] = gr.Number(15, label="Training budget (minutes)", precision=1, minimum=1, maximum=240)
        lui["learn"] = gr.Button("Learn from my choices", variant="primary", elem_id="learn")
    lui["learn_status"] = gr.Markdown(learning.jobs.status().line, elem_id="learn-status")
    with gr.Row():
        lui["model"] = gr.Dropdown(
            learning.model_choices(), value=BASE, label="Model that draws", elem_id="model-choice"
        )
        lui["use_model"] = gr.Button("Draw with this model", elem_id="use-model")
    lui["status"] = gr.Markdown(elem_id="learn-tab-status")
    with gr.Accordion("Compare base and tuned", open=True):
        with gr.Row():
            lui["prompt"] = gr.Textbox(label="Prompt", scale=3, elem_id="compare-prompt")
            lui["n"] = gr.Number(4, label="Candidates", precision=0, minimum=1, maximum=MAX_CANDIDATES)
            lui["seed"] = gr.Number(0, label="Seed", precision=0, minimum=0)
        lui["compare"] = gr.Button("Draw base and tuned", elem_id="compare")
        with gr.Row():
            lui["base_gallery"] = gr.Gallery(label="Base", columns=4, height="auto", interactive=False)
            lui["tuned_gallery"] = gr.Gallery(label="Tuned", columns=4, height="auto", interactive=False)
        lui["comparison_id"] = gr.Number(None, label="Comparison", precision=0, interactive=False)
        with gr.Row():
            lui["winner"] = gr.Radio(["base", "tuned", "same"], label="Which is better?", elem_id="winner")
            lui["decide"] = gr.Button("Save my pick", elem_id="decide")
        lui["decide_status"] = gr.Markdown(elem_id="decide-status")
    return lui


def connect_learning(learning: Learning, lui: dict, ui: dict) -> None:
    status = lui["status"]
    connect_step(learning.learn, lui["learn"], [lui["minutes"]], [lui["learn_status"]], status, "learn", **RAW)
    watched = [lui["learn_status"], lui["model"]]
    api_twin = gr.Button(visible=False, elem_classes="api-only")
    api_twin.click(learning.learn_status, None, watched, api_name="learn_status")
    gr.Timer(STATUS_POLL_S).tick(learning.learn_status, None, watched, show_progress="hidden", **PAGE_ONLY)
    connect_step(
        learning.use_model,
        lui["use_model"],
        [lui["model"]],
        [ui["model_info"], lui["status"]],
        status,
        "use_model",
        **MODEL,
    )
    connect_step(
        learning.compare,
        lui["compare"],
        [lui["prompt"], lui["model"], lui["n"], lui["seed"]],
        [lui["base_gallery"], lui["tuned_gallery"], lui["comparison_id"], lui["decide_status"]],
        status,
        "compare",
        **MODEL,
    )
    connect_step(
        learning.decide,
        lui["decide"],
        [lui["comparison_id"], lui["winner"]],
        [lui["decide_status"]],
        status,
        "decide",
        concurrency_id="store",
        concurrency_limit=4,
        **RAW,
    )
