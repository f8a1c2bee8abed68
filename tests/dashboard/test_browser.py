"""End to end in a real Chromium over the whole local stack, started as `make up` starts it.

honcho runs the Procfile (redis-server, worker, API, dashboard) on free ports. The test starts a
`quick` run from the form, watches the live curves grow without a page reload, draws a digit on the
canvas with mouse moves once the run has finished, and reads the predicted label. Screenshots of
every page go to artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from PIL import Image

from tests.support.browser import launch_chromium
from tests.support.paths import REPO, load_script
from tests.support.stack import start_stack
from tests.support.waiting import wait_for

SCREENSHOTS = REPO / "artifacts" / "screenshots"
VIEWPORT = {"width": 1400, "height": 1000}
UI_TIMEOUT_MS = 60_000
TRAIN_TIMEOUT_S = 900
RECORDS_LOADED = re.compile(r"([\d,]+) metric records loaded")
# The metric tiles' values whose text does not fit their box (Streamlit ends them with an ellipsis).
CUT_TILES = """() => [...document.querySelectorAll('[data-testid="stMetricValue"]')]
    .filter(tile => [tile, ...tile.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
    .map(tile => tile.innerText)"""


def screenshot(page, name: str, height: int = 1000) -> None:
    """The whole page: Streamlit scrolls inside its own container, so grow the viewport instead."""
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    time.sleep(1.0)  # let charts re-lay out at the new size
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(VIEWPORT)


def records_loaded(page) -> int:
    text = page.get_by_text(RECORDS_LOADED).first.inner_text()
    return int(RECORDS_LOADED.search(text).group(1).replace(",", ""))


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(1500)
def test_train_watch_and_draw_in_a_browser(tmp_path, mnist_dir):
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with (
        start_stack(tmp_path, data_dir=mnist_dir, env={"FF_METRICS_EVERY_STEPS": "5"}) as stack,
        sync_playwright() as playwright,
    ):
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            api = httpx.Client(base_url=stack.api_url, timeout=30)

            # Runs: start a `quick` run from the form, made cheaper (2x200 units, batches of 500: 100
            # steps per epoch) so that it trains in seconds on a quiet CPU and in minutes on a busy one.
            # Six epochs, not two: on a quiet CPU two ended before the page, polling every second, had
            # seen the curves grow three times.
            page.goto(stack.dashboard_url, wait_until="domcontentloaded")
            expect(page.get_by_role("heading", name="Start a run")).to_be_visible()
            for label, value in (("Epochs", "6"), ("Batch size", "500")):
                field = page.get_by_role("spinbutton", name=label, exact=True)
                field.fill(value)
                field.press("Tab")
            page.get_by_role("textbox", name="Hidden layers").fill("200, 200")
            page.get_by_role("button", name="Start run").click()
            expect(page.get_by_text(re.compile(r"Run \w+ is queued"))).to_be_visible()
            run = api.get("/runs").json()["runs"][0]
            assert run["preset"] == "quick"
            config = run["config"]
            assert (config["epochs"], config["batch_size"], config["hidden"]) == (6, 500, [200, 200])

            # Live: the curves grow by themselves, through the cursor, without reloading the page.
            page.get_by_role("button", name="Watch it live").click()
            expect(
                page.get_by_role("heading", name="Goodness of positive vs negative data, per layer")
            ).to_be_visible(timeout=TRAIN_TIMEOUT_S * 1000)
            page.evaluate("window.__same_page = true")
            counts = [records_loaded(page)]

            def grew() -> bool:
                counts.append(records_loaded(page))
                return len(set(counts)) >= 4

            wait_for(grew, 120, lambda: f"the live page to grow: {counts}", interval_s=1.0)
            assert len(set(counts)) >= 4, f"the live page did not grow: {counts}"
            assert counts == sorted(counts)
            assert page.evaluate("window.__same_page === true"), "the page was reloaded"
            assert page.locator(".vega-embed").count() >= 4  # goodness per layer (2), FF loss, FF accuracy
            screenshot(page, "live-running", height=1700)

            wait_for(
                lambda: api.get(f"/runs/{run['id']}").json()["status"] in {"succeeded", "failed"},
                TRAIN_TIMEOUT_S,
                "the run to finish",
                interval_s=1.0,
            )
            # No summary tile cuts its value short (as "12.9k im..." once did at this width).
            expect(page.get_by_test_id("stMetricValue").first).to_be_visible()
            cut = page.evaluate(CUT_TILES)
            assert cut == [], f"summary tiles cut short: {cut}"
            assert api.get(f"/runs/{run['id']}").json()["status"] == "succeeded"
            expect(page.get_by_text("Final test error")).to_be_visible()
            assert page.evaluate("window.__same_page === true")
            screenshot(page, "live-finished", height=1700)
            # scripts/live_screenshot.py, which takes the README's first picture, pictures the same page.
            picture = SCREENSHOTS / "live-finished-script.png"
            picture.unlink(missing_ok=True)
            take_picture = load_script("live_screenshot").take
            take_picture(browser, stack.dashboard_url, run["id"], picture, timeout_s=60)
            with Image.open(picture) as taken:
                assert taken.size == (1400, 1700)

            # Draw: a "1" with the mouse, then the label the page shows.
            page.get_by_role("link", name="Draw").click()
            expect(page.get_by_text("Draw a digit on the black canvas")).to_be_visible()
            canvas = page.locator("canvas").last
            box = canvas.bounding_box()
            x, top = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.15
            page.mouse.move(x, top)
            page.mouse.down()
            for step in range(1, 31):
                page.mouse.move(x + step * 0.3, top + step * box["height"] * 0.7 / 30)
            page.mouse.up()
            expect(page.get_by_text("Predicted digit")).to_be_visible()
            shown_label = int(page.get_by_test_id("stMetricValue").first.inner_text())
            # The same drawing, sent straight to the API, gets the same answer.
            drawing = page.locator("canvas").first.screenshot()
            answer = api.post(f"/runs/{run['id']}/predict", files={"image": ("d.png", drawing, "image/png")})
            assert answer.status_code == 200, answer.text
            assert shown_label == answer.json()["scan_label"]
            expect(page.get_by_text("What the model sees (28x28)")).to_be_visible()
            screenshot(page, "draw", height=1150)

            # Clear gives an empty canvas and the hint again.
            page.get_by_role("button", name="Clear").click()
            expect(page.get_by_text("Draw a digit on the black canvas")).to_be_visible()

            # Runs again: the finished run in the table, its curve in the comparison.
            page.get_by_role("link", name="Runs").click()
            expect(page.get_by_text("succeeded").first).to_be_visible()
            # The picker's placeholder is an input attribute, not text: open it through its input.
            picker = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Select runs to act on")
            picker.locator("input").click()
            page.get_by_role("option").first.click()
            page.keyboard.press("Escape")
            expect(page.get_by_text("solid: label scan")).to_be_visible()
            screenshot(page, "runs", height=1300)

            # A shared link opens the run's Live page, inside the app's navigation.
            linked = browser.new_page(viewport=VIEWPORT)
            linked.goto(f"{stack.dashboard_url}/live?run={run['id']}", wait_until="domcontentloaded")
            # The run's summary line starts with its id, in bold (the picker's value is no text node).
            expect(linked.get_by_text(run["id"], exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
            expect(linked.get_by_role("link", name="Draw")).to_be_visible()
        finally:
            browser.close()
