"""The studio page: components and the events that connect them to the handlers.

The five steps of the loop are API endpoints (`think`, `draw`, `prefer`, `reflect`, `redraw`);
everything else (live plan checks, history, opening a PNG) is private to the page. The steps that
run the model share one concurrency slot, so one model task runs at a time; on Hugging Face
Spaces with ZeroGPU they run under `spaces.GPU`.
"""

from __future__ import annotations

import functools

import gradio as gr

from reasoner.engine import BUILT_ENGINES, ENGINES
from reasoner.records import MAX_CANDIDATES, MAX_PLAN_CHARS, MAX_REFLECTION_CHARS, DrawSettings

from .forms import VERDICTS
from .handlers import Studio
from .page_errors import on_page

EXAMPLES = [
    "a red circle left of a blue square",
    "a blue circle in the top-left corner",
    "two yellow triangles",
    "a green square and a yellow triangle",
    # reasoning: the plan must resolve a reference first (docs/shapes-world.md)
    "a circle the color of the sky",
    "as many squares as a triangle has corners",
    "a shape with no corners colored like a banana",
    "three circles in a row across the top",
]
# The handlers get the arguments as sent and check them themselves (ui/arguments.py): Gradio's
# preprocessing would coerce some (123 -> "123", 1.5 -> 2) and fail on others with a generic error.
# Only for events whose inputs are plain values: a file's preprocessing is what keeps its path safe.
RAW = {"preprocess": False}
LOADING_CFG_SCALE = 5.0  # the CFG slider's value until the model (and its own default) is loaded
MODEL = {"concurrency_id": "model", "concurrency_limit": 1, **RAW}  # one model task at a time
PAGE_ONLY = {"api_visibility": "private"}
CSS = (
    ".notice {border-left: 4px solid #e5a50a; padding-left: 12px; background: #fff8e1}"
    " #plan-status, #revised-status {min-height: 1.5em}"
    " #history {overflow-x: auto; max-width: 100%}"
    # four thumbnails a row whatever n is: one picture is not blown up past the gallery (and cropped),
    # and the gallery is as tall as its rows, with no empty area under them (issue 15.10)
    " #gallery .grid-wrap {height: auto !important; max-height: none !important; min-height: 0 !important}"
    " #gallery .grid-container {grid-template-columns: repeat(4, minmax(0, 1fr)) !important}"
    " #gallery .thumbnail-item img {object-fit: contain}"
    " #status {min-height: 1.5em} #status p:not(:empty) {border-left: 4px solid #c01c28; padding-left: 8px}"
)


