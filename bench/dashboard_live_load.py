"""How fast does a 100-epoch run's Live page open, and how soon does a new point show? (Issue 17's
targets: under 2 s to open, the first chart within 1 s, a new point within 2 s of being logged.)

Seeds a finished run with the metric series of a 100-epoch `reference` run (3x1000, 500 steps per
epoch, a train record every 25 steps: 2,000 train records with three layers each, 100 validation
records and the final test record, each evaluation with its per-layer probes; synthetic values of the
real shape, written through the run store as the worker writes them) and its model (a 3x1000 network),
and a `running` run with the first 50 epochs of the same series, into a throwaway redis-server, starts
the real API (`python -m api`) and the dashboard (`python -m dashboard`), and measures:

- api_thinned_ms / api_full_ms: GET /metrics with max_points=400 (what the page asks for) and the
  whole series, for comparison;
- page_script_ms / page_script_probes_ms: the Live page's script run in Streamlit's AppTest (API calls
  and charts), in its Training view and in its Probes view;
- browser_open_ms: a real Chromium opening /live?run=ID until the training curves are drawn (a new tab,
  so Streamlit's frontend loads each time, from the browser's cache after the first), by the wall clock
  from the call that opens the URL;
- browser_first_chart_ms / browser_all_charts_ms: the same openings by the page's own clock, from its
  navigation start until the first chart is drawn and until all of them are;
- browser_title_ms: in the same openings, until the page's title is shown (the page script's first
  element: what comes before it is Streamlit's frontend starting and connecting);
- browser_floor_first_chart_ms: the same browser opening bench/_floor_page.py (one small chart, no API
  call) in turns with the Live page: the floor that no change to the Live page can go below;
- browser_probes_ms (and browser_probes_first_chart_ms): the same for the Probes view
  (/live?run=ID&view=probes), until its charts and the receptive-field picture are drawn.
  `--no-probes` seeds eval records without probes, as runs from before them have, for comparison;
- new_point_ms: with the running run's Live page open, from logging an epoch's last train record and
  its validation record into the run's stream (as the worker does at the end of an epoch) until the
  page has drawn both: the validation chart's point for that epoch and one more vertex on the first
  goodness curve. The logs come at random moments of the page's one-second poll.

"Drawn" is as bench/_page_timing.py reads it from the DOM.

    .venv/bin/python -m bench.dashboard_live_load              # 5 repetitions of each
    .venv/bin/python -m bench.dashboard_live_load --repeat 10
    .venv/bin/python -m bench.dashboard_live_load --repeat 2 --out /tmp/live.json

Prints the medians and writes bench/results/dashboard_live_load.json (with --no-probes,
dashboard_live_load_no_probes.json; --out writes elsewhere).
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
from pathlib import Path

import httpx
import torch

from bench._page_timing import CHARTS_JS, DRAWN_JS, browser_times, floor_page, wait_until_healthy
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

RESULTS = REPO / "bench" / "results" / "dashboard_live_load.json"
EPOCHS, STEPS_PER_EPOCH, LOG_EVERY, LAYERS = 100, 500, 25, 3
LIVE_EPOCHS = 50  # epochs the running run has logged when its page opens; each new point adds one
# Charts the Live page draws: in its Training view goodness per layer, FF loss, FF accuracy, validation
# error; in its Probes view the probes' errors and goodness bands per layer.
CURVE_CHARTS = LAYERS + 3
PROBE_CHARTS = 1 + LAYERS
TARGETS_MS = {"target_ms": 2000, "first_chart_target_ms": 1000, "new_point_target_ms": 2000}

FIELDS_JS = "[...document.querySelectorAll('[data-testid=\"stImage\"] img')].some((i) => i.naturalWidth > 0)"


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


def train_record(step: int, rng: random.Random) -> dict:
    progress = step / (EPOCHS * STEPS_PER_EPOCH)
    return {
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
    }  # fmt: skip


def epoch_records(epoch: int, rng: random.Random, probes: bool) -> list[dict]:
    """An epoch's train records and the validation record at its end, as the worker logs them."""
    first = (epoch - 1) * STEPS_PER_EPOCH + LOG_EVERY
    records = [train_record(step, rng) for step in range(first, epoch * STEPS_PER_EPOCH + 1, LOG_EVERY)]
    error = 0.015 + 0.1 / epoch
    evaluation = {"kind": "eval", "step": epoch * STEPS_PER_EPOCH, "epoch": epoch, "split": "val",
                  "error_scan": error, "error_softmax": error + 0.002}  # fmt: skip
    if probes:
        evaluation["layers"] = [layer_probes(layer, error, rng) for layer in range(LAYERS)]
    return [*records, evaluation]


