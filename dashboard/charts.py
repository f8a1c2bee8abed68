"""Altair chart builders and the tables they draw from; no Streamlit here, so tests can check them.

Metric records (docs/architecture.md, "Metric records") become tidy pandas frames first
(`train_frame`, `eval_frame`), then charts. Sizes are left to the pages (st.altair_chart's height).
Colours are fixed per meaning across every page:
positive data is teal, negative data coral, the label scan blue, the softmax head purple.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd

POSITIVE = "#2a9d8f"
NEGATIVE = "#e76f51"
THRESHOLD = "#6c757d"
SCAN = "#3a86ff"
SOFTMAX = "#8338ec"
LAYER_COLOURS = ["#0b7285", "#f08c00", "#5f3dc4", "#d6336c", "#37b24d", "#1c7ed6", "#ae3ec9", "#495057"]

GOODNESS_SERIES = {"goodness_pos": "positive data", "goodness_neg": "negative data"}
ERROR_SERIES = {"error_scan": "label scan", "error_softmax": "softmax head"}

TRAIN_COLUMNS = [
    "step",
    "epoch",
    "layer",
    "goodness_pos",
    "goodness_neg",
    "threshold",
    "ff_loss",
    "ff_accuracy",
]
EVAL_COLUMNS = ["step", "epoch", "split", "final", "error_scan", "error_softmax"]


# --- tables ------------------------------------------------------------------------------------


def train_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per train record and layer: goodness of positive/negative data, threshold, loss."""
    rows = []
    for record in records:
        if record.get("kind") != "train":
            continue
        for layer in record.get("layers", []):
            rows.append(
                {
                    "step": record.get("step"),
                    "epoch": record.get("epoch"),
                    "layer": layer.get("layer"),
                    "goodness_pos": layer.get("goodness_pos"),
                    "goodness_neg": layer.get("goodness_neg"),
                    "threshold": layer.get("threshold"),
                    "ff_loss": layer.get("ff_loss"),
                    "ff_accuracy": layer.get("ff_accuracy"),
                }
            )
    return pd.DataFrame(rows, columns=TRAIN_COLUMNS)


