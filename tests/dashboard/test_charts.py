"""Chart builders: the tables they draw from and the specs they produce (no Streamlit needed)."""

from __future__ import annotations

import pandas as pd

from dashboard import charts


def train_record(step: int, epoch: float, layers: int = 2) -> dict:
    return {
        "kind": "train",
        "step": step,
        "epoch": epoch,
        "layers": [
            {
                "layer": layer,
                "goodness_pos": 100.0 * (layer + 1) + step,
                "goodness_neg": 50.0 * (layer + 1) - step / 10,
                "threshold": 500.0 * (layer + 1),
                "ff_loss": 0.5 / (step + 1),
                "ff_accuracy": 0.5 + step / 1000,
            }
            for layer in range(layers)
        ],
    }


def eval_record(epoch: int, scan: float, softmax: float, final: bool = False) -> dict:
    record = {"kind": "eval", "step": epoch * 100, "epoch": epoch, "split": "val", "error_scan": scan,
              "error_softmax": softmax}  # fmt: skip
    if final:
        record |= {"split": "test", "final": True}
    return record


RECORDS = [
    {"kind": "status", "status": "running", "at": 1.0},
    *[train_record(step, step / 100) for step in range(25, 501, 25)],
    eval_record(1, 0.08, 0.09),
    eval_record(2, 0.05, 0.06),
    eval_record(2, 0.045, 0.055, final=True),
]


def _walk(spec):
    """Every dict inside a Vega-Lite spec."""
    if isinstance(spec, dict):
        yield spec
        for value in spec.values():
            yield from _walk(value)
    elif isinstance(spec, list):
        for value in spec:
            yield from _walk(value)


def _datasets(spec: dict) -> list[list[dict]]:
    return list(spec.get("datasets", {}).values())


def test_train_frame_has_a_row_per_record_and_layer():
    frame = charts.train_frame(RECORDS)
    assert len(frame) == 20 * 2
    assert sorted(frame["layer"].unique()) == [0, 1]
    first = frame[(frame["step"] == 25) & (frame["layer"] == 1)].iloc[0]
    assert first["goodness_pos"] == 225.0 and first["threshold"] == 1000.0


def test_eval_frame_keeps_only_evaluations_and_marks_the_final_one():
    frame = charts.eval_frame(RECORDS)
    assert list(frame["epoch"]) == [1, 2, 2]
    assert list(frame["final"]) == [False, False, True]


def test_empty_records_give_empty_frames_with_columns():
    assert charts.train_frame([]).columns.tolist() == charts.TRAIN_COLUMNS
    assert charts.eval_frame([]).empty


def test_thin_keeps_at_most_n_steps_and_always_the_newest():
    frame = charts.train_frame(RECORDS)
    thinned = charts.thin(frame, 6)
    steps = sorted(thinned["step"].unique())
    assert len(steps) <= 7  # n evenly spaced plus the last one
    assert steps[0] == 25 and steps[-1] == 500
    assert len(thinned) == len(steps) * 2  # both layers of every kept step
    assert charts.thin(frame, 1000) is frame


def test_goodness_chart_draws_one_layer_with_fixed_colours_and_its_threshold():
    spec = charts.goodness_chart(charts.train_frame(RECORDS), layer=1).to_dict()
    lines, rule = spec["layer"]
    assert lines["encoding"]["color"]["scale"] == {
        "domain": ["positive data", "negative data"],
        "range": [charts.POSITIVE, charts.NEGATIVE],
    }
    assert rule["mark"]["type"] == "rule"
    assert rule["encoding"]["y"] == {"aggregate": "mean", "field": "threshold", "type": "quantitative"}
    line_rows = spec["datasets"][lines["data"]["name"]]
    assert {row["layer"] for row in line_rows} == {1}
    assert {row["data"] for row in line_rows} == {"positive data", "negative data"}
    assert len(line_rows) == 2 * 20
    assert {row["threshold"] for row in spec["datasets"][rule["data"]["name"]]} == {1000.0}


def test_layer_metric_chart_colours_each_layer_and_formats_percentages():
    spec = charts.layer_metric_chart(charts.train_frame(RECORDS), "ff_accuracy", "FF accuracy", percent=True)
    spec = spec.to_dict()
    assert spec["encoding"]["y"]["field"] == "ff_accuracy"
    assert spec["encoding"]["y"]["axis"]["format"] == "%"
    assert spec["encoding"]["color"]["scale"]["domain"] == ["layer 0", "layer 1"]


