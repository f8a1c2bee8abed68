"""Probe charts: the tidy table of eval records' per-layer probes and the specs drawn from it."""

from __future__ import annotations

import math

import pytest
import torch

from dashboard import charts, probe_charts
from ffcore.config import RunConfig
from ffcore.data import Split
from ffcore.evaluation import evaluate
from ffcore.model import FFNetwork


def layer_probes(layer: int, epoch: int) -> dict:
    """One layer's probes as an eval record carries them, with values that tell layer and epoch apart."""
    probes = {"layer": layer, "error_scan": 0.5 / epoch + layer / 100, "error_probe": 0.2 / epoch,
              "threshold": 100.0 * (layer + 1)}  # fmt: skip
    for i, q in enumerate(probe_charts.QUANTILES):
        probes[f"goodness_pos_{q}"] = 100.0 * (layer + 1) + 10 * epoch + i
        probes[f"goodness_neg_{q}"] = 100.0 * (layer + 1) - 10 * epoch + i
    return probes


def eval_record(epoch: int, layers: int = 2, final: bool = False) -> dict:
    record = {"kind": "eval", "step": epoch * 50, "epoch": epoch, "split": "val", "error_scan": 0.1,
              "error_softmax": 0.1}  # fmt: skip
    record["layers"] = [layer_probes(layer, epoch) for layer in range(layers)]
    if final:
        record |= {"split": "test", "final": True}
    return record


RECORDS = [
    {"kind": "status", "status": "running", "at": 1.0},
    {"kind": "train", "step": 10, "epoch": 0.2, "layers": [{"layer": 0, "goodness_pos": 1.0}]},
    eval_record(1),
    eval_record(2),
    eval_record(3),
    eval_record(3, final=True),
]


def test_probe_frame_has_a_row_per_evaluation_and_layer():
    frame = probe_charts.probe_frame(RECORDS)
    assert len(frame) == 4 * 2
    assert list(frame["final"]) == [False] * 6 + [True] * 2
    row = frame[(frame["epoch"] == 2) & (frame["layer"] == 1)].iloc[0]
    assert row["error_scan"] == pytest.approx(0.26) and row["goodness_neg_q95"] == 184.0
    assert row["threshold"] == 200.0 and row["split"] == "val"


def test_records_made_before_probes_give_no_rows_and_no_probes():
    old = [{"kind": "eval", "step": 50, "epoch": 1, "split": "val", "error_scan": 0.1, "error_softmax": 0.1}]
    assert not probe_charts.has_probes(old)
    assert probe_charts.probe_frame(old).empty
    assert probe_charts.probe_frame([]).columns.tolist() == probe_charts.PROBE_COLUMNS
    assert probe_charts.has_probes(RECORDS)


def test_a_null_linear_probe_is_left_out_of_the_error_lines():
    record = eval_record(1)
    record["layers"][0]["error_probe"] = None
    spec = probe_charts.probe_error_chart(probe_charts.probe_frame([record])).to_dict()
    rows = spec["datasets"][spec["data"]["name"]]
    assert {(row["panel"], row["method"]) for row in rows} == {
        ("layer 0", "own label scan"),
        ("layer 1", "own label scan"),
        ("layer 1", "linear probe"),
    }


def test_probe_error_chart_draws_both_methods_per_layer_over_epochs_without_the_final_test():
    spec = probe_charts.probe_error_chart(probe_charts.probe_frame(RECORDS)).to_dict()
    rows = spec["datasets"][spec["data"]["name"]]
    assert len(rows) == 3 * 2 * 2  # epochs x layers x methods
    assert {row["split"] for row in rows} == {"val"}
    probe_layer_0 = sorted((row["epoch"], row["error"]) for row in rows
                           if row["panel"] == "layer 0" and row["method"] == "linear probe")  # fmt: skip
    assert probe_layer_0 == [(1, pytest.approx(0.2)), (2, pytest.approx(0.1)), (3, pytest.approx(0.2 / 3))]
    lines, points = spec["layer"]
    assert lines["mark"]["type"] == "line" and points["mark"]["type"] == "point"
    for encoding in (lines["encoding"], points["encoding"]):
        assert encoding["color"]["scale"]["domain"] == ["layer 0", "layer 1"]
        assert encoding["color"]["scale"]["range"] == charts.LAYER_COLOURS[:2]
        assert encoding["y"]["axis"]["format"] == "%"
    assert lines["encoding"]["strokeDash"]["scale"]["domain"] == ["own label scan", "linear probe"]
    assert "strokeDash" not in points["encoding"]  # the dash legend shows dashes