def eval_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per evaluation: the errors of the label scan and of the softmax head."""
    rows = [
        {
            "step": record.get("step"),
            "epoch": record.get("epoch"),
            "split": record.get("split", "val"),
            "final": bool(record.get("final", False)),
            "error_scan": record.get("error_scan"),
            "error_softmax": record.get("error_softmax"),
        }
        for record in records
        if record.get("kind") == "eval"
    ]
    return pd.DataFrame(rows, columns=EVAL_COLUMNS)


def thin(frame: pd.DataFrame, max_steps: int, by: str = "step") -> pd.DataFrame:
    """Keep at most `max_steps` evenly spaced distinct values of `by` (always the last one)."""
    steps = frame[by].drop_duplicates()
    if len(steps) <= max_steps:
        return frame
    stride = -(-len(steps) // max_steps)  # ceiling division
    kept = set(steps.iloc[::stride]) | {steps.iloc[-1]}
    return frame[frame[by].isin(kept)]


# --- training curves ---------------------------------------------------------------------------


def layer_colour(layers: list[int]) -> alt.Color:
    """The colour encoding that gives each layer its colour in every per-layer chart."""
    return alt.Color(
        "panel:N",
        title=None,
        scale=alt.Scale(
            domain=[layer_title(layer) for layer in layers],
            range=[LAYER_COLOURS[layer % len(LAYER_COLOURS)] for layer in layers],
        ),
        legend=alt.Legend(orient="top"),
    )


def layer_title(layer: int) -> str:
    return f"layer {layer}"


def goodness_chart(train: pd.DataFrame, layer: int) -> alt.LayerChart:
    """One layer's mean goodness of positive and of negative data over training, with its threshold.

    FF learns to push positive goodness above the threshold and negative goodness below it; one
    chart per layer makes that separation visible layer by layer.
    """
    rows = train[train["layer"] == layer]
    long = rows.melt(
        id_vars=["step", "epoch", "layer", "threshold"],
        value_vars=list(GOODNESS_SERIES),
        var_name="series",
        value_name="goodness",
    )
    long["data"] = long["series"].map(GOODNESS_SERIES)
    colour = alt.Color(
        "data:N",
        scale=alt.Scale(domain=list(GOODNESS_SERIES.values()), range=[POSITIVE, NEGATIVE]),
        legend=alt.Legend(title=None, orient="top"),
    )
    lines = (
        alt.Chart(long)
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("epoch:Q", title="epoch"),
            y=alt.Y("goodness:Q", title=f"{layer_title(layer)}: mean goodness"),
            color=colour,
            tooltip=[
                alt.Tooltip("step:Q"),
                alt.Tooltip("epoch:Q", format=".2f"),
                alt.Tooltip("data:N"),
                alt.Tooltip("goodness:Q", format=",.1f"),
            ],
        )
    )
    threshold = (
        alt.Chart(rows)
        .mark_rule(color=THRESHOLD, strokeDash=[6, 4], strokeWidth=1.5)
        .encode(y="mean(threshold):Q", tooltip=[alt.Tooltip("mean(threshold):Q", title="threshold")])
    )
    return alt.layer(lines, threshold)


def layer_metric_chart(train: pd.DataFrame, field: str, title: str, percent: bool = False) -> alt.Chart:
    """One line per layer of a per-layer metric (FF loss, FF accuracy) over training."""
    layers = sorted(int(layer) for layer in train["layer"].dropna().unique())
    frame = train.assign(panel=train["layer"].map(layer_title))
    axis = alt.Axis(format="%") if percent else alt.Axis()
    return (
        alt.Chart(frame)
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("epoch:Q", title="epoch"),
            y=alt.Y(f"{field}:Q", title=title, axis=axis, scale=alt.Scale(zero=False)),
            color=layer_colour(layers),
            tooltip=[
                alt.Tooltip("panel:N", title="layer"),
                alt.Tooltip("step:Q"),
                alt.Tooltip("epoch:Q", format=".2f"),
                alt.Tooltip(f"{field}:Q", title=title, format=".2%" if percent else ".4f"),
            ],
        )
    )


def _error_long(evals: pd.DataFrame) -> pd.DataFrame:
    long = evals.melt(
        id_vars=[c for c in evals.columns if c not in ERROR_SERIES],
        value_vars=list(ERROR_SERIES),
        var_name="series",
        value_name="error",
    ).dropna(subset=["error"])
    long["method"] = long["series"].map(ERROR_SERIES)
    return long


def error_curve_split(evals: pd.DataFrame) -> str:
    """What the per-epoch error curve measures: 'validation', 'test' or 'validation and test'. A run
    that keeps no validation set (validation='none') is evaluated on the test set each epoch, and its
    curve must not be read as validation error."""
    splits = set(evals.loc[~evals["final"], "split"])
    if splits == {"test"}:
        return "test"
    return "validation and test" if "test" in splits else "validation"


def error_curve_title(evals: pd.DataFrame) -> str:
    return f"{error_curve_split(evals).capitalize()} error per epoch"


def validation_chart(evals: pd.DataFrame) -> alt.Chart:
    """Error per epoch of the label scan and of the softmax head, on the validation set (the test set for
    a run that keeps none: see error_curve_split); the final test evaluation is left out."""
    long = _error_long(evals[~evals["final"]])
    return (
        alt.Chart(long)
        .mark_line(point=True, strokeWidth=2)
        .encode(
            x=alt.X("epoch:Q", title="epoch"),
            y=alt.Y("error:Q", title="error", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
            color=alt.Color(
                "method:N",
                title=None,
                scale=alt.Scale(domain=list(ERROR_SERIES.values()), range=[SCAN, SOFTMAX]),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=[
                alt.Tooltip("method:N"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("split:N"),
                alt.Tooltip("error:Q", format=".2%"),
            ],
        )
    )


def overlay_chart(evals_by_run: Mapping[str, pd.DataFrame]) -> alt.Chart:
    """Validation error of several runs on one chart: colour = run, dash = scan or softmax head."""
    frames = []
    for run_label, evals in evals_by_run.items():
        long = _error_long(evals[~evals["final"]])
        long["run"] = run_label
        frames.append(long)
    long = pd.concat(frames, ignore_index=True) if frames else _error_long(pd.DataFrame(columns=EVAL_COLUMNS))
    return (
        alt.Chart(long)
        .mark_line(point=True, strokeWidth=2)
        .encode(
            x=alt.X("epoch:Q", title="epoch"),
            y=alt.Y(
                "error:Q", title="validation error", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)
            ),
            color=alt.Color("run:N", title="run", legend=alt.Legend(orient="top")),
            strokeDash=alt.StrokeDash(
                "method:N",
                title=None,
                scale=alt.Scale(domain=list(ERROR_SERIES.values()), range=[[1, 0], [5, 3]]),
            ),
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("method:N"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("error:Q", format=".2%"),
            ],
        )
    )


# --- prediction --------------------------------------------------------------------------------


def class_names(classes: Sequence[str] = (), count: int = 10) -> list[str]:
    """The names of labels 0..count-1: `classes` when it names them all (an API that answers class names),
    else the label numbers as text (MNIST's digits)."""
    return list(classes) if len(classes) == count else [str(label) for label in range(count)]


def _class_axis(names: Sequence[str], title: str) -> alt.X:
    """An x axis of class names in label order; long names (garments) are slanted to fit."""
    slanted = max((len(name) for name in names), default=0) > 3
    return alt.X("class:N", title=title, sort=list(names), axis=alt.Axis(labelAngle=-30 if slanted else 0))


def goodness_by_label_frame(
    goodness: Sequence[Sequence[float]], scan_layers: Sequence[int] = (), classes: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per (label, layer): the goodness that layer gives the image under that label (`class`: the
    label's name)."""
    names = class_names(classes, len(goodness))
    rows = [
        {
            "label": label,
            "class": names[label],
            "layer": layer,
            "panel": layer_title(layer),
            "goodness": float(value),
            "in_scan": (layer in scan_layers) if scan_layers else True,
        }
        for label, per_layer in enumerate(goodness)
        for layer, value in enumerate(per_layer)
    ]
    return pd.DataFrame(rows, columns=["label", "class", "layer", "panel", "goodness", "in_scan"])


def goodness_by_label_chart(
    goodness: Sequence[Sequence[float]],
    predicted: int,
    scan_layers: Sequence[int] = (),
    classes: Sequence[str] = (),
) -> alt.LayerChart:
    """Stacked bars: the goodness accumulated for each of the ten labels (by class name), split into each
    layer's share.

    Layers the label scan does not sum are drawn faded; the predicted label is marked.
    """
    frame = goodness_by_label_frame(goodness, scan_layers, classes)
    names = class_names(classes, len(goodness))
    layers = sorted(frame["layer"].unique().tolist())
    x = _class_axis(names, "label")
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("sum(goodness):Q", title="goodness", stack="zero"),
            color=layer_colour(layers),
            order=alt.Order("layer:Q"),
            opacity=alt.condition("datum.in_scan", alt.value(1.0), alt.value(0.35)),
            tooltip=[
                alt.Tooltip("class:N", title="label"),
                alt.Tooltip("panel:N", title="layer"),
                alt.Tooltip("goodness:Q", format=",.1f"),
                alt.Tooltip("in_scan:N", title="summed by the scan"),
            ],
        )
    )
    totals = frame.groupby(["label", "class"], as_index=False)["goodness"].sum()
    marker = (
        alt.Chart(totals[totals["label"] == predicted])
        .mark_text(text="▼ predicted", dy=-10, fontWeight="bold", color="#212529")
        .encode(x=x, y=alt.Y("goodness:Q"))
    )
    return alt.layer(bars, marker)


def probabilities_chart(head_probs: Sequence[float], classes: Sequence[str] = ()) -> alt.Chart:
    """The softmax head's probability for each label, by class name."""
    names = class_names(classes, len(head_probs))
    frame = pd.DataFrame(
        {"label": list(range(len(head_probs))), "class": names, "probability": list(head_probs)}
    )
    return (
        alt.Chart(frame)
        .mark_bar(color=SOFTMAX)
        .encode(
            x=_class_axis(names, "label"),
            y=alt.Y(
                "probability:Q",
                title="probability",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            tooltip=[alt.Tooltip("class:N", title="label"), alt.Tooltip("probability:Q", format=".1%")],
        )
    )
