"""How fast does a 100-epoch run's Live page open? (The target: under 2 s.)

Seeds a finished run with the metric series of a 100-epoch `reference` run (3x1000, 500 steps per
epoch, a train record every 25 steps: 2,000 train records with three layers each, 100 validation
records and the final test record, each evaluation with its per-layer probes; synthetic values of the
real shape, written through the run store as the worker writes them) and its model (a 3x1000 network)
into a throwaway redis-server, starts the real API (`python -m api`) and the dashboard
(`python -m dashboard`), and measures:

- api_thinned_ms / api_full_ms: GET /metrics with max_points=400 (what the page asks for) and the
  whole series, for comparison;
- page_script_ms / page_script_probes_ms: the Live page's script run in Streamlit's AppTest (API calls
  and charts), in its Training view and in its Probes view;
- browser_open_ms: a real Chromium opening /live?run=ID until the training curves are drawn (a new tab,
  so Streamlit's frontend loads each time, from the browser's cache after the first);
- browser_probes_ms: the same for the Probes view (/live?run=ID&view=probes), until its charts and the
  receptive-field picture are drawn. `--no-probes` seeds eval records without probes, as runs from
  before them have, for comparison.

    .venv/bin/python -m bench.dashboard_live_load              # 5 repetitions of each
    .venv/bin/python -m bench.dashboard_live_load --repeat 10

Prints the medians and writes bench/results/dashboard_live_load.json (with --no-probes,
dashboard_live_load_no_probes.json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import torch

from bench._provenance import provenance
from ffcore.checkpoint import save_model
from ffcore.config import RunConfig
from ffcore.model import FFNetwork
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
# Charts the Live page draws: in its Training view goodness per layer, FF loss, FF accuracy, validation
# error; in its Probes view the probes' errors and goodness bands per layer.
CURVE_CHARTS = LAYERS + 3
PROBE_CHARTS = 1 + LAYERS


def layer_probes(layer: int, error: float, rng: random.Random) -> dict:
    """One layer's probes as an eval record carries them (ffcore/probes.py), with made-up values."""
    probes = {
        "layer": layer,
        "error_scan": error * (LAYERS - layer),
        "error_probe": error * 0.8,
        "threshold": 1000.0,
    }
    for name, centre in (("goodness_pos", 1600.0), ("goodness_neg", 500.0)):
        for q, spread in zip(("q05", "q25", "q50", "q75", "q95"), (-2.0, -0.7, 0.0, 0.7, 2.0), strict=True):
            probes[f"{name}_{q}"] = centre + spread * 150 + rng.gauss(0, 10)
    return probes


def seed_long_run(redis_url: str, probes: bool = True) -> tuple[str, int]:
    """A succeeded 100-epoch run with its whole metric series and a model; returns (run id, records
    written). Without `probes`, its eval records carry none (as a run from before them)."""
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
    if probes:
        for record in records:
            if record["kind"] == "eval":
                record["layers"] = [layer_probes(layer, record["error_scan"], rng) for layer in range(LAYERS)]
    for first in range(0, len(records), 500):
        store.append_metrics(run_id, records[first : first + 500])
    model = FFNetwork(config)
    model.reset_parameters(torch.Generator().manual_seed(0))
    store.save_model(run_id, save_model(model, config))
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


def page_script_times(api_url: str, run_id: str, repeat: int, probes_view: bool = False) -> list[float]:
    """The Live page's script in AppTest, its Training view (or its Probes view), ms per opening."""
    os.environ["FF_API_URL"] = api_url
    from streamlit.testing.v1 import AppTest

    def open_live_page() -> None:
        at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=60)
        at.session_state["live_run_id"] = run_id
        if probes_view:
            at.query_params["view"] = "probes"
        at.run()
        at.switch_page("views/live.py").run()
        assert not at.exception and not at.error, at.exception or at.error
        assert probes_view or len(at.get("vega_lite_chart")) >= CURVE_CHARTS

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


