"""The dashboard in Streamlit's AppTest: a visitor's session opened on a page, and what tests read off it.

Each call of `open_app` is a new browser session on dashboard/app.py, talking to whatever API the
dashboard's settings name (tests/dashboard/conftest.py's `point_dashboard_at`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from tests.support.paths import REPO

APP = REPO / "dashboard" / "app.py"
PAGE_TIMEOUT_S = 60


def open_app(
    page: str | None = None,
    *,
    key: str | None = None,
    query: Mapping[str, str] | None = None,
    **session: Any,
) -> AppTest:
    """A new session on `page` ("views/live.py"; None: the Runs page, the app's first).

    The URL's `query` and the session state `session` are set before the first run, as a link or another
    page would have left them; `key`, when given, is typed into the sidebar's API key field before the page
    is opened. Fails the test if the page raised.
    """
    at = AppTest.from_file(str(APP), default_timeout=PAGE_TIMEOUT_S)
    at.query_params.update(query or {})
    for name, value in session.items():
        at.session_state[name] = value
    at.run()
    if key is not None:
        at.text_input(key="api_key").set_value(key).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(elements: Iterable) -> list[str]:
    """The values of a page's elements (at.error, at.info, at.subheader...) as strings."""
    return [str(element.value) for element in elements]


def button(at: AppTest, label: str):
    """The page's first button labelled `label` (StopIteration when there is none)."""
    return next(b for b in at.button if b.label == label)


def select_run(at: AppTest, run_id: str) -> None:
    """Pick `run_id` in the Runs page's selection, as a visitor does to see its details and actions."""
    at.multiselect(key="selected_runs").select(run_id).run()
    assert not at.exception, at.exception


def chart_specs(at: AppTest) -> list[str]:
    """The Vega-Lite specs (JSON text) of the page's Altair charts, in page order."""
    return [chart.proto.spec for chart in at.get("vega_lite_chart")]


def chart_data(chart) -> list[pd.DataFrame]:
    """The data sets of a drawn Altair chart (Streamlit sends them beside the spec, as Arrow)."""
    return [convert_arrow_bytes_to_pandas_df(dataset.data.data) for dataset in chart.proto.datasets]
