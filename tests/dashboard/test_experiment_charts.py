"""The Experiments page's frame and chart builders, on hand-built experiments and curves.

Every expected mean and standard deviation below is worked out by hand in the test (sample std,
n-1 in the denominator, as the API reports it).
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dashboard import charts, experiment_charts
from dashboard.models import Experiment


def eval_record(epoch: int, scan: float, softmax: float, final: bool = False) -> dict:
    """A validation record as the metrics route returns it (the final test one when `final`)."""
    split = {"split": "test", "final": True} if final else {"split": "val"}
    errors = {"error_scan": scan, "error_softmax": softmax}
    return {"kind": "eval", "step": epoch * 100, "epoch": epoch} | errors | split


def make_experiment(settings: list[dict], params: list[str], spec_params: dict | None = None) -> Experiment:
    return Experiment.model_validate(
        {
            "id": "e1",
            "status": "running",
            "objective": "val_error_scan",
            "params": params,
            "seeds": [0, 1],
            "spec": {"params": spec_params or {}},
            "table": {"settings": settings, "best": None},
        }
    )


def scored(params: dict, mean: float | None, status: str = "succeeded") -> dict:
    stats = {"val_error_scan": {"mean": mean, "std": None, "n": 0 if mean is None else 2}}
    return {"trial": 0, "params": params, "status": status, "runs": [], "stats": stats}


def test_numbers_are_scaled_from_the_smallest_to_the_largest():
    assert experiment_charts.axis_positions([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    assert experiment_charts.axis_positions([5, 5]) == [0.5, 0.5]


def test_a_log_range_is_scaled_on_a_log_scale():
    # log10: -4, -3, -2 -> evenly spaced; on a linear scale 1e-3 would sit near 0.09.
    positions = experiment_charts.axis_positions([1e-4, 1e-3, 1e-2], log=True)
    assert positions == pytest.approx([0.0, 0.5, 1.0])
    assert experiment_charts.axis_positions([1e-4, 1e-3, 1e-2])[1] == pytest.approx(
        (1e-3 - 1e-4) / (1e-2 - 1e-4)
    )


def test_names_and_lists_are_spread_evenly_in_their_listed_order():
    positions = experiment_charts.axis_positions(["hard", "random", "hard"], order=["random", "hard"])
    assert positions == [1.0, 0.0, 1.0]
    # Lists (hidden widths) are not numbers: spread in their text's order when none is listed.
    assert experiment_charts.axis_positions([[500, 500], [1000]]) == [1.0, 0.0]  # "[1000]" < "[500, 500]"


def test_parallel_frame_has_one_row_per_setting_and_axis_with_the_objective_last():
    experiment = make_experiment(
        [
            scored({"lr": 0.001, "negatives": "random"}, 0.05),
            scored({"lr": 0.004, "negatives": "hard"}, 0.03),
            scored({"lr": 0.002, "negatives": "hard"}, 0.04),
            scored({"lr": 0.003, "negatives": "random"}, None, status="running"),  # no mean yet: left out
        ],
        params=["lr", "negatives"],
        spec_params={"negatives": {"values": ["random", "hard"]}},
    )
    frame = experiment_charts.parallel_frame(experiment)
    assert list(frame.columns) == experiment_charts.PARALLEL_COLUMNS
    assert sorted(frame["setting"].unique()) == [0, 1, 2]
    position = {(row.setting, row.axis): row.position for row in frame.itertuples()}
    assert position[(0, "lr")] == 0.0 and position[(1, "lr")] == 1.0
    assert position[(2, "lr")] == pytest.approx(1 / 3)
    assert (position[(0, "negatives")], position[(1, "negatives")]) == (0.0, 1.0)
    objective = "val_error_scan (mean)"
    # Means 0.05, 0.03, 0.04 -> (m - 0.03) / 0.02.
    assert [position[(i, objective)] for i in range(3)] == pytest.approx([1.0, 0.0, 0.5])
    assert set(frame[frame["setting"] == 1]["objective"]) == {0.03}
    assert frame[(frame["setting"] == 0) & (frame["axis"] == objective)]["value"].item() == "5.00%"


def test_parallel_frame_is_empty_until_a_setting_has_a_mean():
    experiment = make_experiment([scored({"lr": 0.001}, None, status="running")], params=["lr"])
    assert experiment_charts.parallel_frame(experiment).empty


def test_parallel_chart_keeps_the_axes_in_order_and_colours_by_the_objective():
    experiment = make_experiment([scored({"lr": 0.001}, 0.05), scored({"lr": 0.002}, 0.03)], params=["lr"])
    frame = experiment_charts.parallel_frame(experiment)
    axes = ["lr", "val_error_scan (mean)"]
    spec = experiment_charts.parallel_chart(frame, axes).to_dict()
    rules, lines, points, labels = spec["layer"]
    assert lines["mark"]["type"] == "line" and lines["encoding"]["detail"]["field"] == "setting"
    assert lines["encoding"]["x"]["sort"] == axes
    assert lines["encoding"]["color"]["field"] == "objective"
    assert lines["encoding"]["color"]["scale"] == {"scheme": "redyellowgreen", "reverse": True}
    assert [row["axis"] for row in spec["datasets"][rules["data"]["name"]]] == axes
    end_labels = {
        (row["axis"], row["position"]): row["label"] for row in spec["datasets"][labels["data"]["name"]]
    }
    assert end_labels[("lr", 0.0)] == "0.001" and end_labels[("lr", 1.0)] == "0.002"
    assert end_labels[("val_error_scan (mean)", 0.0)] == "3.00%"


def seed_evals() -> dict[int, pd.DataFrame]:
    """Three seeds, two validations each, plus a final test evaluation that the curves leave out."""
    return {
        0: charts.eval_frame(
            [eval_record(1, 0.10, 0.20), eval_record(2, 0.06, 0.08), eval_record(2, 0.99, 0.99, final=True)]
        ),  # fmt: skip
        1: charts.eval_frame([eval_record(1, 0.12, 0.22), eval_record(2, 0.04, 0.07)]),
        2: charts.eval_frame([eval_record(1, 0.14, 0.24), eval_record(2, 0.05, 0.09)]),
    }


def test_seed_curves_have_one_row_per_seed_and_validation_without_the_final_test():
    curves = experiment_charts.seed_curves_frame(seed_evals(), "error_scan")
    assert list(curves.columns) == experiment_charts.CURVE_COLUMNS
    assert len(curves) == 6 and 0.99 not in curves["error"].tolist()
    assert curves[curves["seed"] == 1]["error"].tolist() == [0.12, 0.04]
    softmax = experiment_charts.seed_curves_frame(seed_evals(), "error_softmax")
    assert softmax[softmax["seed"] == 2]["error"].tolist() == [0.24, 0.09]


def test_the_band_is_mean_and_sample_std_or_min_and_max_per_epoch():
    curves = experiment_charts.seed_curves_frame(seed_evals(), "error_scan")
    by_std = experiment_charts.seed_band_frame(curves, "std").set_index("epoch")
    # Epoch 1: 0.10, 0.12, 0.14 -> mean 0.12, deviations ±0.02 and 0: std = sqrt((0.0004 * 2) / 2) = 0.02.
    # Epoch 2: 0.06, 0.04, 0.05 -> mean 0.05, std = sqrt((0.0001 + 0.0001 + 0) / 2) = 0.01.
    assert by_std.loc[1.0, "mean"] == pytest.approx(0.12) and by_std.loc[1.0, "std"] == pytest.approx(0.02)
    assert by_std.loc[2.0, "mean"] == pytest.approx(0.05) and by_std.loc[2.0, "std"] == pytest.approx(0.01)
    assert by_std.loc[2.0, "lower"] == pytest.approx(0.04) and by_std.loc[2.0, "upper"] == pytest.approx(0.06)
    assert by_std["n"].tolist() == [3, 3]
    by_range = experiment_charts.seed_band_frame(curves, "minmax").set_index("epoch")
    assert (by_range.loc[1.0, "lower"], by_range.loc[1.0, "upper"]) == (0.10, 0.14)
    assert (by_range.loc[2.0, "min"], by_range.loc[2.0, "max"]) == (0.04, 0.06)


def test_one_seed_has_no_spread_and_an_unknown_band_is_refused():
    curves = experiment_charts.seed_curves_frame({3: seed_evals()[0]}, "error_scan")
    band = experiment_charts.seed_band_frame(curves, "std")
    assert band["std"].tolist() == [0.0, 0.0] and band["lower"].tolist() == band["mean"].tolist()
    with pytest.raises(ValueError, match="band must be one of minmax, std"):
        experiment_charts.seed_band_frame(curves, "iqr")


def test_no_validation_yet_gives_empty_frames():
    empty = experiment_charts.seed_curves_frame({0: charts.eval_frame([])})
    assert empty.empty and list(empty.columns) == experiment_charts.CURVE_COLUMNS
    assert experiment_charts.seed_band_frame(empty).empty
    assert experiment_charts.seed_curves_frame({}).empty


def test_seed_curves_chart_layers_the_band_each_seed_and_the_mean():
    curves = experiment_charts.seed_curves_frame(seed_evals(), "error_scan")
    bands = experiment_charts.seed_band_frame(curves, "std")
    spec = experiment_charts.seed_curves_chart(curves, bands, "error_scan").to_dict()
    band, seeds, mean = spec["layer"]
    assert band["mark"]["type"] == "area"
    assert (band["encoding"]["y"]["field"], band["encoding"]["y2"]["field"]) == ("lower", "upper")
    assert seeds["encoding"]["color"]["field"] == "seed"
    assert {row["seed"] for row in spec["datasets"][seeds["data"]["name"]]} == {0, 1, 2}
    mean_rows = spec["datasets"][mean["data"]["name"]]
    assert [row["mean"] for row in mean_rows] == pytest.approx([0.12, 0.05])
    assert mean["mark"]["color"] == experiment_charts.MEAN_COLOUR
    assert seeds["encoding"]["y"]["title"] == "validation error (label scan)"
    assert not any(math.isnan(row["std"]) for row in mean_rows)
    # runs that keep no validation set: the same curves, named for what they measure
    on_test = experiment_charts.seed_curves_chart(curves, bands, "error_softmax", "test error").to_dict()
    assert on_test["layer"][1]["encoding"]["y"]["title"] == "test error (softmax head)"