def on_gpu(fn):
    """`spaces.GPU(fn)` on Hugging Face Spaces (the `spaces` package is there), `fn` elsewhere."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


def engine_choices() -> list[tuple[str, str]]:
    return [(name if name in BUILT_ENGINES else f"{name} (not built yet)", name) for name in ENGINES]


def pick_candidate(event: gr.SelectData):
    """Clicking a picture makes it the best candidate and the one to reflect on."""
    return event.index + 1, event.index + 1, "best"


def turn_of_row(event: gr.SelectData):
    return event.row_value[0]


def history_with_choices(history):
    """The History tab's table and the turns to reopen (newest first; the one chosen stays chosen,
    else the newest is): nothing to type, and never a turn 0 that does not exist (issue 15.11)."""

    def shown(chosen, request: gr.Request):
        rows = history(request)
        choices = [(f"#{row[0]} · {row[3][:60]}", row[0]) for row in rows]
        ids = [row[0] for row in rows]
        return rows, gr.Dropdown(choices=choices, value=chosen if chosen in ids else (ids[0] if ids else None))

    return shown


def reopening(reopen):
    """The page's reopen: the Studio tab is shown once the turn is back (an error keeps the History
    tab, where its line is)."""

    @functools.wraps(reopen)
    def reopen_on_page(*args, **kwargs):
        return (*reopen(*args, **kwargs), gr.Tabs(selected="studio"))

    return reopen_on_page


def build_page(studio: Studio, notice: str | None, model_info: str, learning=None) -> gr.Blocks:
    """The studio's page; with `learning` (ui/learn_handlers.Learning), its Learn tab too."""
    with gr.Blocks(title="Reasoner Studio", delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown(
            "# Reasoner Studio\nThe model **thinks** (a plan you can edit), **draws** candidates, "
            "you **pick** the best, "
            "it **reflects** on its picture and **redraws** from a revised plan. "
            "Every step and edit is kept as a preference."
        )
        if notice:
            gr.Markdown(notice, elem_id="model-notice", elem_classes="notice")
        with gr.Tabs(selected="studio") as tabs:
            with gr.Tab("Studio", id="studio"):
                ui = studio_tab(model_info, studio.models.default_engine, model_cfg_scale(studio.models))
            with gr.Tab("History", id="history") as history_tab:
                hist = history_tab_contents()
            if learning is not None:
                from .learn_layout import connect_learning, learn_tab

                with gr.Tab("Learn", id="learn"):
                    lui = learn_tab(learning)
        connect_loop(studio, ui)
        if learning is not None:
            connect_learning(learning, lui, ui)
        if not studio.models.ready:
            connect_loading(demo, studio, ui)
        connect_history(studio, ui, hist, tabs, history_tab)
    return demo


def model_cfg_scale(models) -> float:
    """The CFG slider's start: the model's own scale, or a stand-in until the model is loaded."""
    return models.current().info.default_cfg_scale if models.ready else LOADING_CFG_SCALE


def connect_loading(demo: gr.Blocks, studio: Studio, ui: dict) -> None:
    """While the model loads in the background, the page says so and looks again each second;
    once it is in, the model panel, the CFG slider and the status line are filled and the timer stops.
    The page also looks as it opens: a page opened after the load has the model's CFG scale at once,
    not the stand-in for a second (a Draw clicked in that second would draw at the stand-in)."""
    timer = gr.Timer(1.0)

    def when_loaded(status: str):
        models = studio.models
        if not models.loaded:
            return gr.skip(), gr.skip(), models.loading_line(), gr.skip()
        cfg = models.current().info.default_cfg_scale if models.ready else gr.skip()
        if not models.ready:
            status = "**Error:** the model failed to load; see the model panel."
        else:  # the loading line goes; a line a step wrote meanwhile (an engine starting) stays
            status = "" if status == models.loading_line() else gr.skip()
        return models.info_markdown(), cfg, status, gr.Timer(active=False)

    gr.on(
        [demo.load, timer.tick],
        when_loaded,
        ui["status"],
        [ui["model_info"], ui["cfg_scale"], ui["status"], timer],
        queue=False,
        show_progress="hidden",
        **PAGE_ONLY,
    )


def studio_tab(model_info: str, engine: str, cfg_scale: float) -> dict:
    ui = {}
    with gr.Row():
        with gr.Column(scale=3):
            ui["prompt"] = gr.Textbox(
                label="Prompt", lines=2, placeholder="a circle the color of the sky", elem_id="prompt"
            )
            gr.Examples(EXAMPLES, inputs=ui["prompt"], label="Examples (the last four need reasoning)")
            with gr.Row():
                ui["think"] = gr.Button("Think", variant="primary", elem_id="think")
                ui["draw"] = gr.Button("Draw", variant="primary", elem_id="draw")
            ui["vary_plans"] = gr.Checkbox(
                True,
                label="Each candidate thinks its own plan (turns off when you edit the plan; then the plan is drawn)",
                elem_id="vary-plans",
            )
            ui["status"] = gr.Markdown(elem_id="status")  # errors stay here until the next step
            ui["plan"] = gr.Textbox(
                label="Plan (the model's; edit it before drawing)", lines=3, max_length=MAX_PLAN_CHARS, elem_id="plan"
            )
            ui["plan_status"] = gr.Markdown(elem_id="plan-status")
            ui["gallery"] = gr.Gallery(
                label="Candidates (click one to pick it)",
                columns=4,
                height="auto",
                object_fit="contain",
                interactive=False,
                elem_id="gallery",
            )
            ui["draw_status"] = gr.Markdown(elem_id="draw-status")
            with gr.Group():
                with gr.Row():
                    ui["verdict"] = gr.Radio(list(VERDICTS), value="best", label="Your verdict", elem_id="verdict")
                    ui["best"] = gr.Number(1, label="Best candidate", precision=0, minimum=1, elem_id="best")
                    ui["ranking"] = gr.Textbox(label="Ranking, best first", placeholder="2, 1, 3", elem_id="ranking")
                ui["prefer"] = gr.Button("Save preference", elem_id="prefer")
            ui["prefer_status"] = gr.Markdown(elem_id="prefer-status")
            with gr.Accordion("Reflect and redraw", open=True):
                with gr.Row():
                    ui["candidate"] = gr.Number(
                        1, label="Candidate to reflect on", precision=0, minimum=1, elem_id="candidate"
                    )
                    ui["reflect"] = gr.Button("Reflect", elem_id="reflect")
                ui["reflection"] = gr.Textbox(
                    label="The model's reflection (editable)",
                    lines=2,
                    max_length=MAX_REFLECTION_CHARS,
                    elem_id="reflection",
                )
                ui["revised"] = gr.Textbox(
                    label="Revised plan (editable)", lines=2, max_length=MAX_PLAN_CHARS, elem_id="revised"
                )
                ui["revised_status"] = gr.Markdown(elem_id="revised-status")
                ui["redraw"] = gr.Button("Redraw from the revised plan", variant="primary", elem_id="redraw")
        with gr.Column(scale=1):
            settings_column(ui, model_info, engine, cfg_scale)
    return ui


def settings_column(ui: dict, model_info: str, engine: str, cfg_scale: float) -> None:
    """Seed, candidates, guidance (starting at the model's own default scale), temperatures, engine."""
    with gr.Accordion("Settings", open=True):
        with gr.Row():
            ui["seed"] = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id="seed")
            ui["random_seed"] = gr.Checkbox(False, label="random", elem_id="random-seed")
        # a number box, not a slider: a slider's box silently clamps 0 to 1; the handler refuses it by name
        ui["n"] = gr.Number(
            4, label=f"Candidates (1 to {MAX_CANDIDATES})", precision=0, minimum=1, maximum=MAX_CANDIDATES, elem_id="n"
        )
        ui["cfg_scale"] = gr.Slider(1, 20, value=cfg_scale, step=0.5, label="CFG scale")
        ui["temperature"] = gr.Slider(0, 5, value=DrawSettings.temperature, step=0.05, label="Image temperature")
        ui["plan_temperature"] = gr.Slider(
            0, 5, value=DrawSettings.plan_temperature, step=0.05, label="Plan temperature"
        )
        ui["engine"] = gr.Dropdown(engine_choices(), value=engine, label="Engine", elem_id="engine")
    with gr.Accordion("Model", open=True):
        ui["model_info"] = gr.Markdown(model_info, elem_id="model-info")
    with gr.Accordion("This turn", open=False):
        ui["turn_id"] = gr.Number(None, label="Turn", precision=0, interactive=False)
        ui["draw_id"] = gr.Number(None, label="Draw", precision=0, interactive=False)
        ui["reflection_id"] = gr.Number(None, label="Reflection", precision=0, interactive=False)
    ui["recipe_file"] = gr.File(label="Open a studio PNG (its recipe)", file_types=[".png"], type="filepath")


