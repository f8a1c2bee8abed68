"""Probes and Fashion-MNIST end to end in a real Chromium over the whole local stack, started as `make up`
starts it.

honcho runs the Procfile (redis-server, a Celery worker, the uvicorn API, Streamlit) on free ports, with a
data directory holding MNIST and Fashion-MNIST. A tiny Fashion-MNIST run (32x32 units, two epochs of 50
steps) trains through the worker, so its eval records carry the probes ffcore really computed. The test
opens a link to its Live page's Probes view and waits for the probe charts and the receptive-field
picture (which must be the API's PNG, byte for byte), switches to the training curves, then uploads a
Fashion-MNIST test picture on the Draw page and reads the class name the page shows, which must be the
API's answer for the same picture. Screenshots go to artifacts/screenshots/live-probes.png and
draw-fashion.png.
"""

from __future__ import annotations

import time

import httpx
import pytest

from dashboard.probes_view import FIELD_COUNTS, FIELD_SCALE
from ffcore.config import CLASS_NAMES
from tests.dashboard.fashion import fashion_test_images
from tests.support.api import post_run, wait_for_run_status
from tests.support.browser import launch_chromium
from tests.support.mnist import png_bytes
from tests.support.paths import REPO
from tests.support.stack import start_stack
from tests.support.waiting import wait_for

SCREENSHOTS = REPO / "artifacts" / "screenshots"
VIEWPORT = {"width": 1400, "height": 1000}
UI_TIMEOUT_MS = 90_000
TRAIN_TIMEOUT_S = 900
TINY_FASHION_RUN = {
    "preset": "quick",
    "overrides": {"dataset": "fashion-mnist", "hidden": [32, 32], "batch_size": 1000, "epochs": 2},
    "tags": ["browser-probes"],
}
PROBE_CHARTS = 3  # the probes' errors, goodness bands per layer (2)
CURVE_CHARTS = 5  # goodness per layer (2), FF loss, FF accuracy, validation error
SHOWN_FIELDS = FIELD_COUNTS[1]  # the Live page's default number of units (at most: the layer has 32)


def screenshot(page, name: str, height: int) -> None:
    """The whole page: Streamlit scrolls inside its own container, so grow the viewport instead."""
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    time.sleep(1.0)  # let charts re-lay out at the new size
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(VIEWPORT)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(1500)
def test_a_fashion_runs_probes_and_a_garment_named_in_a_browser(tmp_path, fashion_dir):
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with start_stack(tmp_path, data_dir=fashion_dir) as stack, sync_playwright() as playwright:
        api = httpx.Client(base_url=stack.api_url, timeout=60)
        run_id = post_run(api, TINY_FASHION_RUN)
        run = wait_for_run_status(api, run_id, {"succeeded", "failed"}, TRAIN_TIMEOUT_S)
        assert run["status"] == "succeeded", run
        evals = api.get(f"/runs/{run_id}/metrics", params={"kind": "eval"}).json()["records"]
        assert len(evals) == 3 and all(record.get("layers") for record in evals)  # two epochs and the test
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)

            # A link to the Live page's Probes view: its charts, and the receptive fields the API drew.
            page.goto(f"{stack.dashboard_url}/live?run={run_id}&view=probes", wait_until="domcontentloaded")
            expect(page.get_by_role("heading", name="Probes: what each layer has learned")).to_be_visible()
            expect(page.get_by_text("Error of each layer on its own")).to_be_visible()
            expect(
                page.get_by_text("Goodness of positive vs negative data, as distributions")
            ).to_be_visible()
            expect(page.get_by_text("Final test evaluation, per layer")).to_be_visible()
            expect(page.locator(".vega-embed")).to_have_count(PROBE_CHARTS)
            picture = page.locator('[data-testid="stImage"] img').first
            expect(picture).to_be_visible()
            page.wait_for_function(
                "(img) => img.complete && img.naturalWidth > 0", arg=picture.element_handle()
            )
            shown = httpx.get(
                picture.evaluate("(img) => img.src"), timeout=30
            ).content  # as the browser got it
            drawn = api.get(
                f"/runs/{run_id}/receptive-fields.png", params={"count": SHOWN_FIELDS, "scale": FIELD_SCALE}
            )
            assert drawn.status_code == 200 and shown == drawn.content
            units = min(SHOWN_FIELDS, TINY_FASHION_RUN["overrides"]["hidden"][0])
            expect(page.get_by_text(f"The {units} units with the largest input weights")).to_be_visible()
            width = picture.evaluate("(img) => [img.naturalWidth, img.getBoundingClientRect().width]")
            assert width[0] == width[1], f"the picture is scaled: {width}"  # crisp tiles
            screenshot(page, "live-probes", height=2300)
            page.get_by_role("radio", name="Training", exact=True).click()
            expect(
                page.get_by_role("heading", name="Goodness of positive vs negative data, per layer")
            ).to_be_visible()
            expect(page.locator(".vega-embed")).to_have_count(CURVE_CHARTS)
            expect(page.get_by_role("heading", name="Probes: what each layer has learned")).to_have_count(0)

            # Draw: a Fashion-MNIST model takes a picture; the page names the class the API names.
            page.get_by_role("link", name="Draw").click()
            expect(page.get_by_text("Upload a picture of one Fashion-MNIST item")).to_be_visible()
            boot = png_bytes(fashion_test_images(fashion_dir, 1)[0], size=112)
            uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            uploader.set_input_files({"name": "boot.png", "mimeType": "image/png", "buffer": boot})
            expect(page.get_by_text("Predicted class")).to_be_visible()
            answer = api.post(f"/runs/{run_id}/predict", files={"image": ("boot.png", boot, "image/png")})
            assert answer.status_code == 200, answer.text
            expected = answer.json()["scan_class"]
            assert expected in CLASS_NAMES["fashion-mnist"]
            value = page.get_by_test_id("stMetricValue").first

            def shows_the_class() -> bool:
                return value.inner_text().strip() == expected

            wait_for(
                shows_the_class, 60, lambda: f"the page to show {expected!r}, not {value.inner_text()!r}"
            )
            expect(page.get_by_text("Softmax head probabilities")).to_be_visible()
            expect(page.locator(".vega-embed")).to_have_count(
                2
            )  # goodness per class and layer, probabilities
            screenshot(page, "draw-fashion", height=1300)
        finally:
            browser.close()
