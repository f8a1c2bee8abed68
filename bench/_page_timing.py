"""Not a benchmark: how long a dashboard page takes to draw in Chromium (bench/dashboard_live_load.py).

"Drawn", read from the DOM every animation frame: a chart (Streamlit's `stVegaLiteChart`, the
vega-embed container) whose Vega view (`svg.marks` or `canvas.marks`) has a nonzero box and, as an
SVG, at least one mark item in it. Streamlit draws charts of up to 2,000 rows per dataset as SVG
(the Live page's are), larger ones on a canvas, where only the box is checked. The page's title (its
first `h1`) marks when the page script's first element arrived.

floor_page serves bench/_floor_page.py, one small chart and nothing else, for the floor under any page.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support.paths import REPO
from tests.support.ports import free_port
from tests.support.processes import environment_without, launch
from tests.support.waiting import wait_for

# JavaScript: the page's charts (Streamlit's vega-embed containers), in page order, and whether one is drawn.
CHARTS_JS = "[...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')]"
DRAWN_JS = """(chart) => {
    const view = chart.querySelector('svg.marks, canvas.marks');
    if (!view) return false;
    const box = view.getBoundingClientRect();
    return box.width > 0 && box.height > 0
        && (view.tagName === 'CANVAS' || !!view.querySelector('.role-mark > *'));
}"""
# Installed in each tab before the page's scripts: records in window.__drawnAt, by the page's clock (ms
# from its navigation start), when its title (first h1) shows, when the first chart is drawn and when
# `need` charts (and `extra`) are.
WATCH_JS = """(() => {
    if (window.top !== window) return;
    const drawn = %(drawn)s, times = (window.__drawnAt = {});
    const tick = () => {
        const now = performance.now();  // one reading per frame: what shows in the same frame shares it
        if (times.title === undefined && document.querySelector('h1')) times.title = now;
        const count = %(charts)s.filter(drawn).length;
        if (count >= 1 && times.first === undefined) times.first = now;
        if (count >= %(need)d && (%(extra)s)) times.all = now;
        else requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
})();"""


def open_and_time(context, url: str, need: int, extra: str = "true") -> dict[str, float | None]:
    """Open `url` in a new tab until `need` charts (and `extra`) are drawn. Returns, under the suffixes of
    the result's keys: "" ms by the wall clock from the call that opens it; by the page's clock from its
    navigation start, "_title" until its title (the page script's first element) is shown, "_first_chart"
    until its first chart is drawn (None without charts), "_all_charts" until all are."""
    page = context.new_page()
    page.add_init_script(WATCH_JS % {"drawn": DRAWN_JS, "charts": CHARTS_JS, "need": need, "extra": extra})
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_function("window.__drawnAt && window.__drawnAt.all !== undefined", timeout=60_000)
    wall_ms = (time.perf_counter() - start) * 1000
    drawn_at = page.evaluate("window.__drawnAt")
    page.close()
    return {"": wall_ms, "_title": drawn_at.get("title"), "_first_chart": drawn_at.get("first"),
            "_all_charts": drawn_at["all"]}  # fmt: skip


def browser_times(context, urls: dict[str, tuple[str, int, str]], repeat: int) -> dict[str, list]:
    """Per opening of each named page (url, charts to wait for, extra condition): the times of
    open_and_time, under the result's keys (the name and open_and_time's suffixes)."""
    times: dict[str, list] = {}
    for attempt in range(repeat + 1):
        for name, (url, need, extra) in urls.items():
            opening = open_and_time(context, url, need, extra)
            if attempt:  # the first load warms the server's imports and the browser's cache
                for suffix, value in opening.items():
                    times.setdefault(name + suffix, []).append(value)
    return times


def wait_until_healthy(url: str, what: str) -> None:
    """Wait until the Streamlit server at `url` answers its health check."""

    def healthy() -> bool:
        return httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200

    wait_for(healthy, 60, f"{what}'s health check", interval_s=0.2, ignore=(httpx.TransportError,))


@contextmanager
def floor_page() -> Iterator[str]:
    """bench/_floor_page.py served by Streamlit as the dashboard is (python -m dashboard's arguments)."""
    from dashboard.__main__ import streamlit_args

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = streamlit_args(port, "127.0.0.1", app=REPO / "bench" / "_floor_page.py")
    with launch([sys.executable, "-m", *args], env=environment_without("FF_"), stop_timeout_s=15):
        wait_until_healthy(url, "the floor page")
        yield url