def history_tab_contents() -> dict:
    hist = {}
    hist["refresh"] = gr.Button("Refresh")
    hist["table"] = gr.Dataframe(
        headers=["turn", "when (UTC)", "who", "prompt", "plan", "draws", "verdicts"],
        interactive=False,
        wrap=True,
        elem_id="history",
        # the whole table fits the page, each header on one line (checked at 1280x800 by the browser test)
        column_widths=["5%", "13%", "11%", "24%", "30%", "7%", "10%"],
    )
    with gr.Row():
        # a list, not a number box: a number box shows an empty value as 0, a turn that does not exist
        hist["turn"] = gr.Dropdown([], label="Turn to reopen (or click its row)", elem_id="reopen-turn")
        hist["reopen"] = gr.Button("Reopen and continue", elem_id="reopen")
    hist["status"] = gr.Markdown(elem_id="history-status")
    return hist


def connect_step(
    fn,
    button: gr.Button,
    inputs: list,
    outputs: list,
    status,
    api_name: str,
    page=None,
    page_outputs=(),
    api_inputs=None,
    **options,
) -> None:
    """The button runs `fn` for the page (an error goes to the status line, outputs stay usable),
    or `page`, fn with `page_outputs` more; a hidden twin serves the API endpoint `api_name`,
    where an error is raised for the client."""
    page_outputs = [*outputs, *page_outputs]
    # the page's event is named apart, or it would take `api_name` (its function keeps fn's name)
    button.click(
        on_gpu(on_page(page or fn, len(page_outputs))),
        inputs,
        [*page_outputs, status],
        api_name=f"page_{api_name}",
        **options,
        **PAGE_ONLY,
    )
    api_twin = gr.Button(visible=False, elem_classes="api-only")
    api_twin.click(on_gpu(fn), api_inputs or inputs, outputs, api_name=api_name, **options)


def keeping_a_pick(draw):
    """The page's draw (or redraw): best is set to 1 with the first pictures only, so a pick made
    while the rest are drawing is not overwritten when the draw finishes (issue 15.9)."""

    @functools.wraps(draw)
    def draw_on_page(*args, **kwargs):
        for step, values in enumerate(draw(*args, **kwargs)):
            yield values if step == 0 else (*values[:5], gr.skip(), *values[6:])

    return draw_on_page


def showing_redrawn_plan(redraw):
    """The page's redraw: with its first pictures the plan box shows the plan being drawn and the
    last draw's saved preference is cleared (both are about the draw before)."""

    @functools.wraps(redraw)
    def redraw_on_page(reflection_id, reflection, revised, *args, **kwargs):
        for step, values in enumerate(redraw(reflection_id, reflection, revised, *args, **kwargs)):
            first = step == 0
            yield (*values, revised if first and (revised or "").strip() else gr.skip(), "" if first else gr.skip())

    return redraw_on_page


