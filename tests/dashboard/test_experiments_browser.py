"""An experiment end to end in a real Chromium over the whole local stack, started as `make up` starts it.

honcho runs the Procfile (redis-server, a Celery worker, the uvicorn API, Streamlit) on free ports. The
test fills the Experiments form for a grid of two learning rates over two seeds of a tiny network,
starts it, and waits, without reloading the page, until the results table shows the mean ± std of
both settings; the numbers must be the API's. Then "Its runs" lists the four runs on the Runs page.
A screenshot goes to artifacts/screenshots/experiments.png.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.support.browser import launch_chromium
from tests.support.paths import REPO
from tests.support.stack import start_stack
from tests.support.waiting import wait_for

SCREENSHOTS = REPO / "artifacts" / "screenshots"
VIEWPORT = {"width": 1400, "height": 1000}
UI_TIMEOUT_MS = 60_000
EXPERIMENT_TIMEOUT_S = 900
LEARNING_RATES = (0.001, 0.003)
SEEDS = (0, 1)
# quick, made tiny: 32x32 units, batches of 1000 (50 steps an epoch), two epochs (two points per curve):
# seconds per run on a quiet CPU.
TINY = {"epochs": 2, "batch_size": 1000, "hidden": [32, 32]}
MEAN_STD = re.compile(r"^\d+\.\d\d% ± \d+\.\d\d$")
# The results table's columns of both heads' validation errors, and the API's names for them.
SHOWN_ERRORS = {"val error (scan)": "val_error_scan", "val error (softmax)": "val_error_softmax"}


def mean_std_text(stats: dict) -> str:
    """What the page must show for the API's {mean, std}: percent with two decimals."""
    return f"{stats['mean'] * 100:.2f}% ± {stats['std'] * 100:.2f}"


# The grid draws on a canvas; its accessible table holds the cells in view, each with its column's index.
READ_GRID = """(grid) => {
    const names = {};
    for (const th of grid.querySelectorAll('th[role="columnheader"]')) {
        names[th.getAttribute("aria-colindex")] = th.innerText;
    }
    return [...grid.querySelectorAll('tbody tr[role="row"]')].map((row) => Object.fromEntries(
        [...row.querySelectorAll('td[role="gridcell"]')].map(
            (cell) => [names[cell.getAttribute("aria-colindex")], cell.innerText])));
}"""


