"""The Experiments page and the Runs page's experiment additions, run by AppTest against the fake API
(tests/dashboard/fake_api.py), which holds experiments in whatever state a test builds."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from ffcore.experiment import ExperimentSpec
from tests.dashboard.fake_api import FakeApi, outcome, setting
from tests.support.apptest import APP, button, chart_data, open_app, select_run, texts

PAGE = "views/experiments.py"
GRID = {"base": {"preset": "quick", "overrides": {"epochs": 2}}, "params": {"lr": {"values": [0.001, 0.002]}},
        "seeds": [0, 1], "prune": False}  # fmt: skip


def open_page(page: str | None = PAGE) -> AppTest:
    return open_app(page)


def posted(fake: FakeApi, path: str) -> list[dict]:
    """The bodies POSTed to `path`, oldest first."""
    return [json.loads(r.content or b"{}") for r in fake.requests if (r.method, r.url.path) == ("POST", path)]


def eval_records(errors: list[float]) -> list[dict]:
    """Validation records of one run, epochs 1, 2, ...; the softmax head a point worse than the scan."""
    return [
        {"id": f"{epoch}-0", "kind": "eval", "step": epoch * 100, "epoch": epoch, "split": "val",
         "error_scan": error, "error_softmax": error + 0.01}
        for epoch, error in enumerate(errors, 1)
    ]  # fmt: skip


def two_settings(fake: FakeApi, status: str = "running") -> dict:
    """lr 0.001 done over both seeds, lr 0.002 with one seed done and one running; curves for each run."""
    for run_id, errors in {"r0": [0.09, 0.05], "r1": [0.11, 0.07], "r2": [0.08, 0.03], "r3": [0.10]}.items():
        fake.add_run(run_id, experiment="e1", setting=int(run_id[1]) // 2, status="succeeded")
        fake.metrics[run_id] = eval_records(errors)
    fake.runs["r3"]["status"] = "running"
    fake.add_run("solo")  # a run of no experiment
    done = setting(0, {"lr": 0.001}, [
        outcome(0, run_id="r0", val_error_scan=0.05, val_error_softmax=0.06, test_error_scan=0.045),
        outcome(1, run_id="r1", val_error_scan=0.07, val_error_softmax=0.08, test_error_scan=0.065),
    ])  # fmt: skip
    half = setting(1, {"lr": 0.002}, [
        outcome(0, run_id="r2", val_error_scan=0.03, val_error_softmax=0.04),
        outcome(1, status="running", run_id="r3"),
    ], status="running")  # fmt: skip
    return fake.add_experiment(GRID, [done, half], id="e1", name="lr grid", status=status)


def test_a_chosen_experiment_shows_progress_the_results_table_and_its_charts(fake_api):
    two_settings(fake_api)
    at = open_page()
    assert texts(at.title) == ["Experiments"]
    listing = at.dataframe[0].value
    row = listing[listing["experiment"] == "e1"].iloc[0]
    assert (row["status"], row["settings"], row["progress"]) == ("running", "1/2", 0.5)
    assert row["runs"] == "0 queued · 1 running · 3 finished"
    # lr 0.001: 0.05 and 0.07 -> mean 6.00%, sample std sqrt(2 * 0.01²) / 1 = 1.41 points.
    assert row["best"] == "6.00% ± 1.41"
    assert at.selectbox(key="experiment_choice").value == "e1"
    results = at.dataframe[1].value
    assert results["lr"].tolist() == ["0.001", "0.002"]
    assert results["best"].tolist() == ["★ best", ""]  # the only setting whose seeds all succeeded
    assert results["runs"].tolist() == ["2/2", "1/2"]
    assert results["val error (scan)"].tolist() == ["6.00% ± 1.41", "3.00%"]
    assert results["test error (scan)"].tolist() == ["5.50% ± 1.41", "—"]
    assert any("Best setting so far: #0 {'lr': 0.001}" in text for text in texts(at.success))
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2  # the settings' parallel coordinates, the chosen setting's seeds
    data = chart_data(charts[1])
    seeds = next(frame for frame in data if "seed" in frame.columns)
    assert set(seeds["seed"]) == {0, 1}  # the best setting's seed runs r0 and r1
    means = next(frame for frame in data if "mean" in frame.columns)
    assert means["mean"].tolist() == pytest.approx([0.10, 0.06])  # (0.09+0.11)/2, (0.05+0.07)/2
    assert any(r.url.path.endswith("/experiments/e1/table.csv") for r in fake_api.requests)
    assert at.query_params["experiment"] == "e1"  # a link that opens this experiment


def test_the_seed_group_of_another_setting_and_head(fake_api):
    two_settings(fake_api)
    at = open_page()
    at.selectbox(key="seed_setting_e1").set_value(1).run()
    at.radio(key="seed_head").set_value("error_softmax").run()
    assert not at.exception
    seeds = next(frame for frame in chart_data(at.get("vega_lite_chart")[1]) if "seed" in frame.columns)
    # Setting 1's runs r2 (0.08, 0.03) and r3 (0.10), softmax head one point worse.
    assert seeds[["seed", "epoch"]].values.tolist() == [[0, 1], [0, 2], [1, 1]]
    assert seeds["error"].tolist() == pytest.approx([0.09, 0.04, 0.11])


def test_the_form_starts_a_grid_and_the_page_shows_it(fake_api):
    at = open_page()
    assert "No experiments yet" in " ".join(texts(at.info))
    at.number_input(key="exp_quick_epochs").set_value(1)
    at.text_input(key="exp_quick_hidden").set_value("50, 50")
    at.text_input(key="exp_more_overrides").set_value("negatives=hard")
    at.multiselect(key="exp_params").select("lr").run()
    assert not [t for t in at.toggle if t.key == "exp_range_lr"]  # grid search takes listed values only
    at.text_input(key="exp_values_lr").set_value("1e-3, 2e-3")
    at.text_input(key="exp_seeds").set_value("0, 1")
    at.checkbox(key="exp_prune").uncheck()
    at.text_input(key="exp_name").set_value("lr grid")
    at.button(key="exp_start").click().run()
    assert not at.exception and not at.error, texts(at.error)
    (body,) = posted(fake_api, "/api/v1/experiments")
    assert body == {
        "base": {"preset": "quick", "overrides": {"epochs": 1, "hidden": [50, 50], "negatives": "hard"}},
        "search": "grid", "params": {"lr": {"values": [0.001, 0.002]}}, "seeds": [0, 1],
        "objective": "val_error_scan", "max_parallel": 2, "prune": False, "name": "lr grid",
    }  # fmt: skip
    (new_id,) = fake_api.experiments
    assert f"Experiment **{new_id}** started: 2 setting(s) × 2 seed(s)." in texts(at.success)
    assert at.selectbox(key="experiment_choice").value == new_id
    assert "No setting has started yet." in texts(at.info)


def test_the_form_starts_a_seed_group_on_fashion_mnist(fake_api):
    at = open_page()
    dataset = at.selectbox(key="exp_quick_dataset")
    assert dataset.value == "mnist"  # the preset's
    assert dataset.options == ["MNIST (handwritten digits)", "Fashion-MNIST (clothing)"]
    dataset.set_value("fashion-mnist")
    at.multiselect(key="exp_params").select("lr").run()
    at.text_input(key="exp_values_lr").set_value("2e-3")
    at.button(key="exp_start").click().run()
    assert not at.exception and not at.error, texts(at.error)
    (body,) = posted(fake_api, "/api/v1/experiments")
    assert body["base"] == {"preset": "quick", "overrides": {"dataset": "fashion-mnist"}}
    (experiment,) = fake_api.experiments.values()
    spec = ExperimentSpec.model_validate(experiment["spec"])
    assert spec.base_config().dataset == "fashion-mnist"
    assert spec.run_config({"lr": 0.002}, seed=0).dataset == "fashion-mnist"  # what each run trains on


def test_a_range_is_offered_for_random_search_and_sent_with_its_log_scale(fake_api):
    at = open_page()
    at.radio(key="exp_search").set_value("random")
    at.multiselect(key="exp_params").select("lr").run()
    at.toggle(key="exp_range_lr").set_value(True).run()
    at.number_input(key="exp_low_lr").set_value(0.0001)
    at.number_input(key="exp_high_lr").set_value(0.01)
    at.checkbox(key="exp_log_lr").check()
    at.number_input(key="exp_max_trials").set_value(3)
    at.button(key="exp_start").click().run()
    assert not at.error, texts(at.error)
    (body,) = posted(fake_api, "/api/v1/experiments")
    assert body["search"] == "random" and body["max_trials"] == 3
    assert body["params"] == {"lr": {"low": 0.0001, "high": 0.01, "log": True}}


def test_the_apis_refusal_is_shown_as_it_comes_and_typing_mistakes_before_asking(fake_api):
    at = open_page()
    at.multiselect(key="exp_params").select("lr").run()
    at.text_input(key="exp_values_lr").set_value("0.001, 0.002")
    at.number_input(key="exp_max_trials").set_value(1)
    at.button(key="exp_start").click().run()
    errors = " ".join(texts(at.error))
    assert "Could not start the experiment: max_trials: the grid has 2 settings, more than 1" in errors
    assert not fake_api.experiments

    at.text_input(key="exp_seeds").set_value("0, one")
    at.button(key="exp_start").click().run()
    assert "seeds: one is not a whole number" in " ".join(texts(at.error))
    assert len(posted(fake_api, "/api/v1/experiments")) == 1  # the typo never reached the API


def test_cancel_then_delete_after_a_confirmation(fake_api):
    two_settings(fake_api)
    at = open_page()
    assert button(at, "Delete").disabled  # running: cancel first
    button(at, "Cancel").click().run()
    assert not at.exception
    assert fake_api.experiments["e1"]["status"] == "cancelled"
    assert "Cancelling experiment e1." in texts(at.success)
    assert button(at, "Cancel").disabled
    button(at, "Delete").click().run()
    assert any("cannot be undone" in text for text in texts(at.warning))
    assert "e1" in fake_api.experiments
    button(at, "Yes, delete").click().run()
    assert not at.exception
    assert "e1" not in fake_api.experiments
    assert "Deleted experiment e1." in texts(at.success)
    assert "No experiments yet" in " ".join(texts(at.info))


def test_the_runs_page_filters_by_experiment_and_shows_each_runs_setting(fake_api):
    two_settings(fake_api)
    at = open_page(None)
    table = at.dataframe[0].value
    assert set(table["run"]) == {"r0", "r1", "r2", "r3", "solo"}
    assert dict(zip(table["run"], table["experiment"], strict=True))["r2"] == "e1 #1"
    assert dict(zip(table["run"], table["experiment"], strict=True))["solo"] == ""
    picker = at.selectbox(key="experiment_filter")
    assert picker.value == "" and "e1" in picker.options[1]
    picker.set_value("e1").run()
    assert not at.exception
    assert set(at.dataframe[0].value["run"]) == {"r0", "r1", "r2", "r3"}
    assert any(
        r.url.params.get("experiment") == "e1" for r in fake_api.requests if r.url.path.endswith("/runs")
    )


def test_its_runs_links_to_the_runs_page_filtered_by_the_experiment(fake_api):
    two_settings(fake_api)
    at = open_page()
    [link] = [element for element in at.get("page_link") if element.proto.label == "Its runs"]
    assert link.proto.query_string == "experiment=e1"
    # Following it: the Runs page, its URL naming the experiment, lists that experiment's runs.
    at = open_app(None, query={"experiment": "e1"})
    assert texts(at.title) == ["Runs"]
    assert at.selectbox(key="experiment_filter").value == "e1"
    assert set(at.dataframe[0].value["run"]) == {"r0", "r1", "r2", "r3"}
    # Choosing "All runs" drops the experiment from the URL; a link to another experiment is followed.
    at.selectbox(key="experiment_filter").set_value("").run()
    assert "experiment" not in at.query_params and len(at.dataframe[0].value) == 5
    at.query_params["experiment"] = "e1"
    at.run()
    assert at.selectbox(key="experiment_filter").value == "e1"
    # A link naming no experiment there lists every run, and the URL stops naming it.
    at = open_app(None, query={"experiment": "gone"})
    assert at.selectbox(key="experiment_filter").value == "" and "experiment" not in at.query_params
    # The link leads where the Live page's "Go to Runs" (shown when there is no run to watch) does.
    fake_api.runs.clear()
    live = open_app("views/live.py")
    [runs_link] = [element for element in live.get("page_link") if element.proto.label == "Go to Runs"]
    assert link.proto.page_script_hash == runs_link.proto.page_script_hash != ""


def test_run_again_queues_a_copy_and_says_its_id(fake_api):
    fake_api.add_run("r9", config={"hidden": [50, 50], "epochs": 3})
    at = open_page(None)
    select_run(at, "r9")
    button(at, "Run again").click().run()
    assert not at.exception and not at.error
    (copy_id,) = [run_id for run_id in fake_api.runs if run_id != "r9"]
    assert posted(fake_api, "/api/v1/runs/r9/rerun") == [{}]
    assert fake_api.runs[copy_id]["config"] == {"hidden": [50, 50], "epochs": 3}
    assert f"Run **{copy_id}** is queued: r9 again, with its configuration." in texts(at.success)
    assert at.session_state["live_run_id"] == copy_id


def test_a_link_with_an_experiment_opens_that_one(fake_api):
    two_settings(fake_api)
    newer = fake_api.add_experiment(GRID, [], id="e2", status="succeeded")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.query_params["experiment"] = "e1"
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.selectbox(key="experiment_choice").options[0].startswith(newer["id"])  # newest first...
    assert at.selectbox(key="experiment_choice").value == "e1"  # ...but the link names e1
    assert at.dataframe[1].value["lr"].tolist() == ["0.001", "0.002"]