def connect_loop(studio: Studio, ui: dict) -> None:
    settings = [ui[k] for k in ("n", "seed", "random_seed", "cfg_scale", "temperature", "plan_temperature", "engine")]
    drawn = [ui[k] for k in ("gallery", "draw_id", "turn_id", "seed", "draw_status", "best")]
    status = ui["status"]
    connect_step(
        studio.think,
        ui["think"],
        [ui["prompt"], ui["seed"], ui["random_seed"], ui["plan_temperature"], ui["engine"]],
        [ui["plan"], ui["plan_status"], ui["turn_id"], ui["seed"]],
        status,
        "think",
        **MODEL,
    )
    draw_inputs = [ui["prompt"], ui["plan"], ui["turn_id"], *settings]
    connect_step(
        studio.draw,
        ui["draw"],
        [*draw_inputs, ui["vary_plans"]],
        drawn,
        status,
        "draw",
        page=keeping_a_pick(studio.draw),
        # the API draws the plan it is sent unless asked to vary (`vary_plans=True`)
        api_inputs=[*draw_inputs, gr.Checkbox(False, visible=False, label="vary_plans")],
        **MODEL,
    )
    # varying is on while the plan is the model's: a person's edit is drawn as written
    ui["plan"].input(lambda: False, None, ui["vary_plans"], queue=False, show_progress="hidden", **PAGE_ONLY)
    ui["think"].click(lambda: True, None, ui["vary_plans"], queue=False, show_progress="hidden", **PAGE_ONLY)
    connect_step(
        studio.prefer,
        ui["prefer"],
        [ui["draw_id"], ui["verdict"], ui["best"], ui["ranking"]],
        [ui["prefer_status"]],
        status,
        "prefer",
        concurrency_id="store",
        concurrency_limit=4,
        **RAW,
    )
    connect_step(
        studio.reflect,
        ui["reflect"],
        [ui["draw_id"], ui["candidate"], ui["plan_temperature"], ui["engine"]],
        [ui["reflection"], ui["revised"], ui["reflection_id"], ui["revised_status"]],
        status,
        "reflect",
        **MODEL,
    )
    connect_step(
        studio.redraw,
        ui["redraw"],
        [ui["reflection_id"], ui["reflection"], ui["revised"], *settings],
        drawn,
        status,
        "redraw",
        page=showing_redrawn_plan(keeping_a_pick(studio.redraw)),
        page_outputs=[ui["plan"], ui["prefer_status"]],
        **MODEL,
    )
    # a new draw starts clean: the last draw's saved preference is no longer about these pictures
    ui["draw"].click(lambda: "", None, ui["prefer_status"], queue=False, **PAGE_ONLY)
    # the engine chosen starts at once, in the model's slot, saying what it does meanwhile (the onnx export)
    ui["engine"].change(studio.start_engine, ui["engine"], status, show_progress="hidden", **MODEL, **PAGE_ONLY)
    for plan_box in ("plan", "revised"):  # each plan box is checked as it is typed into
        ui[plan_box].input(
            studio.check_plan,
            [ui[plan_box], ui["prompt"]],
            ui[f"{plan_box}_status"],
            queue=False,
            show_progress="hidden",
            trigger_mode="always_last",
            **PAGE_ONLY,
        )
    ui["gallery"].select(pick_candidate, None, [ui["best"], ui["candidate"], ui["verdict"]], queue=False, **PAGE_ONLY)
    ui["recipe_file"].upload(
        studio.open_recipe,
        ui["recipe_file"],
        [
            ui["prompt"],
            ui["plan"],
            ui["seed"],
            ui["cfg_scale"],
            ui["temperature"],
            ui["plan_temperature"],
            ui["draw_status"],
        ],
        **PAGE_ONLY,
    )


def connect_history(studio: Studio, ui: dict, hist: dict, tabs: gr.Tabs, history_tab: gr.Tab) -> None:
    shown = history_with_choices(studio.history)
    for event in (hist["refresh"].click, history_tab.select):
        event(shown, hist["turn"], [hist["table"], hist["turn"]], concurrency_id="store", **PAGE_ONLY)
    hist["table"].select(turn_of_row, None, hist["turn"], queue=False, **PAGE_ONLY)
    reopened = [
        ui[k]
        for k in (
            "prompt",
            "plan",
            "turn_id",
            "gallery",
            "draw_id",
            "reflection",
            "revised",
            "reflection_id",
            "draw_status",
        )
    ]
    hist["reopen"].click(
        on_page(reopening(studio.reopen), len(reopened) + 1),
        hist["turn"],
        [*reopened, tabs, hist["status"]],
        concurrency_id="store",
        **RAW,
        **PAGE_ONLY,
    )