def table_rows(page, header: str) -> list[dict[str, str]]:
    """The rows of the st.dataframe with a column `header`, each as {column: text} of the cells shown."""
    grid = page.locator('[data-testid="stDataFrame"]').filter(has_text=header)
    return grid.first.evaluate(READ_GRID) if grid.count() else []


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(1500)
def test_a_grid_started_from_the_form_shows_mean_and_std_per_setting(tmp_path, mnist_dir):
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with start_stack(tmp_path, data_dir=mnist_dir) as stack, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            api = httpx.Client(base_url=stack.api_url, timeout=30)

            page.goto(f"{stack.dashboard_url}/experiments", wait_until="domcontentloaded")
            expect(page.get_by_text("No experiments yet")).to_be_visible()
            for label, value in (("Epochs", TINY["epochs"]), ("Batch size", TINY["batch_size"])):
                field = page.get_by_role("spinbutton", name=label, exact=True)
                field.fill(str(value))
                field.press("Tab")
            hidden = page.get_by_role("textbox", name="Hidden layers")
            hidden.fill(", ".join(map(str, TINY["hidden"])))
            hidden.press("Tab")
            # The multiselect's placeholder is an input attribute, not text: open it through its input, and
            # type to filter, since its list only draws the options in view.
            picker = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Settings to vary")
            picker.locator("input").click()
            picker.locator("input").fill("lr")
            page.get_by_role("option", name="lr", exact=True).click()
            page.keyboard.press("Escape")
            values = page.get_by_role("textbox", name="Values of lr")
            values.fill(", ".join(map(str, LEARNING_RATES)))
            values.press("Tab")
            seeds = page.get_by_role("textbox", name="Seeds")
            seeds.fill(", ".join(map(str, SEEDS)))
            seeds.press("Tab")
            page.get_by_role("button", name="Start experiment").click()
            expect(
                page.get_by_text(re.compile(r"Experiment \w+ started: 2 setting\(s\) × 2 seed\(s\)"))
            ).to_be_visible()

            (experiment,) = api.get("/experiments").json()["experiments"]
            experiment_path = f"/experiments/{experiment['id']}"
            spec = api.get(experiment_path).json()["spec"]
            assert spec["base"]["preset"] == "quick" and spec["base"]["overrides"] == TINY
            assert spec["search"] == "grid" and spec["seeds"] == list(SEEDS)
            assert spec["params"]["lr"]["values"] == list(LEARNING_RATES)

            # The page refreshes by itself while the experiment runs: no reload from here on.
            page.evaluate("window.__same_page = true")
            rows: list[dict[str, str]] = []

            def both_settings_have_mean_and_std() -> bool:
                rows[:] = table_rows(page, "val error (scan)")
                return len(rows) == 2 and all(
                    MEAN_STD.match(row.get(column, "")) for row in rows for column in SHOWN_ERRORS
                )

            wait_for(
                both_settings_have_mean_and_std,
                EXPERIMENT_TIMEOUT_S,
                lambda: (
                    f"the results table to show mean ± std for both settings; it shows {rows}; the "
                    f"experiment: {api.get(experiment_path).json()}"
                ),
                interval_s=2.0,
            )
            assert page.evaluate("window.__same_page === true"), "the page was reloaded"
            table = api.get(experiment_path).json()["table"]
            for row, setting in zip(rows, table["settings"], strict=True):
                assert (row["lr"], row["runs"]) == (f"{setting['params']['lr']:g}", "2/2")
                for column, name in SHOWN_ERRORS.items():
                    assert row[column] == mean_std_text(setting["stats"][name]), (column, row, setting)
            assert [row[""] for row in rows].count("★ best") == 1
            # A rerun can leave the old elements on screen for a moment: wait until they are gone.
            expect(page.get_by_text("Best setting so far")).to_have_count(1)
            page.set_viewport_size({"width": VIEWPORT["width"], "height": 1900})
            time.sleep(1.0)  # let the charts re-lay out at the new size
            page.screenshot(path=str(SCREENSHOTS / "experiments.png"))
            # The settings' parallel coordinates and the best setting's seed curves.
            expect(page.locator(".vega-embed")).to_have_count(2)
            page.set_viewport_size(VIEWPORT)

            # "Its runs" links to the Runs page filtered by the experiment: its four runs with their setting.
            page.get_by_role("link", name="Its runs").click()
            expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
            expect(page).to_have_url(re.compile(rf"/\?experiment={experiment['id']}$"))  # a link to share
            runs = api.get("/runs", params={"experiment": experiment["id"]}).json()["runs"]
            assert len(runs) == len(LEARNING_RATES) * len(SEEDS)

            def all_runs_listed() -> list[dict[str, str]] | None:
                rows = table_rows(page, "Experiment")
                return rows if len(rows) == len(runs) else None

            def what_is_shown() -> str:  # a failure says what the page showed instead
                page.screenshot(path=str(SCREENSHOTS / "experiment-runs-failed.png"))
                text = page.locator('[data-testid="stMain"]').inner_text()[:1500]
                return f"the {len(runs)} runs: {table_rows(page, 'Run')}; the page read:\n{text}"

            shown = wait_for(all_runs_listed, 60, what_is_shown)
            assert sorted((row["Run"], row["Experiment"]) for row in shown) == sorted(
                (run["id"], f"{experiment['id']} #{run['setting']}") for run in runs
            )
        finally:
            browser.close()
