"""Charts of the per-layer probes that every eval record carries; no Streamlit here, so tests can check them.

An eval record's `layers` (docs/architecture.md, "Metric records": the probes of every evaluation) hold, per
layer: its own label scan's error, a linear probe's error on its neutral-label activities, quantiles of
its goodness under the true label (positive) and under every wrong label (negative), and its threshold.
`probe_frame` makes them one tidy row per evaluation and layer; the charts draw the errors over epochs and,
per layer, the two goodness distributions as bands around their medians against the threshold. Colours
follow dashboard/charts.py: positive teal, negative coral, each layer its own colour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import altair as alt
import pandas as pd

from dashboard.charts import GOODNESS_SERIES, NEGATIVE, POSITIVE, THRESHOLD, layer_colour, layer_title

QUANTILES = ("q05", "q25", "q50", "q75", "q95")
# The two goodness distributions, by the prefix of their fields in an eval record's layer.
DISTRIBUTIONS = {
    "goodness_pos": GOODNESS_SERIES["goodness_pos"],
    "goodness_neg": GOODNESS_SERIES["goodness_neg"],
}
PROBE_ERROR_SERIES = {"error_scan": "own label scan", "error_probe": "linear probe"}
PROBE_COLUMNS = [
    "step", "epoch", "split", "final", "layer", "error_scan", "error_probe", "threshold",
    *(f"{prefix}_{q}" for prefix in DISTRIBUTIONS for q in QUANTILES),
]  # fmt: skip
# The final test's probes per layer, as the Live page's table names them.
FINAL_COLUMNS = [
    "layer",
    "own label scan",
    "linear probe",
    "median goodness +",
    "median goodness −",
    "threshold",
]
# Opacity of the outer (5-95%) and inner (25-75%) bands.
OUTER_BAND, INNER_BAND = 0.15, 0.35


def probe_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per eval record and layer of its probes; eval records without `layers` (made before the
    probes existed) give no rows."""
    rows = []
    for record in records:
        if record.get("kind") != "eval":
            continue
        for layer in record.get("layers") or []:
            row = {column: layer.get(column) for column in PROBE_COLUMNS}
            row |= {
                "step": record.get("step"),
                "epoch": record.get("epoch"),
                "split": record.get("split", "val"),
                "final": bool(record.get("final", False)),
            }
            rows.append(row)
    frame = pd.DataFrame(rows, columns=PROBE_COLUMNS)
    # A probe may be null (too few images): as floats those are NaN, left out of the lines.
    numeric = [c for c in PROBE_COLUMNS if c not in ("split", "final", "layer")]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
    return frame


