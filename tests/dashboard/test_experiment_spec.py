"""How the Experiments form's text becomes a spec, and how results read in the tables.

The bodies the form builds are checked by the real ffcore.experiment.ExperimentSpec, the schema the
API validates them with.
"""

from __future__ import annotations

import pytest

from api.routes.options import config_schema
from dashboard import experiment_spec
from dashboard.experiment_spec import ParamInput
from dashboard.experiment_table import BEST_MARK, experiments_frame, results_frame
from dashboard.formatting import format_mean_std
from dashboard.models import Experiment, ExperimentSummary
from ffcore.experiment import ExperimentSpec
from fflab.settings import Settings

SCHEMA = config_schema(Settings())


def test_commas_inside_brackets_and_quotes_do_not_split():
    assert experiment_spec.split_top_level('1, [2, 3], "a,b" ,, x') == ["1", "[2, 3]", '"a,b"', "x"]
    assert experiment_spec.split_top_level("  ") == []


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("0.001, 2e-3, .5", "number", [0.001, 0.002, 0.5]),
        ("[500, 500], [1000, 1000, 1000]", None, [[500, 500], [1000, 1000, 1000]]),
        ("random, 'hard', \"random\"", None, ["random", "hard", "random"]),
        ("1e3, 250", "integer", [1000, 250]),
        ("true, false, null", None, [True, False, None]),
    ],
)
def test_listed_values_read_as_json_then_numbers_then_names(text, kind, expected):
    values = experiment_spec.parse_values(text, kind)
    assert values == expected
    assert [type(v) for v in values] == [type(v) for v in expected]


def test_no_values_and_bad_seeds_say_what_to_write():
    with pytest.raises(ValueError, match="at least one value"):
        experiment_spec.parse_values(" , ")
    assert experiment_spec.parse_seeds("0, 1 2") == [0, 1, 2]
    with pytest.raises(ValueError, match="seeds: x, 1.5 is not a whole number"):
        experiment_spec.parse_seeds("0, x, 1.5")
    with pytest.raises(ValueError, match="at least one seed"):
        experiment_spec.parse_seeds("")


def test_settings_kinds_and_the_settings_an_experiment_may_vary_come_from_the_schema():
    properties = SCHEMA["properties"]
    assert experiment_spec.setting_kind(properties["epochs"]) == "integer"
    assert experiment_spec.setting_kind(properties["lr"]) == "number"
    assert experiment_spec.setting_kind(properties["negatives"]) is None
    assert experiment_spec.setting_kind(properties["hidden"]) is None
    assert experiment_spec.setting_kind(properties["threshold"]) == "number"  # optional: anyOf with null
    names = experiment_spec.variable_settings(SCHEMA)
    assert {"lr", "hidden", "negatives", "epochs"} <= set(names)
    assert not {"seed", "device", "data_dir", "validation"} & set(names)


def test_a_param_is_listed_values_or_a_range_and_an_error_names_it():
    assert ParamInput("lr", values_text="0.001, 0.002").spec("number") == {"values": [0.001, 0.002]}
    ranged = ParamInput("batch_size", use_range=True, low=100.0, high=1000.0, log=True).spec("integer")
    assert ranged == {"low": 100, "high": 1000, "log": True} and isinstance(ranged["low"], int)
    with pytest.raises(ValueError, match="lr: give both ends of the range"):
        ParamInput("lr", use_range=True, low=0.001).spec("number")
    with pytest.raises(ValueError, match="^hidden: give at least one value"):
        ParamInput("hidden", values_text="").spec(None)


def test_the_body_the_form_builds_is_a_valid_experiment_spec():
    body = experiment_spec.experiment_body(
        preset="quick",
        overrides={"epochs": 1, "hidden": [50, 50]},
        params={"lr": {"values": [0.001, 0.002]}, "negatives": {"values": ["random", "hard"]}},
        search="grid",
        seeds=[0, 1],
        objective="val_error_softmax",
        max_trials=None,
        max_parallel=2,
        prune=False,
    )
    spec = ExperimentSpec.model_validate(body)
    assert spec.planned_trials() == 4 and spec.seeds == [0, 1] and spec.base_config().epochs == 1
    assert "max_trials" not in body
    tpe = experiment_spec.experiment_body(
        preset="quick", overrides={}, params={"lr": {"low": 1e-4, "high": 1e-2, "log": True}}, search="tpe",
        seeds=[0], objective="val_error_scan", max_trials=5, max_parallel=1, prune=True,
    )  # fmt: skip
    assert ExperimentSpec.model_validate(tpe).planned_trials() == 5
    with pytest.raises(ValueError, match="choose at least one setting"):
        experiment_spec.experiment_body(preset="quick", overrides={}, params={}, search="grid", seeds=[0],
                                        objective="val_error_scan", max_trials=None, max_parallel=1,
                                        prune=True)  # fmt: skip


