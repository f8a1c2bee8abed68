"""Take a picture of a run's Live page, as the README's first picture was taken.

    python scripts/live_screenshot.py http://127.0.0.1:8501 RUN_ID docs/img/live-finished.png

Opens the dashboard's Live page for the run in Debian's Chromium (tests/support/browser.py), waits
until its charts are drawn (and, for a finished run, its final test error is shown), and saves the
whole page. With reads protected, pass --key (typed into the sidebar, as a visitor would).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from the repository root

from tests.support.browser import launch_chromium  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser

WIDTH = 1400


def take(browser: Browser, dashboard_url: str, run_id: str, out: Path, height: int = 1700,
         key: str | None = None, timeout_s: float = 120) -> None:  # fmt: skip
    """Save the Live page of finished run `run_id` as `out`, in a new page of `browser`."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": WIDTH, "height": height})
    try:
        page.set_default_timeout(timeout_s * 1000)
        page.goto(f"{dashboard_url.rstrip('/')}/live?run={run_id}", wait_until="domcontentloaded")
        if key:
            page.get_by_label("API key").fill(key)
            page.keyboard.press("Enter")
        expect(page.get_by_text("Final test error")).to_be_visible(timeout=timeout_s * 1000)
        expect(page.locator(".vega-embed").first).to_be_visible(timeout=timeout_s * 1000)
        time.sleep(2.0)  # let the charts finish laying out at this size
        page.screenshot(path=str(out))
    finally:
        page.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dashboard_url", help="the dashboard, e.g. http://127.0.0.1:8501")
    parser.add_argument("run_id", help="a finished run")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--height", type=int, default=1700, help="viewport height in pixels (default: 1700)")
    parser.add_argument("--key", help="an API key to type into the sidebar, when reads are protected")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait (default: 120)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            take(browser, args.dashboard_url, args.run_id, args.out, args.height, args.key, args.timeout)
        finally:
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