def test_goodness_bands_fill_the_quartiles_and_the_outer_quantiles_around_the_median():
    spec = probe_charts.goodness_bands_chart(probe_charts.probe_frame(RECORDS), layer=1).to_dict()
    outer, inner, median, threshold = spec["layer"]
    assert (outer["mark"]["type"], inner["mark"]["type"]) == ("area", "area")
    assert outer["mark"]["opacity"] < inner["mark"]["opacity"]
    assert (outer["encoding"]["y"]["field"], outer["encoding"]["y2"]["field"]) == ("q05", "q95")
    assert (inner["encoding"]["y"]["field"], inner["encoding"]["y2"]["field"]) == ("q25", "q75")
    assert median["mark"]["type"] == "line" and median["encoding"]["y"]["field"] == "q50"
    for band in (outer, inner, median):
        assert band["encoding"]["color"]["scale"] == {
            "domain": ["positive data", "negative data"],
            "range": [charts.POSITIVE, charts.NEGATIVE],
        }
    assert threshold["mark"]["type"] == "rule"
    assert threshold["encoding"]["y"] == {"aggregate": "mean", "field": "threshold", "type": "quantitative"}
    rows = spec["datasets"][spec["data"]["name"]]
    assert len(rows) == 3 * 2  # epochs x distributions, the final test left out
    positive_2 = next(row for row in rows if row["epoch"] == 2 and row["data"] == "positive data")
    assert [positive_2[q] for q in probe_charts.QUANTILES] == [220.0, 221.0, 222.0, 223.0, 224.0]
    assert {row["threshold"] for row in rows} == {200.0}


def test_one_evaluation_is_drawn_as_boxes_since_a_band_needs_two():
    spec = probe_charts.goodness_bands_chart(probe_charts.probe_frame([eval_record(1)]), layer=0).to_dict()
    outer, inner, median, _ = spec["layer"]
    assert (outer["mark"]["type"], inner["mark"]["type"], median["mark"]["type"]) == ("rule", "rule", "point")
    assert inner["mark"]["strokeWidth"] > outer["mark"]["strokeWidth"]


def test_final_probes_table_has_the_final_test_per_layer():
    table = probe_charts.final_probes_table(probe_charts.probe_frame(RECORDS))
    assert table.columns.tolist() == probe_charts.FINAL_COLUMNS
    assert table["layer"].tolist() == ["layer 0", "layer 1"]
    assert table["own label scan"].tolist() == pytest.approx([0.5 / 3, 0.5 / 3 + 0.01])
    assert table["median goodness +"].tolist() == [132.0, 232.0]
    assert probe_charts.final_probes_table(probe_charts.probe_frame(RECORDS[:-1])).empty


def test_the_probes_ffcore_records_fit_the_charts():
    """What ffcore.evaluation writes into an eval record is what the charts read."""
    config = RunConfig.from_preset("quick", hidden=[24, 16])
    model = FFNetwork(config)
    model.reset_parameters(torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    split = Split(
        torch.rand(100, 784, generator=generator), torch.randint(0, 10, (100,), generator=generator)
    )
    errors = evaluate(model, split, probes=True)
    records = [
        {"kind": "eval", "step": 10 * epoch, "epoch": epoch, "split": "val", **errors} for epoch in (1, 2)
    ]
    frame = probe_charts.probe_frame(records)
    assert len(frame) == 2 * 2
    assert not frame[probe_charts.PROBE_COLUMNS[4:]].isna().any().any()  # every field found
    layer_1 = errors["layers"][1]
    row = frame[frame["layer"] == 1].iloc[0]
    assert row["goodness_neg_q75"] == pytest.approx(layer_1["goodness_neg_q75"])
    assert row["threshold"] == model.thresholds[1]
    spec = probe_charts.goodness_bands_chart(frame, layer=1).to_dict()
    rows = spec["datasets"][spec["data"]["name"]]
    assert all(row["q05"] <= row["q25"] <= row["q50"] <= row["q75"] <= row["q95"] for row in rows)
    assert all(math.isfinite(row["q50"]) for row in rows)
