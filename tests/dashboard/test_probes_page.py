"""Probes on the Live page and Fashion-MNIST on the Runs and Draw pages, run by Streamlit's AppTest against
the real `python -m api` on the real redis-server.

No worker runs here: each run is written to the store as a worker writes it, with a real ffcore model and
eval records whose probes ffcore.evaluation computed. The API protects reads (FF_READ_KEY), so every
request the pages make, the receptive-field picture's included, must carry the key the visitor typed in.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis
import torch
from streamlit.testing.v1 import AppTest

from dashboard.client import ApiClient
from dashboard.probes_view import NO_PROBES
from ffcore.checkpoint import save_model
from ffcore.config import CLASS_NAMES, RunConfig
from ffcore.data import Split
from ffcore.evaluation import evaluate
from ffcore.model import FFNetwork
from tests.dashboard.fashion import fashion_test_images
from tests.support import apptest
from tests.support.api import RunningApi, start_api
from tests.support.apptest import button, chart_specs, texts
from tests.support.mnist import png_bytes
from tests.support.store import TestStore

PROBES_DB = 5  # a database of its own on the session's redis-server
KEY = "probes-api-key"
READ_KEY = "probes-read-key"
HIDDEN = [40, 30]


@pytest.fixture(scope="module")
def probes_redis_url(redis_server) -> str:
    return f"redis://{redis_server.host}:{redis_server.port}/{PROBES_DB}"


@pytest.fixture(scope="module")
def api(probes_redis_url: str) -> Iterator[RunningApi]:
    with start_api(probes_redis_url, api_key=KEY, env={"FF_READ_KEY": READ_KEY}) as running:
        yield running


@pytest.fixture
def store(probes_redis_url: str, api, point_dashboard_at) -> TestStore:
    redis.Redis.from_url(probes_redis_url).flushdb()
    point_dashboard_at(api.url)
    return TestStore.from_url(probes_redis_url)


def trained_model(dataset: str = "mnist", seed: int = 0) -> tuple[FFNetwork, RunConfig]:
    config = RunConfig.from_preset("quick", dataset=dataset, hidden=HIDDEN, epochs=2)
    model = FFNetwork(config)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    return model, config


def eval_records(model: FFNetwork, probes: bool = True) -> list[dict]:
    """Two validation records and the final test one, as the Trainer writes them, on random images."""
    generator = torch.Generator().manual_seed(1)
    split = Split(
        torch.rand(200, 784, generator=generator), torch.randint(0, 10, (200,), generator=generator)
    )
    records = []
    for epoch, split_name in ((1, "val"), (2, "val"), (2, "test")):
        errors = evaluate(model, split, probes=probes)
        records.append({"kind": "eval", "step": 50 * epoch, "epoch": epoch, "split": split_name, **errors})
        with torch.no_grad():  # the next epoch's model differs, and so do its probes
            model.layers[0].weight.mul_(1.5)
    records[-1]["final"] = True
    return records


def finished_run(
    store: TestStore, dataset: str = "mnist", probes: bool = True, with_model: bool = True
) -> str:
    """A succeeded run with train records, eval records (with probes unless `probes` is False) and a model."""
    model, config = trained_model(dataset)
    run_id = store.create_run(config, preset="quick").id
    store.set_status(run_id, "running", started_at=1.0, device="cpu")
    layers = [{"layer": layer, "goodness_pos": 60.0, "goodness_neg": 20.0, "threshold": 40.0, "ff_loss": 0.5,
               "ff_accuracy": 0.8} for layer in range(len(HIDDEN))]  # fmt: skip
    train = [
        {"kind": "train", "step": step, "epoch": step / 50, "layers": layers} for step in range(10, 101, 10)
    ]
    store.append_metrics(run_id, train + eval_records(model, probes))
    if with_model:
        store.save_model(run_id, save_model(model, config))
    store.set_status(run_id, "succeeded", step=100, epoch=2, progress=1.0, total_steps=100)
    return run_id


def open_app(page: str | None = None, query: dict | None = None, **session) -> AppTest:
    """A visitor who typed the read key into the sidebar, on `page` (with the URL's `query`)."""
    return apptest.open_app(page, key=READ_KEY, query=query, **session)


def open_probes(run_id: str) -> AppTest:
    """The Live page of `run_id`, switched to its Probes view."""
    at = open_app("views/live.py", live_run_id=run_id)
    at.segmented_control(key="live_view").set_value("Probes").run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_the_live_page_shows_each_layers_probes_and_the_receptive_fields(store, api):
    run_id = finished_run(store)
    at = open_app("views/live.py", live_run_id=run_id)
    assert at.segmented_control(key="live_view").value == "Training"  # the curves first, without probes
    assert "Goodness of positive vs negative data, per layer" in texts(at.subheader)
    assert not any("own label scan" in spec for spec in chart_specs(at)) and not at.image
    at.segmented_control(key="live_view").set_value("Probes").run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.query_params["view"] == "probes"  # a link to this view
    assert "Goodness of positive vs negative data, per layer" not in texts(at.subheader)
    assert "Probes: what each layer has learned" in texts(at.subheader)
    specs = chart_specs(at)
    errors = [spec for spec in specs if "own label scan" in spec]
    assert len(errors) == 1 and "linear probe" in errors[0]
    bands = [spec for spec in specs if '"q25"' in spec and '"q95"' in spec]
    assert len(bands) == len(HIDDEN)  # one per layer
    assert all("positive data" in spec and "negative data" in spec for spec in bands)
    final = next(frame.value for frame in at.dataframe if "linear probe" in frame.value.columns)
    assert final["layer"].tolist() == ["layer 0", "layer 1"]
    with httpx.Client(base_url=api.base_url, headers={"X-API-Key": READ_KEY}) as http:
        records = http.get(f"/runs/{run_id}/metrics", params={"kind": "eval"}).json()["records"]
    test_layers = records[-1]["layers"]
    assert final["own label scan"].tolist() == pytest.approx([layer["error_scan"] for layer in test_layers])
    # The receptive fields: one picture, fetched with the visitor's key (the API refuses reads without).
    (image,) = at.image
    assert at.segmented_control(key="field_count").value == 64
    assert f"The {HIDDEN[0]} units with the largest input weights" in image.proto.imgs[0].caption  # all 40
    assert image.proto.imgs[0].url.endswith(".png")  # kept as the API's PNG, not re-encoded


@pytest.mark.slow
def test_fewer_units_change_only_the_picture_and_the_client_reads_the_same_fields(store, api):
    run_id = finished_run(store)
    at = open_app("views/live.py", query={"run": run_id, "view": "probes"})  # a link to the Probes view
    assert "Probes: what each layer has learned" in texts(at.subheader)
    at.segmented_control(key="field_count").set_value(16).run()
    assert not at.exception and not at.error
    assert "The 16 units" in at.image[0].proto.imgs[0].caption
    client = ApiClient(api.url, api_key=READ_KEY)
    fields = client.receptive_fields(run_id, count=16)
    assert len(fields.units) == len(fields.weights) == 16 and fields.model_step == 100
    assert len(fields.weights[0]) == 28 and len(fields.label_weights[0]) == 10
    png = client.receptive_fields_png(run_id, count=16, scale=2)
    assert png.startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_run_recorded_before_probes_gets_a_note_not_an_error(store):
    old = finished_run(store, probes=False)
    at = open_probes(old)
    assert not at.error, texts(at.error)
    assert NO_PROBES in texts(at.info)
    assert not [spec for spec in chart_specs(at) if "own label scan" in spec]
    assert len(at.image) == 1  # its model still shows its receptive fields

    without_model = finished_run(store, with_model=False)
    at = open_probes(without_model)
    assert not at.error, texts(at.error)
    assert any(text.startswith("No receptive fields yet") for text in texts(at.caption))
    assert not at.image


@pytest.mark.slow
def test_the_runs_table_names_each_runs_data_set(store):
    fashion, digits = finished_run(store, "fashion-mnist"), finished_run(store)
    at = open_app()
    table = at.dataframe[0].value
    shown = dict(zip(table["run"], table["dataset"], strict=True))
    assert shown == {fashion: "Fashion-MNIST", digits: "MNIST"}


@pytest.mark.slow
def test_the_form_starts_a_fashion_mnist_run(store):
    at = open_app()
    at.text_input(key="api_key").set_value(KEY).run()  # starting a run needs the API key
    at.selectbox(key="form_quick_dataset").set_value("fashion-mnist")
    at.text_input(key="form_quick_hidden").set_value("32, 32")
    at.checkbox(key="form_quick_flip").check()  # garments may be mirrored
    button(at, "Start run").click().run()
    assert not at.exception and not at.error, texts(at.error)
    run = store.get_run(at.session_state["started_run"])
    assert run.config.dataset == "fashion-mnist" and run.config.hidden == [32, 32]
    assert run.config.flip and run.config.augment == "none"  # what was left alone is the preset's


@pytest.mark.slow
def test_the_draw_page_names_the_garment_in_an_uploaded_picture(store, api, fashion_dir):
    run_id = finished_run(store, "fashion-mnist")
    at = open_app("views/draw.py", draw_run_id=run_id)
    assert not at.get("segmented_control")  # no canvas to draw garments on: the upload only
    picture = png_bytes(fashion_test_images(fashion_dir, 1)[0], size=84)
    at.file_uploader(key="picture_upload").set_value(("boot.png", picture, "image/png")).run()
    assert not at.exception and not at.error, texts(at.error)
    expected = ApiClient(api.url, api_key=READ_KEY).predict_file(run_id, picture)
    shown = {metric.label: metric.value for metric in at.metric}
    assert shown["Predicted class"] == expected.scan_class
    assert expected.scan_class in CLASS_NAMES["fashion-mnist"]
    assert any(f"**{expected.head_class}**" in text for text in texts(at.caption))
    goodness, probabilities = chart_specs(at)
    assert all('"Ankle boot"' in spec and '"T-shirt/top"' in spec for spec in (goodness, probabilities))