def seed_long_run(redis_url: str, probes: bool = True, epochs: int = EPOCHS) -> tuple[str, int]:
    """A run with its metric series of `epochs` epochs; returns (run id, records written). With all
    EPOCHS it has succeeded, with its final test record and a model; with fewer it is still `running`.
    Without `probes`, its eval records carry none (as a run from before them)."""
    store = TestStore.from_url(redis_url)
    config = RunConfig.from_preset("reference")
    run_id = store.create_run(config, preset="reference").id
    store.set_status(run_id, "running", started_at=time.time() - 3600, device="cpu")
    rng = random.Random(0)
    records = [record for epoch in range(1, epochs + 1) for record in epoch_records(epoch, rng, probes)]
    finished = epochs == EPOCHS
    if finished:
        final = {"kind": "eval", "step": EPOCHS * STEPS_PER_EPOCH, "epoch": EPOCHS, "split": "test",
                 "error_scan": 0.0145, "error_softmax": 0.0151, "final": True}  # fmt: skip
        if probes:
            final["layers"] = [layer_probes(layer, final["error_scan"], rng) for layer in range(LAYERS)]
        records.append(final)
    for first in range(0, len(records), 500):
        store.append_metrics(run_id, records[first : first + 500])
    total_steps = EPOCHS * STEPS_PER_EPOCH
    store.update_run(run_id, progress=epochs / EPOCHS, epoch=epochs, step=epochs * STEPS_PER_EPOCH,
                     total_steps=total_steps, samples_per_s=3500.0)  # fmt: skip
    if finished:
        model = FFNetwork(config)
        model.reset_parameters(torch.Generator().manual_seed(0))
        store.save_model(run_id, save_model(model, config))
        store.update_run(run_id, test_error_scan=0.0145, test_error_softmax=0.0151)
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
    with launch([sys.executable, "-m", "dashboard"], env=env, stop_timeout_s=15):
        wait_until_healthy(url, "the dashboard")
        yield url


def live_page_urls(dashboard_url: str, run_id: str, probes: bool) -> dict[str, tuple[str, int, str]]:
    """The Live page's Training view and its Probes view, for browser_times."""
    return {
        "browser": (f"{dashboard_url}/live?run={run_id}", CURVE_CHARTS, "true"),
        "browser_probes": (f"{dashboard_url}/live?run={run_id}&view=probes", PROBE_CHARTS if probes else 0,
                           FIELDS_JS),
    }  # fmt: skip


# The first goodness curve's vertices, and whether the page has drawn epoch `epoch`'s new points: that
# curve has more vertices than `before`, and the validation chart a point labelled (ARIA) with the epoch.
VERTICES_JS = f"""() => {{
    const line = ({CHARTS_JS})[0]?.querySelector('.mark-line > path');
    return line ? (line.getAttribute('d') || '').split('L').length : 0;
}}"""
NEW_POINT_JS = f"""([epoch, before]) => ({VERTICES_JS})() > before
    && ({CHARTS_JS}).some((c) => c.querySelector(`.mark-symbol > path[aria-label^="epoch: ${{epoch}};"]`))
    && Date.now()"""


def new_point_times(context, dashboard_url: str, redis_url: str, run_id: str, repeat: int,
                    probes: bool) -> list[float]:  # fmt: skip
    """With the running run's Live page open: ms from logging an epoch's last train record and its
    validation record (the next epoch each time, at a random moment of the page's poll) until the page
    has drawn them (NEW_POINT_JS), by the machine's clock (Python's time.time and the page's Date.now)."""
    store = TestStore.from_url(redis_url)
    rng = random.Random(1)
    page = context.new_page()
    page.goto(f"{dashboard_url}/live?run={run_id}")
    page.wait_for_function(f"{CHARTS_JS}.filter({DRAWN_JS}).length >= {CURVE_CHARTS}", timeout=60_000)
    latencies = []
    for epoch in range(LIVE_EPOCHS + 1, min(LIVE_EPOCHS + repeat, EPOCHS) + 1):
        time.sleep(rng.uniform(0.5, 1.5))
        before = page.evaluate(VERTICES_JS)
        store.append_metrics(run_id, epoch_records(epoch, rng, probes)[-2:])
        logged_ms = time.time() * 1000
        shown = page.wait_for_function(NEW_POINT_JS, arg=[epoch, before], timeout=30_000)
        latencies.append(shown.json_value() - logged_ms)
    page.close()
    return latencies


