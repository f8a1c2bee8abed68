"""How fast does a 100-epoch run's Live page open? (The target: under 2 s.)

Seeds a finished run with the metric series of a 100-epoch `reference` run (3x1000, 500 steps per
epoch, a train record every 25 steps: 2,000 train records with three layers each, 100 validation
records and the final test record; synthetic values of the real shape, written through the run store as
the worker writes them) into a throwaway redis-server, starts the real API (`python -m api`) and the
dashboard (`python -m dashboard`), and measures:

- api_thinned_ms / api_full_ms: GET /metrics with max_points=400 (what the page asks for) and the
  whole series, for comparison;
- page_script_ms: the Live page's script run in Streamlit's AppTest (API calls and charts);
- browser_open_ms: a real Chromium opening /live?run=ID until all charts are drawn (a new tab, so
  Streamlit's frontend loads each time, from the browser's cache after the first).

    .venv/bin/python -m bench.dashboard_live_load              # 5 repetitions of each
    .venv/bin/python -m bench.dashboard_live_load --repeat 10

Prints the medians and writes bench/results/dashboard_live_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from ffcore.config import RunConfig
from tests.support.api import start_api
from tests.support.browser import launch_chromium
from tests.support.paths import REPO
from tests.support.ports import free_port
from tests.support.processes import environment_without, launch
from tests.support.redis_server import redis_server
from tests.support.store import TestStore
from tests.support.waiting import wait_for

RESULTS = REPO / "bench" / "results" / "dashboard_live_load.json"
EPOCHS, STEPS_PER_EPOCH, LOG_EVERY, LAYERS = 100, 500, 25, 3


def seed_long_run(redis_url: str) -> tuple[str, int]:
    """A succeeded 100-epoch run with its whole metric series; returns (run id, records written)."""
    store = TestStore.from_url(redis_url)
    config = RunConfig.from_preset("reference")
    run_id = store.create_run(config, preset="reference").id
    store.set_status(run_id, "running", started_at=time.time() - 3600, device="cpu")
    rng = random.Random(0)
    records: list[dict] = []
    total_steps = EPOCHS * STEPS_PER_EPOCH
    for step in range(LOG_EVERY, total_steps + 1, LOG_EVERY):
        progress = step / total_steps
        records.append(
            {
                "kind": "train", "step": step, "epoch": step / STEPS_PER_EPOCH, "lr": 0.001, "head_lr": 0.01,
                "samples_per_s": 3500.0, "head_loss": 0.3 * (1 - progress) + 0.01,
                "head_accuracy": 0.9 + 0.09 * progress, "peer_loss": 0.0004,
                "layers": [
                    {
                        "layer": layer, "threshold": 1000.0,
                        "goodness_pos": 1000 + 800 * progress + rng.gauss(0, 20),
                        "goodness_neg": 1000 - 600 * progress + rng.gauss(0, 20),
                        "ff_loss": 0.7 * (1 - progress) + 0.05, "ff_accuracy": 0.5 + 0.48 * progress,
                    }
                    for layer in range(LAYERS)
                ],
            }
        )  # fmt: skip
        if step % STEPS_PER_EPOCH == 0:
            epoch = step // STEPS_PER_EPOCH
            error = 0.015 + 0.1 / epoch
            records.append(
                {"kind": "eval", "step": step, "epoch": epoch, "split": "val", "error_scan": error,
                 "error_softmax": error + 0.002}
            )  # fmt: skip
    records.append(
        {"kind": "eval", "step": total_steps, "epoch": EPOCHS, "split": "test", "error_scan": 0.0145,
         "error_softmax": 0.0151, "final": True}
    )  # fmt: skip
    for first in range(0, len(records), 500):
        store.append_metrics(run_id, records[first : first + 500])
    store.update_run(run_id, progress=1.0, epoch=EPOCHS, step=total_steps, total_steps=total_steps,
                     test_error_scan=0.0145, test_error_softmax=0.0151, samples_per_s=3500.0)  # fmt: skip
    store.set_status(run_id, "succeeded")
    return run_id, len(records)


def timed_ms(action, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return times


def page_script_times(api_url: str, run_id: str, repeat: int) -> list[float]:
    os.environ["FF_API_URL"] = api_url
    from streamlit.testing.v1 import AppTest

    def open_live_page() -> None:
        at = AppTest.from_file(str(REPO / "dashboard" / "pages" / "live.py"), default_timeout=60)
        at.session_state["live_run_id"] = run_id
        at.run()
        assert not at.exception and len(at.get("vega_lite_chart")) >= 5, at.exception

    open_live_page()  # warm imports and the client's connection pool once
    return timed_ms(open_live_page, repeat)


@contextmanager
def dashboard(api_url: str) -> Iterator[str]:
    port = free_port()
    env = environment_without("FF_")
    env |= {"FF_API_URL": api_url, "FF_DASHBOARD_PORT": str(port), "FF_DASHBOARD_HOST": "127.0.0.1"}
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        return httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200

    with launch([sys.executable, "-m", "dashboard"], env=env, stop_timeout_s=15):
        wait_for(healthy, 60, "the dashboard's health check", interval_s=0.2, ignore=(httpx.TransportError,))
        yield url


def browser_times(dashboard_url: str, run_id: str, repeat: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    charts_drawn = "document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length >= 6"
    times = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        for attempt in range(repeat + 1):
            page = context.new_page()
            start = time.perf_counter()
            page.goto(f"{dashboard_url}/live?run={run_id}")
            page.wait_for_function(charts_drawn, timeout=60_000)
            elapsed = (time.perf_counter() - start) * 1000
            if attempt:  # the first load warms the server's imports and the browser's cache
                times.append(elapsed)
            page.close()
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="measurements of each kind (default 5)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurement")
    args = parser.parse_args()

    with redis_server() as redis_url, start_api(redis_url) as api:
        run_id, record_count = seed_long_run(redis_url)
        metrics_url = f"{api.base_url}/runs/{run_id}/metrics"
        with httpx.Client(timeout=60) as http:
            thinned = http.get(metrics_url, params={"max_points": 400}).json()

            def fetch(params: dict) -> None:
                http.get(metrics_url, params=params).raise_for_status()

            api_thinned = timed_ms(lambda: fetch({"max_points": 400}), args.repeat)
            api_full = timed_ms(lambda: fetch({"limit": 10_000}), args.repeat)
        page_script = page_script_times(api.url, run_id, args.repeat)
        browser = []
        if not args.no_browser:
            with dashboard(api.url) as dashboard_url:
                browser = browser_times(dashboard_url, run_id, args.repeat)

    result = {
        "what": "opening the Live page of a finished 100-epoch run (synthetic series of the real shape)",
        "records_in_stream": record_count,
        "records_in_thinned_load": len(thinned["records"]),
        "api_thinned_ms": round(statistics.median(api_thinned), 1),
        "api_full_ms": round(statistics.median(api_full), 1),
        "page_script_ms": round(statistics.median(page_script), 1),
        "browser_open_ms": round(statistics.median(browser), 1) if browser else None,
        "browser_open_max_ms": round(max(browser), 1) if browser else None,
        "target_ms": 2000,
        "repeat": args.repeat,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
    }
    print(f"records in the stream:          {record_count:,} (thinned load: {len(thinned['records'])})")
    print(f"API, thinned series (400):      {result['api_thinned_ms']:8.1f} ms median")
    print(f"API, whole series:              {result['api_full_ms']:8.1f} ms median")
    print(f"Live page script (AppTest):     {result['page_script_ms']:8.1f} ms median")
    if browser:
        print(f"Live page in Chromium:          {result['browser_open_ms']:8.1f} ms median, "
              f"{result['browser_open_max_ms']:.1f} ms worst (target < 2000 ms)")  # fmt: skip
    print(f"load average while measuring:   {result['machine']['load_avg_1m']:.1f} on {os.cpu_count()} CPUs")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
