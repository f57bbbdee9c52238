"""A person in a browser (headless Debian chromium driven by Playwright): types a prompt, clicks
Think, edits the plan, draws, picks a candidate, saves the preference; a screenshot is taken.
It runs on the bundled `shapes` model when weights/shapes/ is there, else on the taught tiny model.

Set STUDIO_SCREENSHOT=PATH to keep the screenshot there as well (README's docs/studio.png is made so).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from reasoner.store import DB_NAME
from tests.e2e.server import start
from tests.teach import PROMPT
from ui.models import bundled_model_present

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
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -r requirements.txt)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser_studio(taught_model_dir, tmp_path_factory):
    model = "shapes" if bundled_model_present() else taught_model_dir
    server = start(model, tmp_path_factory.mktemp("browser") / "data")
    yield server
    server.stop()


def type_into(box, text: str) -> None:
    """Type as a person does (Gradio's `input` event follows keystrokes, not a programmatic fill)."""
    box.click()
    box.press("Control+A")
    box.press("Backspace")
    box.press_sequentially(text)


def test_a_person_thinks_edits_draws_and_picks(browser, browser_studio, tmp_path):
    live_studio = browser_studio
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(live_studio.url)

    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#think").click()
    plan_box = page.locator("#plan textarea")
    page.wait_for_function("() => document.querySelector('#plan textarea').value.length > 0")  # the model's plan
    page.wait_for_function("() => document.querySelector('#plan-status').innerText.trim().length > 0")  # its check

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

    shot = tmp_path / "studio.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("STUDIO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["STUDIO_SCREENSHOT"])

    conn = sqlite3.connect(live_studio.data_dir / DB_NAME)
    try:
        plan_row = conn.execute("SELECT id, source, edited_from FROM plans WHERE text = ? ORDER BY id DESC", (EDITED,)).fetchone()
        assert plan_row[1:] == ("person", plan_row[2]) and plan_row[2] is not None
        draw_id = conn.execute("SELECT id FROM draws WHERE plan_id = ? ORDER BY id DESC", (plan_row[0],)).fetchone()[0]
        assert conn.execute("SELECT kind, ranking FROM preferences WHERE draw_id = ?", (draw_id,)).fetchall() == [("pick", "[1]")]
    finally:
        conn.close()
    page.close()
