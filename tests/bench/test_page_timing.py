"""The Live page bench's browser clock (bench/_page_timing.py) on its floor page, in a real Chromium."""

from __future__ import annotations

import pytest

from bench._page_timing import browser_times, floor_page
from tests.support.browser import launch_chromium


@pytest.mark.browser
def test_floor_page_openings_are_timed_title_first_then_its_one_chart():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, floor_page() as url:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        times = browser_times(context, {"floor": (url, 1, "true")}, repeat=2)
        browser.close()
    # The warm-up opening is left out: two openings of each measure, every one of them read.
    assert sorted(times) == ["floor", "floor_all_charts", "floor_first_chart", "floor_title"]
    assert all(len(values) == 2 and None not in values for values in times.values())
    names = ("floor_title", "floor_first_chart", "floor_all_charts", "floor")
    for title, first, every, wall in zip(*(times[name] for name in names), strict=True):
        # The title is the script's first element, the chart comes after it; one chart: first is all.
        assert 0 < title <= first == every
        assert 0 < wall < 60_000