def test_validation_chart_leaves_out_the_final_test_evaluation():
    spec = charts.validation_chart(charts.eval_frame(RECORDS)).to_dict()
    (rows,) = _datasets(spec)
    assert {(row["epoch"], row["method"], row["error"]) for row in rows} == {
        (1, "label scan", 0.08),
        (1, "softmax head", 0.09),
        (2, "label scan", 0.05),
        (2, "softmax head", 0.06),
    }
    assert spec["encoding"]["color"]["scale"]["range"] == [charts.SCAN, charts.SOFTMAX]


def test_the_error_curve_is_titled_by_the_split_it_measures():
    frame = charts.eval_frame(RECORDS)
    assert charts.error_curve_title(frame) == "Validation error per epoch"
    # validation='none': every epoch's evaluation is on the test set, the final one too
    on_test = frame.assign(split="test")
    assert charts.error_curve_title(on_test) == "Test error per epoch"
    mixed = frame.assign(split=["val", "test", *frame["split"][2:]])
    assert charts.error_curve_title(mixed) == "Validation and test error per epoch"
    assert charts.error_curve_title(charts.eval_frame([])) == "Validation error per epoch"


def test_overlay_chart_has_one_colour_per_run_and_a_dash_per_method():
    frame = charts.eval_frame(RECORDS)
    spec = charts.overlay_chart({"run a": frame, "run b": frame.assign(error_scan=frame["error_scan"] / 2)})
    spec = spec.to_dict()
    (rows,) = _datasets(spec)
    assert {row["run"] for row in rows} == {"run a", "run b"}
    assert spec["encoding"]["strokeDash"]["field"] == "method"
    b_scan = sorted(row["error"] for row in rows if row["run"] == "run b" and row["method"] == "label scan")
    assert b_scan == [0.025, 0.04]


def test_goodness_by_label_stacks_layer_shares_and_marks_the_prediction():
    goodness = [[float(label), 10.0 * label] for label in range(10)]  # label 9 has the most goodness
    frame = charts.goodness_by_label_frame(goodness, scan_layers=[1])
    assert len(frame) == 20
    totals = frame.groupby("label")["goodness"].sum()
    assert totals[9] == 99.0
    assert frame[frame["layer"] == 0]["in_scan"].eq(False).all()
    spec = charts.goodness_by_label_chart(goodness, predicted=9, scan_layers=[1]).to_dict()
    bars, marker = spec["layer"]
    assert bars["encoding"]["y"]["stack"] == "zero"
    marker_rows = spec["datasets"][marker["data"]["name"]]
    assert marker_rows == [{"label": 9, "class": "9", "goodness": 99.0}]
    assert bars["encoding"]["x"]["sort"] == [str(label) for label in range(10)]


def test_probabilities_chart_has_ten_bars():
    probs = [0.01] * 9 + [0.91]
    spec = charts.probabilities_chart(probs).to_dict()
    (rows,) = _datasets(spec)
    assert len(rows) == 10 and rows[9]["probability"] == 0.91
    assert isinstance(charts.goodness_by_label_frame([[1.0]] * 10), pd.DataFrame)


FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def test_prediction_charts_name_the_classes_in_label_order():
    goodness = [[float(label), 1.0] for label in range(10)]
    spec = charts.goodness_by_label_chart(goodness, predicted=9, classes=FASHION).to_dict()
    bars, marker = spec["layer"]
    assert bars["encoding"]["x"]["field"] == "class" and bars["encoding"]["x"]["sort"] == FASHION
    assert bars["encoding"]["x"]["axis"]["labelAngle"] != 0  # long names are slanted
    assert spec["datasets"][marker["data"]["name"]] == [{"label": 9, "class": "Ankle boot", "goodness": 10.0}]
    rows = spec["datasets"][bars["data"]["name"]]
    assert {(row["label"], row["class"]) for row in rows} == set(enumerate(FASHION))

    probs = [0.05] * 9 + [0.55]
    spec = charts.probabilities_chart(probs, FASHION).to_dict()
    (rows,) = _datasets(spec)
    assert [row["class"] for row in rows] == FASHION and rows[9]["probability"] == 0.55
    assert spec["encoding"]["x"]["sort"] == FASHION


def test_class_names_fall_back_to_the_digits_without_ten_names():
    assert charts.class_names([], 10) == [str(label) for label in range(10)]
    assert charts.class_names(["a", "b"], 10)[1] == "1"
    assert charts.class_names(FASHION, 10) == FASHION
