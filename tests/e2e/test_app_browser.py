"""A person in a browser (headless Debian chromium driven by Playwright): types a prompt, clicks
Think, edits the plan, draws, picks a candidate, saves the preference; on the first example with
the default settings a screenshot is taken. It runs on the bundled `shapes` model when
weights/shapes/ is there, else on the taught tiny model.

Set STUDIO_SCREENSHOT=PATH to keep the screenshot there as well (README's docs/studio.png is made so).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from reasoner.store import DB_NAME
from tests.e2e.server import start
from tests.teach import PROMPT
from ui.models import STUDIO_MODEL, bundled_model_present, default_studio_model

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu"]
EDITED = "the sky is blue. Plan: blue circle @ middle-center"
TIMEOUT_MS = 240_000  # a busy 2-core machine


def chromium_path() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does this)")


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -r requirements.txt)"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser_studio(taught_model_dir, tmp_path_factory):
    model = default_studio_model() if bundled_model_present() else taught_model_dir  # what `python app.py` opens
    server = start(model, tmp_path_factory.mktemp("browser") / "data")
    yield server
    server.stop()


def type_into(box, text: str) -> None:
    """Type as a person does (Gradio's `input` event follows keystrokes, not a programmatic fill)."""
    box.click()
    box.press("Control+A")
    box.press("Backspace")
    box.press_sequentially(text)


def test_a_person_thinks_edits_draws_and_picks(browser, browser_studio):
    live_studio = browser_studio
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(live_studio.url)

    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#think").click()
    plan_box = page.locator("#plan textarea")
    page.wait_for_function("() => document.querySelector('#plan textarea').value.length > 0")  # the model's plan
    page.wait_for_function("() => document.querySelector('#plan-status').innerText.trim().length > 0")  # its check
    model_plan = plan_box.input_value()

    type_into(plan_box, "blue circle @ nowhere")  # a bad edit: shown next to the box, nothing breaks
    page.locator("#plan-status").get_by_text("unknown cell").wait_for()
    type_into(plan_box, EDITED)
    page.locator("#plan-status").get_by_text("Valid plan").wait_for()

    page.locator("#draw").click()
    page.locator("#draw-status").get_by_text("Drew 4 candidates").wait_for()
    thumbnails = page.locator("#gallery img")
    assert thumbnails.count() >= 4
    thumbnails.nth(1).click()  # the person picks the second picture
    page.wait_for_function("() => document.querySelector('#best input').value === '2'")
    page.keyboard.press("Escape")  # close the preview the click opened
    page.locator("#prefer").click()
    page.locator("#prefer-status").get_by_text("best is #2").wait_for()

    conn = sqlite3.connect(live_studio.data_dir / DB_NAME)
    try:
        plan_row = conn.execute(
            "SELECT id, source, edited_from FROM plans WHERE text = ? ORDER BY id DESC", (EDITED,)
        ).fetchone()
        assert plan_row[1] == "person"
        # the edit is stored as made from the plan the model wrote, the one the page showed
        assert conn.execute("SELECT text, source FROM plans WHERE id = ?", (plan_row[2],)).fetchone() == (
            model_plan,
            "model",
        )
        draw_id = conn.execute("SELECT id FROM draws WHERE plan_id = ? ORDER BY id DESC", (plan_row[0],)).fetchone()[0]
        assert conn.execute("SELECT kind, ranking FROM preferences WHERE draw_id = ?", (draw_id,)).fetchall() == [
            ("pick", "[1]")
        ]
    finally:
        conn.close()
    page.close()


@pytest.mark.skipif(not bundled_model_present(), reason="needs the bundled shapes model (weights/shapes/)")
def test_the_first_example_with_the_default_settings_draws_its_plans(browser, browser_studio, tmp_path):
    """The studio's first example, settings untouched: Think, then Draw. The plan box says whether
    the model's plan meets the prompt (the bundled model alone puts the square on the left: issue
    15.7; the studio's default, shapes-grpo, plans it right, and must); the draw, with varied
    candidates on by default, gives each candidate its own plan,
    and every picture shows its plan (the detector reads back its scene); the draw used the defaults
    (the model's own CFG scale, not the stand-in shown while it loaded). With one plan for all, the
    first example drew 0 of 4 right; with varied plans 3 of 4 meet the prompt (issue 18.1).
    The README's screenshot."""
    from PIL import Image

    from reasoner.records import VARIED_PLAN_TEMPERATURE, DrawSettings
    from reasoner.shapes.detect import detect_scene
    from reasoner.shapes.plan import parse_plan
    from reasoner.shapes.studio_checks import plan_misses_prompt
    from reasoner.store import Store
    from reasoner.worlds import plan_body
    from ui.layout import EXAMPLES

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(browser_studio.url)
    page.get_by_text(EXAMPLES[0], exact=True).click()
    page.wait_for_function("(p) => document.querySelector('#prompt textarea').value === p", arg=EXAMPLES[0])
    page.locator("#think").click()
    # the plan first: while Think runs, the progress overlay's text is inside #plan-status already
    page.wait_for_function("() => document.querySelector('#plan textarea').value.length > 0")
    page.locator("#plan-status").get_by_text("Valid plan").wait_for()
    plan = page.locator("#plan textarea").input_value()
    missed = plan_misses_prompt(EXAMPLES[0], plan)
    assert ("does not meet the prompt" in page.locator("#plan-status").inner_text()) == (missed is not None)
    if default_studio_model() == STUDIO_MODEL:  # the studio runs it (browser_studio)
        assert missed is None, plan  # what a new user sees first: a plan that meets the prompt
    page.locator("#draw").click()
    page.locator("#draw-status").get_by_text("Drew 4 candidates").wait_for()

    draw_id = int(draw_number(page))
    store = Store.open(browser_studio.data_dir)
    draw = store.draw_info(draw_id, None)
    defaults = DrawSettings()
    assert draw.settings["cfg_scale"] == 1.0  # the bundled model's default_cfg_scale
    assert (draw.settings["seed"], draw.settings["n"]) == (0, 4)
    assert (draw.settings["temperature"], draw.settings["plan_temperature"]) == (
        defaults.temperature,
        VARIED_PLAN_TEMPERATURE,
    )
    assert draw.settings["vary_plans"] and draw.plan is None
    right = 0
    for candidate in draw.candidates:
        with Image.open(store.image_file(candidate.path)) as picture:
            scene = detect_scene(picture.convert("RGB"))
        assert scene == parse_plan(plan_body(candidate.plan)), (candidate.index, candidate.plan)
        right += plan_misses_prompt(EXAMPLES[0], candidate.plan) is None
    assert right >= 3 and len({c.plan for c in draw.candidates}) >= 2
    captions = page.locator("#gallery").inner_text()
    assert plan_body(draw.candidates[0].plan) in captions

    shot = tmp_path / "studio.png"
    page.mouse.move(0, 0)  # no hover colour on the Draw button
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("STUDIO_SCREENSHOT"):  # 256 colours: a third of the size, the same to the eye
        with Image.open(shot) as image:
            image.convert("RGB").quantize(256).save(os.environ["STUDIO_SCREENSHOT"], optimize=True)
    page.close()


def new_page(browser, studio):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(studio.url)
    return page


def test_an_error_is_a_lasting_status_line_and_the_page_stays_usable(browser, browser_studio):
    """Issue 15.8: an empty prompt does not put "Error" badges over the outputs, and the line stays."""
    started = browser_studio.log.read_text(errors="replace")  # issue 15.12: start-up says what it loads
    assert started.index("Loading the model in the background") < started.index("the studio is ready")
    page = new_page(browser, browser_studio)
    page.locator("#think").click()
    page.locator("#status").get_by_text("prompt").wait_for()
    assert page.locator(".error, .toast-body.error").count() == 0  # no red badges, no toast
    page.locator("#n input").fill("17")
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#draw").click()
    page.locator("#status").get_by_text("n=17 is out of range").wait_for()
    type_into(page.locator("#plan textarea"), EDITED)  # the plan box still takes typing
    page.locator("#plan-status").get_by_text("Valid plan").wait_for()
    page.close()


@pytest.mark.skipif(not bundled_model_present(), reason="needs the bundled shapes model (weights/shapes/)")
def test_a_valid_plan_that_misses_the_prompt_is_named(browser, browser_studio):
    """Issue 15.7: the plan box says when a grammatical plan is not what the prompt asks."""
    page = new_page(browser, browser_studio)
    page.locator("#prompt textarea").fill("two red squares above a blue triangle")
    type_into(page.locator("#plan textarea"), "red square @ top-left; blue triangle @ bottom-left")
    page.locator("#plan-status").get_by_text("does not meet the prompt").wait_for()
    meets = "red square @ top-left; red square @ top-right; blue triangle @ bottom-center"
    type_into(page.locator("#plan textarea"), meets)
    page.locator("#plan-status").get_by_text("Valid plan.").wait_for()
    page.close()


def draw_one_candidate(browser, browser_studio):
    page = new_page(browser, browser_studio)
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#n input").fill("1")
    type_into(page.locator("#plan textarea"), EDITED)
    page.locator("#draw").click()
    page.locator("#draw-status").get_by_text("Drew 1 candidate").wait_for()
    return page


def test_one_candidate_fits_its_gallery(browser, browser_studio):
    """Issue 15.10: n = 1 is shown whole, with no large empty area under it."""
    page = draw_one_candidate(browser, browser_studio)
    gallery, picture = page.locator("#gallery").bounding_box(), page.locator("#gallery img").first.bounding_box()
    assert picture["height"] <= gallery["height"] and picture["width"] <= gallery["width"]
    assert gallery["height"] < 700  # no large empty area under a single thumbnail
    page.close()


REVISED = "Plan: blue circle @ top-right"  # a person's revision, unlike any plan drawn before it
NEW_DRAW = """(old) => [...document.querySelector('#draw-status').innerText.matchAll(/[(]draw #(\\d+)/g)]
    .some(m => m[1] !== old)"""  # the old line stays under the progress overlay until the new one comes


def draw_number(page) -> str:
    return re.search(r"\(draw #(\d+)", page.locator("#draw-status").inner_text())[1]


def test_redraw_shows_the_plan_it_draws(browser, browser_studio):
    """Issue 15.11: after a redraw the plan box holds the plan drawn, and the last draw's saved
    preference is gone. (This was an xfail that waited for any change of #draw-status holding
    "Drew 1 candidate": the progress overlay's text, added over the old line, met it at once, so the
    plan box was read before the redraw had yielded anything. The page was right all along.)"""
    expect = pytest.importorskip("playwright.sync_api").expect
    page = draw_one_candidate(browser, browser_studio)
    page.locator("#prefer").click()
    page.locator("#prefer-status").get_by_text("best is #1").wait_for()
    page.locator("#reflect").click()
    page.wait_for_function("() => document.querySelector('#revised textarea').value.length > 0")
    type_into(page.locator("#revised textarea"), REVISED)
    first = draw_number(page)
    page.locator("#redraw").click()
    page.wait_for_function(NEW_DRAW, arg=first)
    assert page.locator("#plan textarea").input_value() == REVISED
    expect(page.locator("#prefer-status")).to_have_text("", timeout=10_000)  # once the overlay is gone
    page.close()


def test_reopen_numbers_picks_from_1_and_the_history_fits_the_page(browser, browser_studio):
    """Issue 15.11: Reopen says a pick as the studio numbers it (from 1); the turn to reopen is
    offered (the newest), never an erroring 0, and a row's click chooses its turn; at 1280x800 the
    History table is inside the page, each header on one line."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(browser_studio.url)
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#n input").fill("2")
    type_into(page.locator("#plan textarea"), EDITED)
    page.locator("#draw").click()
    page.locator("#draw-status").get_by_text("Drew 2 candidates").wait_for()
    turn = re.search(r"turn #(\d+)", page.locator("#draw-status").inner_text())[1]
    page.locator("#gallery img").nth(1).click()
    page.wait_for_function("() => document.querySelector('#best input').value === '2'")
    page.keyboard.press("Escape")
    page.locator("#prefer").click()
    page.locator("#prefer-status").get_by_text("best is #2").wait_for()

    page.get_by_role("tab", name="History").click()
    newest = page.locator('#history [data-testid="cell-0-0"]')
    newest.get_by_text(turn, exact=True).wait_for()
    chosen = page.locator("#reopen-turn input")
    assert chosen.input_value().startswith(f"#{turn} · ")  # offered at once: the newest turn

    table = page.locator("#history").bounding_box()
    assert table["x"] >= 0 and table["x"] + table["width"] <= 1280
    headers = page.locator("#history th")
    assert headers.count() == 7
    for k in range(7):
        header = headers.nth(k).bounding_box()
        assert header["x"] + header["width"] <= table["x"] + table["width"] + 1, headers.nth(k).inner_text()
    # one line each: every header's text is as tall as the first one's
    assert len(set(page.evaluate("[...document.querySelectorAll('#history th span')].map(s => s.offsetHeight)"))) == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # nothing sticks out on the right

    if page.locator('#history [data-testid="cell-1-0"]').count():  # an earlier test's turn: choose it first
        older = page.locator('#history [data-testid="cell-1-0"]').inner_text().strip()
        page.locator('#history [data-testid="cell-1-3"]').click()  # a row's click chooses its turn
        page.wait_for_function(
            "(t) => document.querySelector('#reopen-turn input').value.startsWith(t)", arg=f"#{older} · "
        )
    page.locator('#history [data-testid="cell-0-3"]').click()
    page.wait_for_function("(t) => document.querySelector('#reopen-turn input').value.startsWith(t)", arg=f"#{turn} · ")
    page.locator("#reopen").click()
    page.locator("#draw-status").get_by_text(f"Reopened turn #{turn}").wait_for()
    assert ": best is #2" in page.locator("#draw-status").inner_text()
    assert page.locator("#gallery img").count() >= 2
    page.close()


@pytest.fixture(scope="module")
def taught_studio(taught_model_dir, tmp_path_factory):
    """A studio on the taught tiny model, whose ONNX export takes seconds (the bundled model's, minutes)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("REASONER_ONNX_CACHE", raising=False)  # the studio's own default is what is checked
        server = start(taught_model_dir, tmp_path_factory.mktemp("onnx-browser") / "data")
    yield server
    server.stop()


def test_choosing_onnx_says_it_exports_and_keeps_the_export_in_the_data_dir(browser, taught_studio):
    """Issue 15.13: the onnx engine starts when chosen, the status line saying it exports meanwhile;
    its cache is the data directory's cache/onnx (no REASONER_ONNX_CACHE set), and a draw then runs on it."""
    page = new_page(browser, taught_studio)
    page.locator("#engine input").click()
    page.get_by_role("option", name="onnx").click()
    page.locator("#status").get_by_text("exporting the model to ONNX (first use").wait_for()
    page.locator("#status").get_by_text("The onnx engine is ready.").wait_for()
    assert list((taught_studio.data_dir / "cache" / "onnx").glob("*/decoder_step.onnx"))
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#n input").fill("1")
    page.locator("#draw").click()
    page.locator("#draw-status").get_by_text("Drew 1 candidate").wait_for()
    page.close()
