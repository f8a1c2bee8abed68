"""The visitor's key in a real Chromium over the whole local stack, started as `make up` starts it.

honcho runs the Procfile (redis-server, a Celery worker, the uvicorn API, Streamlit) on free ports, with
FF_API_KEY in every process's environment, the dashboard's included: the dashboard must not lend it. A
visitor without a key can neither start a run nor delete one (the store says nothing changed); once the
visitor types the key into the sidebar, the same session can do both, and a second visitor still cannot.
A screenshot of the locked Runs page goes to artifacts/screenshots/access-locked.png.
"""

from __future__ import annotations

import re

import httpx
import pytest

from dashboard.client import WRITE_KEY_NEEDED
from ffcore.config import RunConfig
from tests.support.browser import launch_chromium
from tests.support.paths import REPO
from tests.support.stack import start_stack
from tests.support.store import TestStore

SCREENSHOTS = REPO / "artifacts" / "screenshots"
VIEWPORT = {"width": 1400, "height": 1000}
UI_TIMEOUT_MS = 60_000
KEY = "browser-test-key"
# quick, made tiny: a run the form starts trains in seconds (and is cancelled at the end anyway).
TINY = (("Epochs", "1"), ("Batch size", "1000"))


def select_first_run(page) -> None:
    """Pick the first run in "Select runs to act on" (its placeholder is an input attribute, not text)."""
    picker = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Select runs to act on")
    picker.locator("input").click()
    page.get_by_role("option").first.click()
    page.keyboard.press("Escape")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(900)
def test_a_visitor_changes_nothing_until_they_enter_the_key(tmp_path, mnist_dir):
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with (
        start_stack(tmp_path, data_dir=mnist_dir, env={"FF_API_KEY": KEY}) as stack,
        sync_playwright() as playwright,
    ):
        store = TestStore.from_url(stack.redis_url)
        existing = store.create_run(RunConfig.from_preset("quick"), preset="quick").id
        store.set_status(existing, "succeeded", step=10, epoch=1, progress=1.0)
        api = httpx.Client(base_url=stack.api_url, timeout=30)  # reads are open: no key
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)

            # Without a key: the page says why, and the controls that change something are disabled.
            page.goto(stack.dashboard_url, wait_until="domcontentloaded")
            expect(page.get_by_role("heading", name="Start a run")).to_be_visible()
            expect(page.get_by_text(WRITE_KEY_NEEDED).first).to_be_visible()
            start = page.get_by_role("button", name="Start run")
            expect(start).to_be_disabled()
            select_first_run(page)
            delete = page.get_by_role("button", name="Delete", exact=True)
            expect(delete).to_be_disabled()
            expect(page.get_by_role("button", name="Run again")).to_be_disabled()
            expect(page.get_by_role("button", name="Watch live")).to_be_enabled()
            start.click(force=True)  # a browser sends no click from a disabled button
            delete.click(force=True)
            page.screenshot(path=str(SCREENSHOTS / "access-locked.png"))
            assert page.get_by_text("cannot be undone").count() == 0
            runs = api.get("/runs").json()
            assert [run["id"] for run in runs["runs"]] == [existing] and runs["total"] == 1
            assert store.get_run(existing).status == "succeeded"

            # The key, typed into the sidebar: the same visitor starts a run and deletes the other one.
            key_field = page.get_by_label("API key", exact=True)
            key_field.fill(KEY)
            key_field.press("Enter")
            expect(page.get_by_text("Your key may change things.")).to_be_visible()
            expect(start).to_be_enabled()
            for label, value in TINY:
                field = page.get_by_role("spinbutton", name=label, exact=True)
                field.fill(value)
                field.press("Tab")
            page.get_by_role("textbox", name="Hidden layers").fill("32, 32")
            start.click()
            queued = page.get_by_text(re.compile(r"Run \w+ is queued"))
            expect(queued).to_be_visible()
            started = re.search(r"Run (\w+) is queued", queued.inner_text()).group(1)
            expect(delete).to_be_enabled()  # the selection is kept
            delete.click()
            page.get_by_role("button", name="Yes, delete").click()
            expect(page.get_by_text(f"Deleted {existing}.")).to_be_visible()
            assert api.get(f"/runs/{existing}").status_code == 404
            run = api.get(f"/runs/{started}").json()
            assert (run["config"]["hidden"], run["config"]["epochs"]) == ([32, 32], 1)

            # Another visitor gets nothing from the first one's key.
            other = browser.new_page(viewport=VIEWPORT)
            other.goto(stack.dashboard_url, wait_until="domcontentloaded")
            expect(other.get_by_role("heading", name="Start a run")).to_be_visible(timeout=UI_TIMEOUT_MS)
            expect(other.get_by_role("button", name="Start run")).to_be_disabled(timeout=UI_TIMEOUT_MS)
            expect(other.get_by_text(WRITE_KEY_NEEDED).first).to_be_visible(timeout=UI_TIMEOUT_MS)

            api.post(f"/runs/{started}/cancel", headers={"X-API-Key": KEY})  # leave the CPU to others
        finally:
            browser.close()