def browser_times(
    dashboard_url: str, run_id: str, repeat: int, probes: bool
) -> tuple[list[float], list[float]]:
    """Per opening of the Live page: ms until its Training view is drawn, and its Probes view."""
    from playwright.sync_api import sync_playwright

    charts = "document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length"
    fields = "[...document.querySelectorAll('[data-testid=\"stImage\"] img')].some((i) => i.naturalWidth > 0)"
    probe_charts = PROBE_CHARTS if probes else 0
    views = {
        f"{dashboard_url}/live?run={run_id}": f"{charts} >= {CURVE_CHARTS}",
        f"{dashboard_url}/live?run={run_id}&view=probes": f"{charts} >= {probe_charts} && {fields}",
    }
    times: dict[str, list[float]] = {url: [] for url in views}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        for attempt in range(repeat + 1):
            for url, drawn in views.items():
                page = context.new_page()
                start = time.perf_counter()
                page.goto(url)
                page.wait_for_function(drawn, timeout=60_000)
                if attempt:  # the first load warms the server's imports and the browser's cache
                    times[url].append((time.perf_counter() - start) * 1000)
                page.close()
        browser.close()
    curves, with_probes = times.values()
    return curves, with_probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="measurements of each kind (default 5)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurement")
    parser.add_argument("--no-probes", action="store_true", help="eval records without probes (older runs)")
    args = parser.parse_args()

    with redis_server() as redis_url, start_api(redis_url) as api:
        run_id, record_count = seed_long_run(redis_url, probes=not args.no_probes)
        metrics_url = f"{api.base_url}/runs/{run_id}/metrics"
        with httpx.Client(timeout=60) as http:
            thinned = http.get(metrics_url, params={"max_points": 400}).json()

            def fetch(params: dict) -> None:
                http.get(metrics_url, params=params).raise_for_status()

            api_thinned = timed_ms(lambda: fetch({"max_points": 400}), args.repeat)
            api_full = timed_ms(lambda: fetch({"limit": 10_000}), args.repeat)
        page_script = page_script_times(api.url, run_id, args.repeat)
        page_script_probes = page_script_times(api.url, run_id, args.repeat, probes_view=True)
        browser, browser_probes = [], []
        if not args.no_browser:
            with dashboard(api.url) as dashboard_url:
                browser, browser_probes = browser_times(
                    dashboard_url, run_id, args.repeat, not args.no_probes
                )

    result = {
        "what": "opening the Live page of a finished 100-epoch run (synthetic series of the real shape)",
        "records_in_stream": record_count,
        "records_in_thinned_load": len(thinned["records"]),
        "api_thinned_ms": round(statistics.median(api_thinned), 1),
        "api_full_ms": round(statistics.median(api_full), 1),
        "page_script_ms": round(statistics.median(page_script), 1),
        "page_script_probes_ms": round(statistics.median(page_script_probes), 1),
        "browser_open_ms": round(statistics.median(browser), 1) if browser else None,
        "browser_open_max_ms": round(max(browser), 1) if browser else None,
        "browser_probes_ms": round(statistics.median(browser_probes), 1) if browser_probes else None,
        "browser_probes_max_ms": round(max(browser_probes), 1) if browser_probes else None,
        "probes_in_records": not args.no_probes,
        "target_ms": 2000,
        "repeat": args.repeat,
        **provenance(),
    }
    print(f"records in the stream:          {record_count:,} (thinned load: {len(thinned['records'])})")
    print(f"API, thinned series (400):      {result['api_thinned_ms']:8.1f} ms median")
    print(f"API, whole series:              {result['api_full_ms']:8.1f} ms median")
    print(f"Live page script (AppTest):     {result['page_script_ms']:8.1f} ms median")
    print(f"... its Probes view:            {result['page_script_probes_ms']:8.1f} ms median")
    if browser:
        print(f"Live page in Chromium:          {result['browser_open_ms']:8.1f} ms median, "
              f"{result['browser_open_max_ms']:.1f} ms worst (target < 2000 ms)")  # fmt: skip
        print(f"Its Probes view in Chromium:    {result['browser_probes_ms']:8.1f} ms median, "
              f"{result['browser_probes_max_ms']:.1f} ms worst")  # fmt: skip
    machine = result["machine"]
    print(f"load average while measuring:   {machine['load_average_after'][0]:.1f} on {machine['cpus']} CPUs")
    results = RESULTS.with_name("dashboard_live_load_no_probes.json") if args.no_probes else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {results.relative_to(REPO)}")


if __name__ == "__main__":
    main()
