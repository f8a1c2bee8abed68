"""The visitor's key, with Streamlit's AppTest against the real `python -m api` on the real redis-server.

The dashboard lends no key: a visitor without one (or with a wrong one) may change nothing, and when the
API protects reads (FF_READ_KEY) sees nothing either; the key typed into the sidebar stays with that
session. No worker runs here: the runs the pages act on are written to the store directly, and a run
the form starts only waits in the queue.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import redis

from dashboard.access import READ_ONLY_KEY
from dashboard.client import READ_KEY_NEEDED, WRITE_KEY_NEEDED
from ffcore.config import RunConfig
from ffcore.experiment import ExperimentSpec
from tests.support.api import RunningApi, start_api
from tests.support.apptest import button, open_app, select_run, texts
from tests.support.fakes import tiny_model_bytes
from tests.support.mnist import png_bytes
from tests.support.store import TestStore

ACCESS_DB = 4  # a database of its own on the session's redis-server
KEY = "the-api-key"
READ_KEY = "the-read-key"
PAGES = (None, "views/live.py", "views/draw.py", "views/experiments.py")


@pytest.fixture(scope="module")
def access_redis_url(redis_server) -> str:
    return f"redis://{redis_server.host}:{redis_server.port}/{ACCESS_DB}"


@pytest.fixture(scope="module")
def keyed_api(access_redis_url: str) -> Iterator[RunningApi]:
    """Changes need KEY; reads are open."""
    with start_api(access_redis_url, api_key=KEY) as api:
        yield api


@pytest.fixture(scope="module")
def read_keyed_api(access_redis_url: str) -> Iterator[RunningApi]:
    """Changes need KEY; everything else KEY or READ_KEY."""
    with start_api(access_redis_url, api_key=KEY, env={"FF_READ_KEY": READ_KEY}) as api:
        yield api


@pytest.fixture
def store(access_redis_url: str) -> TestStore:
    redis.Redis.from_url(access_redis_url).flushdb()
    return TestStore.from_url(access_redis_url)


@pytest.fixture
def finished_run(store: TestStore) -> str:
    run_id = store.create_run(RunConfig.from_preset("quick"), preset="quick").id
    store.save_model(run_id, tiny_model_bytes())
    store.set_status(run_id, "succeeded", step=10, epoch=1, progress=1.0)
    return run_id


def runs_total(api: RunningApi) -> int:
    return httpx.get(f"{api.base_url}/runs", headers={"X-API-Key": KEY}, timeout=10).json()["total"]


@pytest.mark.slow
@pytest.mark.parametrize("key", [None, "not-the-key"])
def test_without_the_right_key_a_visitor_changes_nothing(
    keyed_api, point_dashboard_at, monkeypatch, store, finished_run, key
) -> None:
    monkeypatch.setenv("FF_API_KEY", KEY)  # the dashboard's environment has the key: it must not lend it
    point_dashboard_at(keyed_api.url)
    at = open_app(key=key)
    lock = WRITE_KEY_NEEDED if key is None else "The API did not accept your key"
    assert any(lock in text for text in texts(at.sidebar.warning))
    assert button(at, "Start run").disabled
    assert any(text.startswith(lock) for text in texts(at.info))
    select_run(at, finished_run)
    assert all(
        button(at, label).disabled for label in ("Run again", "Cancel", "Delete", "Save note and tags")
    )
    assert not button(at, "Watch live").disabled and not button(at, "Draw or upload").disabled
    assert runs_total(keyed_api) == 1 and store.get_run(finished_run).status == "succeeded"


@pytest.mark.slow
def test_the_key_typed_into_the_sidebar_changes_things_for_that_session_only(
    keyed_api, point_dashboard_at, store, finished_run
) -> None:
    point_dashboard_at(keyed_api.url)
    at = open_app(key=KEY)
    assert "Your key may change things." in texts(at.sidebar.success)
    assert not button(at, "Start run").disabled
    at.text_input(key="form_quick_hidden").set_value("50, 50")
    button(at, "Start run").click().run()
    assert not at.exception and not at.error, texts(at.error)
    started = at.session_state["started_run"]
    assert store.get_run(started).status == "queued"

    # Another visitor, in a session of their own on the same server process, gets no key from the first.
    other = open_app()
    assert button(other, "Start run").disabled

    select_run(at, finished_run)
    button(at, "Delete").click().run()
    button(at, "Yes, delete").click().run()
    assert f"Deleted {finished_run}." in texts(at.success)
    assert store.get_run(finished_run) is None and runs_total(keyed_api) == 1


@pytest.mark.slow
def test_the_experiments_controls_need_the_key(keyed_api, point_dashboard_at, store) -> None:
    point_dashboard_at(keyed_api.url)
    experiment = store.experiments.create(
        ExperimentSpec.model_validate({"params": {"lr": {"values": [1e-3]}}})
    )
    store.experiments.finish(experiment.id, "succeeded")
    at = open_app("views/experiments.py")
    assert button(at, "Start experiment").disabled and button(at, "Delete").disabled
    assert WRITE_KEY_NEEDED in texts(at.caption)
    at.text_input(key="api_key").set_value(KEY).run()
    assert not button(at, "Start experiment").disabled
    button(at, "Delete").click().run()
    button(at, "Yes, delete").click().run()
    assert f"Deleted experiment {experiment.id}." in texts(at.success)
    assert store.experiments.get(experiment.id) is None


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_when_the_api_protects_reads_every_page_asks_for_the_key_first(
    read_keyed_api, point_dashboard_at, finished_run, page
) -> None:
    point_dashboard_at(read_keyed_api.url)
    at = open_app(page)
    assert READ_KEY_NEEDED in texts(at.warning)
    assert not at.dataframe and not at.selectbox and not at.button  # none of the page is drawn
    assert not at.error  # nothing was asked that the API refused
    at.text_input(key="api_key").set_value("not-the-key").run()
    assert "The API did not accept your key: enter the right one in the sidebar to see anything." in texts(
        at.warning
    )


@pytest.mark.slow
def test_with_the_read_key_a_visitor_sees_the_runs_and_changes_nothing(
    read_keyed_api, point_dashboard_at, store, finished_run
) -> None:
    point_dashboard_at(read_keyed_api.url)
    at = open_app(key=READ_KEY)
    assert not at.error, texts(at.error)
    assert finished_run in at.dataframe[0].value["run"].tolist()
    assert READ_ONLY_KEY in texts(at.sidebar.warning)
    assert button(at, "Start run").disabled
    select_run(at, finished_run)
    assert button(at, "Delete").disabled and not button(at, "Draw or upload").disabled
    # A prediction is a read (a POST that changes nothing): the read key does for it.
    draw = open_app("views/draw.py", key=READ_KEY)
    draw.segmented_control(key="draw_mode").set_value("Upload").run()
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 13:15] = 255  # a "1"
    draw.file_uploader(key="picture_upload").set_value(("one.png", png_bytes(digit), "image/png")).run()
    assert not draw.exception and not draw.error, texts(draw.error)
    assert "Predicted digit" in [metric.label for metric in draw.metric]
    assert store.get_run(finished_run).status == "succeeded"