def browser_phases(dashboard_url: str, redis_url: str, run_ids: tuple[str, str], repeat: int,
                   probes: bool) -> dict[str, list]:  # fmt: skip
    """The openings of the finished run's page and of the floor page, taking turns (browser_times), then
    the new points on the running one's."""
    from playwright.sync_api import sync_playwright

    finished, running = run_ids
    with sync_playwright() as playwright, floor_page() as floor_url:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        urls = live_page_urls(dashboard_url, finished, probes) | {"browser_floor": (floor_url, 1, "true")}
        times = browser_times(context, urls, repeat)
        times["new_point"] = new_point_times(context, dashboard_url, redis_url, running, repeat, probes)
        browser.close()
    return times


def summary(times: dict[str, list]) -> dict[str, float | None]:
    """Each series' median as `NAME_ms`; for openings and new points also the worst, `NAME_max_ms`."""
    result: dict[str, float | None] = {}
    for name, values in times.items():
        values = [value for value in values if value is not None]
        result[f"{name}_ms"] = round(statistics.median(values), 1) if values else None
        if "chart" not in name and "title" not in name:
            result[f"{name}_max_ms"] = round(max(values), 1) if values else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="measurements of each kind (default 5)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium measurements")
    parser.add_argument("--no-probes", action="store_true", help="eval records without probes (older runs)")
    parser.add_argument("--out", type=Path, help="write the result here instead of bench/results/")
    args = parser.parse_args()

    with redis_server() as redis_url, start_api(redis_url) as api:
        run_id, record_count = seed_long_run(redis_url, probes=not args.no_probes)
        live_run_id, _ = seed_long_run(redis_url, probes=not args.no_probes, epochs=LIVE_EPOCHS)
        metrics_url = f"{api.base_url}/runs/{run_id}/metrics"
        with httpx.Client(timeout=60) as http:
            thinned = http.get(metrics_url, params={"max_points": 400}).json()

            def fetch(params: dict) -> None:
                http.get(metrics_url, params=params).raise_for_status()

            api_thinned = timed_ms(lambda: fetch({"max_points": 400}), args.repeat)
            api_full = timed_ms(lambda: fetch({"limit": 10_000}), args.repeat)
        page_script = page_script_times(api.url, run_id, args.repeat)
        page_script_probes = page_script_times(api.url, run_id, args.repeat, probes_view=True)
        browser: dict[str, list] = {}
        if not args.no_browser:
            with dashboard(api.url) as dashboard_url:
                browser = browser_phases(
                    dashboard_url, redis_url, (run_id, live_run_id), args.repeat, not args.no_probes
                )
    names = ("browser", "browser_title", "browser_first_chart", "browser_all_charts", "browser_probes",
             "browser_probes_first_chart", "browser_probes_all_charts", "browser_floor_title",
             "browser_floor_first_chart",
             "new_point")  # fmt: skip
    figures = summary({name: browser.get(name, []) for name in names})
    result = {
        "what": "opening the Live page of a finished 100-epoch run (synthetic series of the real shape); "
        f"new points on a running run's page (from epoch {LIVE_EPOCHS})",
        "records_in_stream": record_count,
        "records_in_thinned_load": len(thinned["records"]),
        "api_thinned_ms": round(statistics.median(api_thinned), 1),
        "api_full_ms": round(statistics.median(api_full), 1),
        "page_script_ms": round(statistics.median(page_script), 1),
        "page_script_probes_ms": round(statistics.median(page_script_probes), 1),
        "browser_open_ms": figures.pop("browser_ms"),
        "browser_open_max_ms": figures.pop("browser_max_ms"),
        **figures,
        "probes_in_records": not args.no_probes,
        **TARGETS_MS,
        "repeat": args.repeat,
        "new_points": len(browser.get("new_point", [])),
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
        print(f"... from navigation start:      {result['browser_first_chart_ms']:8.1f} ms median to the "
              f"first chart (target < 1000 ms), {result['browser_all_charts_ms']:.1f} ms to all")  # fmt: skip
        print(f"... its title (script's start): {result['browser_title_ms']:8.1f} ms; the floor (one chart, "
              f"no API, bench/_floor_page.py): {result['browser_floor_first_chart_ms']:.1f} ms")  # fmt: skip
        print(f"Its Probes view in Chromium:    {result['browser_probes_ms']:8.1f} ms median, "
              f"{result['browser_probes_max_ms']:.1f} ms worst")  # fmt: skip
        print(f"A new point on a running run:   {result['new_point_ms']:8.1f} ms median after it is logged, "
              f"{result['new_point_max_ms']:.1f} ms worst (target < 2000 ms)")  # fmt: skip
    machine = result["machine"]
    print(f"load average while measuring:   {machine['load_average_after'][0]:.1f} on {machine['cpus']} CPUs")
    results = RESULTS.with_name("dashboard_live_load_no_probes.json") if args.no_probes else RESULTS
    results = args.out or results
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