def has_probes(records: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any eval record carries per-layer probes."""
    return any(record.get("kind") == "eval" and record.get("layers") for record in records)


def _over_epochs(probes: pd.DataFrame) -> pd.DataFrame:
    """The evaluations during training (the final test evaluation is shown apart)."""
    return probes[~probes["final"].astype(bool)]


def probe_error_chart(probes: pd.DataFrame) -> alt.LayerChart:
    """Each layer's error over epochs: its own label scan (solid) and its linear probe (dashed), one colour
    per layer; a point marks each evaluation."""
    rows = _over_epochs(probes)
    layers = sorted(int(layer) for layer in rows["layer"].dropna().unique())
    long = rows.melt(
        id_vars=["step", "epoch", "split", "layer"],
        value_vars=list(PROBE_ERROR_SERIES),
        var_name="series",
        value_name="error",
    ).dropna(subset=["error"])
    long["method"] = long["series"].map(PROBE_ERROR_SERIES)
    long["panel"] = long["layer"].map(lambda layer: layer_title(int(layer)))
    base = alt.Chart(long).encode(
        x=alt.X("epoch:Q", title="epoch"),
        y=alt.Y("error:Q", title="error", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
        color=layer_colour(layers),
        tooltip=[
            alt.Tooltip("panel:N", title="layer"),
            alt.Tooltip("method:N"),
            alt.Tooltip("epoch:Q"),
            alt.Tooltip("split:N"),
            alt.Tooltip("error:Q", format=".2%"),
        ],
    )
    # The lines alone carry the dash, so that its legend shows dashes (points would make it circles).
    lines = base.mark_line(strokeWidth=2).encode(
        strokeDash=alt.StrokeDash(
            "method:N",
            title=None,
            scale=alt.Scale(domain=list(PROBE_ERROR_SERIES.values()), range=[[1, 0], [5, 3]]),
            legend=alt.Legend(orient="top"),
        )
    )
    points = base.mark_point(filled=True, size=30).encode(detail="method:N")
    return alt.layer(lines, points)


def goodness_bands_frame(probes: pd.DataFrame, layer: int) -> pd.DataFrame:
    """One row per evaluation during training and distribution (positive, negative) of one layer: its
    quantiles as columns q05 ... q95, the layer's threshold, and `data` naming the distribution."""
    rows = _over_epochs(probes)
    rows = rows[rows["layer"] == layer]
    parts = []
    for prefix, name in DISTRIBUTIONS.items():
        part = rows[["step", "epoch", "threshold"]].copy()
        for q in QUANTILES:
            part[q] = rows[f"{prefix}_{q}"]
        part["data"] = name
        parts.append(part)
    columns = ["step", "epoch", "threshold", *QUANTILES, "data"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def goodness_bands_chart(probes: pd.DataFrame, layer: int) -> alt.LayerChart:
    """One layer's goodness of positive and of negative data over epochs as bands: 25-75% filled, 5-95%
    lighter, the median as a line, against the layer's threshold (dashed), so that one sees the margin.

    With a single evaluation a band has no width to fill: each distribution is then drawn as a box (a
    thin rule from 5 to 95%, a thick one from 25 to 75%) around its median.
    """
    frame = goodness_bands_frame(probes, layer)
    colour = alt.Color(
        "data:N",
        scale=alt.Scale(domain=list(DISTRIBUTIONS.values()), range=[POSITIVE, NEGATIVE]),
        legend=alt.Legend(title=None, orient="top"),
    )
    base = alt.Chart(frame).encode(x=alt.X("epoch:Q", title="epoch"), color=colour)
    y_title = f"{layer_title(layer)}: goodness"
    tooltip = [
        alt.Tooltip("data:N"),
        alt.Tooltip("epoch:Q"),
        *(alt.Tooltip(f"{q}:Q", title=f"{int(q[1:])}%", format=",.1f") for q in QUANTILES),
    ]
    if frame["epoch"].nunique() > 1:
        outer = base.mark_area(opacity=OUTER_BAND).encode(y=alt.Y("q05:Q", title=y_title), y2="q95:Q")
        inner = base.mark_area(opacity=INNER_BAND).encode(y="q25:Q", y2="q75:Q")
        median = base.mark_line(point=True, strokeWidth=2).encode(y="q50:Q", tooltip=tooltip)
    else:
        outer = base.mark_rule(strokeWidth=2, opacity=0.6).encode(y=alt.Y("q05:Q", title=y_title), y2="q95:Q")
        inner = base.mark_rule(strokeWidth=10, opacity=0.6).encode(y="q25:Q", y2="q75:Q")
        median = base.mark_point(filled=True, size=60).encode(
            y="q50:Q", color=alt.value("#212529"), tooltip=tooltip
        )
    threshold = (
        alt.Chart(frame)
        .mark_rule(color=THRESHOLD, strokeDash=[6, 4], strokeWidth=1.5)
        .encode(y="mean(threshold):Q", tooltip=[alt.Tooltip("mean(threshold):Q", title="threshold")])
    )
    return alt.layer(outer, inner, median, threshold)


def final_probes_table(probes: pd.DataFrame) -> pd.DataFrame:
    """The final test evaluation's probes, one row per layer (empty before the run has finished)."""
    final = probes[probes["final"].astype(bool)]
    if final.empty:
        return pd.DataFrame(columns=FINAL_COLUMNS)
    last = final[final["step"] == final["step"].max()].drop_duplicates("layer", keep="last")
    values = [
        last["layer"].map(lambda layer: layer_title(int(layer))),
        last["error_scan"],
        last["error_probe"],
        last["goodness_pos_q50"],
        last["goodness_neg_q50"],
        last["threshold"],
    ]
    return pd.DataFrame(
        {name: list(column) for name, column in zip(FINAL_COLUMNS, values, strict=True)},
        columns=FINAL_COLUMNS,
    )
