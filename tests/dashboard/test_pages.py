"""The pages, run by Streamlit's AppTest against the real API server, worker and redis-server."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from dashboard.client import ApiClient
from dashboard.live_feed import MetricsFeed
from tests.support.api import post_run, wait_for_run_status
from tests.support.apptest import button, open_app, select_run, texts
from tests.support.mnist import mnist_test_images, png_bytes
from tests.support.waiting import wait_for

EXPERIMENT_TIMEOUT_S = 420


def test_every_page_says_when_the_api_is_unreachable(point_dashboard_at):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    point_dashboard_at(f"http://127.0.0.1:{port}")
    for page in (None, "views/live.py", "views/draw.py", "views/experiments.py"):
        at = open_app(page)
        errors = " ".join(texts(at.error))
        assert "Cannot reach the FF Lab API" in errors and f"127.0.0.1:{port}" in errors, page


@pytest.mark.slow
@pytest.mark.timeout(900)
class TestWithTheRealApi:
    def test_runs_page_shows_cards_and_the_table(self, stack, point_dashboard_at):
        point_dashboard_at(stack.api_url)
        at = open_app()
        assert texts(at.title) == ["Runs"]
        assert not at.sidebar.text_input  # an API that asks no key: no key field, the pages' whole width
        cards = {metric.label: metric.value for metric in at.metric}
        assert int(cards["Succeeded"]) >= 1
        assert "cpu" in cards["Workers"]
        table = at.dataframe[0].value
        row = table[table["run"] == stack.trained_run].iloc[0]
        with stack.http() as http:
            run = http.get(f"/runs/{stack.trained_run}").json()
        assert row["status"] == "succeeded" and row["network"] == "2x200" and row["device"] == "cpu"
        assert row["error_scan"] == pytest.approx(run["test_error_scan"])
        assert row["progress"] == pytest.approx(1.0)

    def test_the_forms_presets_and_bounds_are_the_apis(self, stack, point_dashboard_at):
        point_dashboard_at(stack.api_url)
        with stack.http() as http:
            options = http.get("/run-options").json()
        at = open_app()
        fields = options["config_schema"]["properties"]
        shown = [label.split(" — ")[0] for label in at.selectbox(key="form_preset").options]
        assert shown == list(options["presets"])
        assert at.selectbox(key="form_preset").value == "quick"
        quick = options["presets"]["quick"]
        epochs = at.number_input(key="form_quick_epochs")
        assert epochs.value == quick["epochs"] and epochs.max == fields["epochs"]["maximum"]
        hidden = at.text_input(key="form_quick_hidden")
        assert hidden.value == ", ".join(map(str, quick["hidden"]))
        layers, units = fields["hidden"]["maxItems"], fields["hidden"]["items"]["maximum"]
        assert f"Allowed: 1 to {layers} values, each 1 to {units:,}." in hidden.help

    def test_the_form_shows_the_apis_validation_message_and_starts_nothing(self, stack, point_dashboard_at):
        point_dashboard_at(stack.api_url)
        with stack.http() as http:
            before = http.get("/runs").json()["total"]
        at = open_app()
        at.text_input(key="form_quick_hidden").set_value("500, 9000")
        at.button[0].click().run()  # the form's submit button
        assert not at.exception
        errors = " ".join(texts(at.error))
        assert "Could not start the run" in errors and "at most 4096 units per layer" in errors
        with stack.http() as http:
            assert http.get("/runs").json()["total"] == before

    def test_start_cancel_and_delete_a_run_from_the_runs_page(self, stack, point_dashboard_at):
        point_dashboard_at(stack.api_url)
        at = open_app()
        at.text_input(key="form_quick_hidden").set_value("50, 50")
        at.number_input(key="form_quick_epochs").set_value(5)
        at.button[0].click().run()
        assert not at.exception and not at.error
        run_id = at.session_state["started_run"]
        assert f"Run **{run_id}** is queued." in texts(at.success)
        with stack.http() as http:
            run = http.get(f"/runs/{run_id}").json()
        assert (
            run["preset"] == "quick" and run["config"]["hidden"] == [50, 50] and run["config"]["epochs"] == 5
        )

        select_run(at, run_id)
        button(at, "Cancel").click().run()
        assert not at.error
        with stack.http() as http:
            assert wait_for_run_status(http, run_id, {"cancelled"}, timeout_s=30)["status"] == "cancelled"

        at.run()  # the page now knows the run stopped: Delete asks for confirmation first
        button(at, "Delete").click().run()
        assert any("cannot be undone" in text for text in texts(at.warning))
        button(at, "Yes, delete").click().run()
        assert f"Deleted {run_id}." in texts(at.success)
        assert not any(run_id in option for option in at.multiselect(key="selected_runs").options)
        with stack.http() as http:
            assert http.get(f"/runs/{run_id}").status_code == 404

    def test_the_table_shows_tags_filters_by_one_and_a_runs_note_and_tags_can_be_edited(
        self, stack, point_dashboard_at
    ):
        point_dashboard_at(stack.api_url)
        with stack.http() as http:
            http.patch(
                f"/runs/{stack.trained_run}", json={"tags": ["pages", "trained"], "note": "from the test"}
            )
            other = post_run(http, {"preset": "quick", "overrides": {"epochs": 1}, "tags": ["elsewhere"]})
            http.post(f"/runs/{other}/cancel")
        at = open_app()
        table = at.dataframe[0].value
        assert table[table["run"] == stack.trained_run].iloc[0]["tags"] == "pages, trained"
        assert table[table["run"] == other].iloc[0]["tags"] == "elsewhere"

        at.text_input(key="tag_filter").set_value("trained").run()
        assert not at.exception and not at.error
        assert at.dataframe[0].value["run"].tolist() == [stack.trained_run]
        at.text_input(key="tag_filter").set_value("no-such-tag").run()
        assert "No run is tagged **no-such-tag**." in texts(at.info)
        at.text_input(key="tag_filter").set_value("").run()

        select_run(at, stack.trained_run)
        assert "**Note:** from the test" in texts(at.markdown)
        made = next(frame.value for frame in at.dataframe if "made with" in frame.value.columns)
        provenance = dict(zip(made["made with"], made["value"], strict=True))
        assert provenance["device"] == "cpu" and provenance["torch_version"]
        at.text_input(key=f"edit_tags_{stack.trained_run}").set_value("pages, edited")
        at.text_area(key=f"edit_note_{stack.trained_run}").set_value("changed here")
        button(at, "Save note and tags").click().run()
        assert not at.exception and not at.error
        with stack.http() as http:
            run = http.get(f"/runs/{stack.trained_run}").json()
        assert (run["tags"], run["note"]) == (["pages", "edited"], "changed here")

    def test_a_finished_run_loads_thinned_and_then_only_what_is_new(self, stack):
        client = ApiClient(stack.api_url)
        feed = MetricsFeed(stack.trained_run, initial_points=3)
        feed.refresh(client)
        full = client.metrics(stack.trained_run, limit=10_000).records
        assert len(feed.of_kind("train")) == 3 < len([r for r in full if r["kind"] == "train"])
        assert feed.of_kind("eval") == [r for r in full if r["kind"] == "eval"]
        assert feed.cursor == full[-1]["id"]
        assert feed.refresh(client) == 0 and feed.cursor == full[-1]["id"]

    def test_the_live_page_grows_while_the_run_trains(self, stack, point_dashboard_at):
        point_dashboard_at(stack.api_url)
        with stack.http() as http:
            run_id = post_run(http, {"preset": "quick", "overrides": {"hidden": [100, 100], "epochs": 2,
                                                                     "batch_size": 250}})  # fmt: skip
            wait_for_run_status(http, run_id, {"running"}, timeout_s=60)
        at = open_app("views/live.py", live_run_id=run_id)
        feed = at.session_state["live_feeds"][run_id]
        first_records = list(feed.records)
        counts = [len(first_records)]
        # Each rerun stands for one tick of the page's timer: it must only add records.
        while len(counts) < 40 and (counts[-1] == counts[0] or len(feed.of_kind("eval")) == 0):
            at.run()
            assert not at.exception and not at.error
            assert at.session_state["live_feeds"][run_id] is feed  # the series is kept, not reloaded
            counts.append(len(feed.records))
            time.sleep(0.5)
        assert counts[-1] > counts[0]
        assert feed.records[: len(first_records)] == first_records
        ids = [record["id"] for record in feed.records]
        assert ids == sorted(set(ids), key=lambda i: tuple(map(int, i.split("-"))))  # no duplicates, in order
        subheaders = texts(at.subheader)
        assert "Goodness of positive vs negative data, per layer" in subheaders
        assert "Validation error per epoch" in subheaders  # the quick preset keeps a validation set
        charts = at.get("vega_lite_chart")
        assert len(charts) >= 4  # two layers, loss, accuracy
        assert "positive data" in charts[0].proto.spec and "negative data" in charts[0].proto.spec
        with stack.http() as http:
            http.post(f"/runs/{run_id}/cancel")
            wait_for_run_status(http, run_id, {"cancelled", "succeeded"}, timeout_s=30)

    def test_a_run_without_a_validation_set_shows_its_curve_as_test_error(self, stack, point_dashboard_at):
        point_dashboard_at(stack.api_url)
        overrides = {"hidden": [50, 50], "epochs": 2, "batch_size": 500, "validation": "none"}
        with stack.http() as http:
            run_id = post_run(http, {"preset": "quick", "overrides": overrides})
            assert wait_for_run_status(http, run_id, {"succeeded"}, timeout_s=120)["status"] == "succeeded"
        at = open_app("views/live.py", live_run_id=run_id)
        assert not at.exception and not at.error
        subheaders = texts(at.subheader)
        assert "Test error per epoch" in subheaders and "Validation error per epoch" not in subheaders
        assert any("keeps no validation set" in caption for caption in texts(at.caption))

    def test_the_draw_page_predicts_an_uploaded_mnist_digit(self, stack, point_dashboard_at, mnist_dir):
        point_dashboard_at(stack.api_url)
        at = open_app("views/draw.py", draw_run_id=stack.trained_run)
        assert any("Draw a digit" in text for text in texts(at.info))  # the empty canvas: a hint
        digit = mnist_test_images(mnist_dir, 1)[0]
        image = png_bytes(digit, size=112)
        at.segmented_control(key="draw_mode").set_value("Upload").run()
        at.file_uploader(key="picture_upload").set_value(("seven.png", image, "image/png")).run()
        assert not at.exception and not at.error
        expected = ApiClient(stack.api_url).predict_file(stack.trained_run, image)
        shown = {metric.label: metric.value for metric in at.metric}
        assert shown["Predicted digit"] == str(expected.scan_label)
        assert len(at.image) == 1
        assert len(at.get("vega_lite_chart")) == 2  # goodness per label and layer, head probabilities

    def test_an_image_without_ink_gets_a_hint_not_an_error(self, stack, point_dashboard_at):
        point_dashboard_at(stack.api_url)
        at = open_app("views/draw.py", draw_run_id=stack.trained_run)
        at.segmented_control(key="draw_mode").set_value("Upload").run()
        blank = png_bytes(np.zeros((28, 28), np.uint8))
        at.file_uploader(key="picture_upload").set_value(("blank.png", blank, "image/png")).run()
        assert not at.exception and not at.error
        assert any("ink" in text for text in texts(at.info))

    def test_an_experiment_on_the_experiments_page_and_its_runs_on_the_runs_page(
        self, stack, point_dashboard_at
    ):
        point_dashboard_at(stack.api_url)
        tiny = {"hidden": [32, 32], "batch_size": 1000, "epochs": 1}
        spec = {"base": {"preset": "quick", "overrides": tiny}, "params": {"lr": {"values": [0.002]}},
                "seeds": [0, 1], "name": "pages"}  # fmt: skip
        with stack.http() as http:
            response = http.post("/experiments", json=spec)
            assert response.status_code == 201, response.text
            experiment_id = response.json()["id"]
            experiment = wait_for(
                lambda: (
                    (answer := http.get(f"/experiments/{experiment_id}").json())["status"] != "running"
                    and answer
                ),
                EXPERIMENT_TIMEOUT_S,
                f"experiment {experiment_id} to end",
                interval_s=1.0,
            )
            table_csv = http.get(f"/experiments/{experiment_id}/table.csv").text
        assert experiment["status"] == "succeeded", experiment

        at = open_app("views/experiments.py")
        assert at.selectbox(key="experiment_choice").value == experiment_id  # the newest
        results = next(frame.value for frame in at.dataframe if "val error (scan)" in frame.value.columns)
        (setting,) = experiment["table"]["settings"]
        for column, name in (
            ("val error (scan)", "val_error_scan"),
            ("test error (softmax)", "test_error_softmax"),
        ):
            stats = setting["stats"][name]
            assert results.iloc[0][column] == f"{stats['mean'] * 100:.2f}% ± {stats['std'] * 100:.2f}"
        assert (results.iloc[0]["best"], results.iloc[0]["runs"]) == ("★ best", "2/2")
        assert table_csv.startswith("trial,status,lr,")

        at = open_app()
        at.selectbox(key="experiment_filter").set_value(experiment_id).run()
        assert not at.exception and not at.error
        table = at.dataframe[0].value
        run_ids = {run["run_id"] for run in setting["runs"]}
        assert set(table["run"]) == run_ids
        assert table["experiment"].tolist() == [f"{experiment_id} #0"] * 2

        original = sorted(run_ids)[0]
        select_run(at, original)
        button(at, "Run again").click().run()
        assert not at.exception and not at.error
        copy_id = at.session_state["live_run_id"]
        assert any(f"Run **{copy_id}** is queued" in text for text in texts(at.success))
        with stack.http() as http:
            copy, source = http.get(f"/runs/{copy_id}").json(), http.get(f"/runs/{original}").json()
            assert copy["config"] == source["config"] and copy_id != original
            http.post(f"/runs/{copy_id}/cancel")  # leave the worker to the other tests
            wait_for_run_status(http, copy_id, {"cancelled", "succeeded"}, timeout_s=60)