def test_more_overrides_are_setting_equals_value():
    assert experiment_spec.parse_overrides("negatives=hard, hidden=[50, 50], lr = 1e-3") == {
        "negatives": "hard",
        "hidden": [50, 50],
        "lr": 0.001,
    }
    assert experiment_spec.parse_overrides("") == {}
    with pytest.raises(ValueError, match="'jitter' is not setting=value"):
        experiment_spec.parse_overrides("jitter")


def test_mean_and_std_read_as_percentages():
    assert format_mean_std(0.0123, 0.0005) == "1.23% ± 0.05"
    assert format_mean_std(0.0123, None) == "1.23%"
    assert format_mean_std(None, None) == "—"


def test_the_results_table_has_a_row_per_setting_with_mean_and_std_and_marks_the_best():
    def run(seed, scan, softmax, status="succeeded"):
        return {"seed": seed, "status": status, "val_error_scan": scan, "val_error_softmax": softmax}

    experiment = Experiment.model_validate(
        {
            "id": "e1", "status": "running", "objective": "val_error_scan", "params": ["lr", "hidden"],
            "seeds": [0, 1, 2],
            "table": {"best": 1, "settings": [
                {"trial": 0, "params": {"lr": 0.001, "hidden": [50, 50]}, "status": "running",
                 "runs": [run(0, 0.05, 0.06), run(1, None, None, "running")],
                 "stats": {"val_error_scan": {"mean": 0.05, "std": None, "n": 1}}},
                {"trial": 1, "params": {"lr": 0.002, "hidden": [50, 50]}, "status": "succeeded",
                 "runs": [run(0, 0.04, 0.05), run(1, 0.045, 0.05), run(2, 0.035, 0.05)],
                 # 0.04, 0.045, 0.035: mean 0.04, std sqrt((0 + 0.005² + 0.005²) / 2) = 0.005
                 "stats": {"val_error_scan": {"mean": 0.04, "std": 0.005, "n": 3},
                           "val_error_softmax": {"mean": 0.05, "std": 0.0, "n": 3}}},
            ]},
        }
    )  # fmt: skip
    frame = results_frame(experiment)
    errors = ["val error (scan)", "val error (softmax)", "test error (scan)", "test error (softmax)"]
    assert list(frame.columns) == ["best", "setting", "lr", "hidden", "status", "runs", *errors]
    first, second = frame.to_dict("records")
    assert (first["best"], second["best"]) == ("", BEST_MARK)
    assert (first["lr"], first["hidden"], first["runs"]) == ("0.001", "[50, 50]", "1/3")
    assert first["val error (scan)"] == "5.00%" and first["test error (scan)"] == "—"
    assert second["val error (scan)"] == "4.00% ± 0.50" and second["val error (softmax)"] == "5.00% ± 0.00"
    assert second["runs"] == "3/3"


def test_the_list_shows_progress_and_the_best_objective():
    summary = ExperimentSummary.model_validate(
        {"id": "e1", "name": "lr sweep", "status": "running", "params": ["lr"], "search": "grid",
         "progress": {"settings_planned": 4, "settings_finished": 1, "runs_queued": 2, "runs_running": 1,
                      "runs_finished": 5},
         "best_objective": {"mean": 0.0512, "std": 0.0012, "n": 3}}
    )  # fmt: skip
    row = experiments_frame([summary]).iloc[0]
    assert row["progress"] == 0.25 and row["settings"] == "1/4"
    assert row["runs"] == "2 queued · 1 running · 5 finished"
    assert row["best"] == "5.12% ± 0.12" and row["name"] == "lr sweep"
    assert summary.label == "lr sweep (e1) · grid over lr"
    empty = experiments_frame([])
    assert empty.empty and "progress" in empty.columns
