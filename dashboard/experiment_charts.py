"""The Experiments page's charts and the frames they draw from; no Streamlit, so tests can check them.

- Parallel coordinates: one line per setting across one axis per varied setting plus the objective,
  each axis scaled to [0, 1] on its own, coloured by the objective's mean over the seeds.
- A seed group's curves: every seed's validation error per epoch, their mean, and a band around it
  (min to max, or mean ± one sample standard deviation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd

from dashboard.charts import ERROR_SERIES
from dashboard.experiment_spec import format_param_value
from dashboard.models import Experiment

PARALLEL_COLUMNS = ["setting", "axis", "value", "position", "objective"]
CURVE_COLUMNS = ["seed", "epoch", "error"]
BAND_COLUMNS = ["epoch", "n", "mean", "std", "min", "max", "lower", "upper"]
BANDS = {"minmax": "min to max", "std": "mean ± std"}
MEAN_COLOUR = "#212529"
BAND_COLOUR = "#74c0fc"
AXIS_COLOUR = "#adb5bd"


# --- parallel coordinates ----------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def axis_positions(values: Sequence[Any], log: bool = False, order: Sequence[Any] = ()) -> list[float]:
    """Each value's place on its axis, in [0, 1].

    Numbers are scaled linearly from the smallest (0) to the largest (1), on a log scale when `log`
    (a range sampled on one) and all are positive; anything else (names, lists) is spread evenly in
    `order` (the listed values), then in the order of its text. One distinct value sits at 0.5.
    """
    if values and all(_is_number(v) for v in values):
        points = [math.log(v) for v in values] if log and all(v > 0 for v in values) else list(values)
        low, high = min(points), max(points)
        return [0.5 if high == low else (p - low) / (high - low) for p in points]
    keys = [format_param_value(v) for v in values]
    listed = [format_param_value(v) for v in order]
    distinct = [k for k in listed if k in keys] + sorted(set(keys) - set(listed))
    if len(distinct) <= 1:
        return [0.5] * len(values)
    return [distinct.index(k) / (len(distinct) - 1) for k in keys]


def parallel_frame(experiment: Experiment) -> pd.DataFrame:
    """One row per (setting, axis) for the settings with an objective mean so far: the value as text,
    its position on the axis in [0, 1], and the setting's objective mean (the colour)."""
    objective = experiment.objective
    scored = [
        (index, setting)
        for index, setting in enumerate(experiment.table.settings)
        if setting.stat(objective).mean is not None
    ]
    if not scored:
        return pd.DataFrame(columns=PARALLEL_COLUMNS)
    specs = experiment.spec.get("params", {})
    rows: list[dict[str, Any]] = []
    for name in experiment.params:
        spec = specs.get(name) or {}
        values = [setting.params.get(name) for _, setting in scored]
        positions = axis_positions(values, log=bool(spec.get("log")), order=spec.get("values") or ())
        for (index, setting), value, position in zip(scored, values, positions, strict=True):
            rows.append({"setting": index, "axis": name, "value": format_param_value(value),
                         "position": position, "objective": setting.stat(objective).mean})  # fmt: skip
    means = [setting.stat(objective).mean for _, setting in scored]
    for (index, _), mean, position in zip(scored, means, axis_positions(means), strict=True):
        rows.append({"setting": index, "axis": objective_axis(objective), "value": f"{mean:.2%}",
                     "position": position, "objective": mean})  # fmt: skip
    return pd.DataFrame(rows, columns=PARALLEL_COLUMNS)


def objective_axis(objective: str) -> str:
    return f"{objective} (mean)"


def parallel_chart(frame: pd.DataFrame, axes: Sequence[str]) -> alt.LayerChart:
    """Lines across the axes (in the order of `axes`), coloured from green (lowest objective) to red."""
    axis = alt.Axis(labelAngle=0, labelLimit=240, domain=False, ticks=False)
    x = alt.X("axis:N", sort=list(axes), title=None, axis=axis)
    y = alt.Y("position:Q", axis=None, scale=alt.Scale(domain=[0, 1]))
    colour = alt.Color(
        "objective:Q",
        title="objective (mean)",
        scale=alt.Scale(scheme="redyellowgreen", reverse=True),
        legend=alt.Legend(format=".2%", orient="right"),
    )
    tooltip = [
        alt.Tooltip("setting:N"),
        alt.Tooltip("axis:N"),
        alt.Tooltip("value:N"),
        alt.Tooltip("objective:Q", format=".2%"),
    ]
    rules = alt.Chart(pd.DataFrame({"axis": list(axes)})).mark_rule(color=AXIS_COLOUR).encode(x=x)
    lines = (
        alt.Chart(frame)
        .mark_line(strokeWidth=2, opacity=0.85)
        .encode(x=x, y=y, color=colour, detail="setting:N", tooltip=tooltip)
    )
    points = alt.Chart(frame).mark_circle(size=45, opacity=1).encode(x=x, y=y, color=colour, tooltip=tooltip)
    # Each axis's ends, labelled with their values: what 0 and 1 mean on that axis.
    ends = (
        frame.sort_values("position")
        .groupby("axis", as_index=False)
        .agg(low=("value", "first"), high=("value", "last"))
    )
    labels = pd.concat(
        [ends.assign(position=0.0, label=ends["low"]), ends.assign(position=1.0, label=ends["high"])],
        ignore_index=True,
    )[["axis", "position", "label"]]
    end_labels = (
        alt.Chart(labels)
        .mark_text(dx=6, align="left", fontSize=11, color="#495057")
        .encode(x=x, y=y, text="label:N")
    )
    return alt.layer(rules, lines, points, end_labels)


# --- a seed group's curves ---------------------------------------------------------------------


def seed_curves_frame(evals_by_seed: Mapping[int, pd.DataFrame], head: str = "error_scan") -> pd.DataFrame:
    """One row per seed and validation (charts.eval_frame's rows; the final test left out): its error
    of `head` ('error_scan' or 'error_softmax')."""
    frames = []
    for seed, evals in evals_by_seed.items():
        rows = evals[~evals["final"].astype(bool)].dropna(subset=[head])
        frames.append(pd.DataFrame({"seed": seed, "epoch": rows["epoch"], "error": rows[head]}))
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    curves = pd.concat(frames, ignore_index=True)
    return curves.astype({"seed": int, "epoch": float, "error": float})[CURVE_COLUMNS]


def seed_band_frame(curves: pd.DataFrame, band: str = "minmax") -> pd.DataFrame:
    """Per epoch over the seeds: how many, mean, sample std (n-1; 0 for one seed), min and max, and the
    band's `lower` and `upper` edges: min and max for 'minmax', mean ± std for 'std'."""
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, got {band!r}")
    if curves.empty:
        return pd.DataFrame(columns=BAND_COLUMNS)
    grouped = curves.groupby("epoch")["error"]
    frame = pd.DataFrame(
        {
            "n": grouped.count(),
            "mean": grouped.mean(),
            "std": grouped.std(ddof=1).fillna(0.0),
            "min": grouped.min(),
            "max": grouped.max(),
        }
    ).reset_index()
    if band == "minmax":
        frame["lower"], frame["upper"] = frame["min"], frame["max"]
    else:
        frame["lower"], frame["upper"] = frame["mean"] - frame["std"], frame["mean"] + frame["std"]
    return frame[BAND_COLUMNS]


def seed_curves_chart(
    curves: pd.DataFrame, bands: pd.DataFrame, head: str = "error_scan", measured: str = "validation error"
) -> alt.LayerChart:
    """Every seed's curve (thin, one colour each), the band around their mean, and the mean (thick);
    `measured` names the curves' split ('test error' for runs that keep no validation set)."""
    title = f"{measured} ({ERROR_SERIES.get(head, head)})"
    x = alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d"))
    percent = alt.Axis(format="%")
    band = (
        alt.Chart(bands)
        .mark_area(opacity=0.25, color=BAND_COLOUR)
        .encode(
            x=x,
            y=alt.Y("lower:Q", title=title, axis=percent, scale=alt.Scale(zero=False)),
            y2="upper:Q",
            tooltip=[
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("n:Q", title="seeds"),
                alt.Tooltip("lower:Q", format=".2%"),
                alt.Tooltip("upper:Q", format=".2%"),
            ],  # fmt: skip
        )
    )
    seeds = (
        alt.Chart(curves)
        .mark_line(point=True, strokeWidth=1.2, opacity=0.75)
        .encode(
            x=x,
            y=alt.Y("error:Q", title=title, axis=percent, scale=alt.Scale(zero=False)),
            # Dark colours of their own, apart from the light blue band (the theme's palette is all blues).
            color=alt.Color(
                "seed:N", title="seed", scale=alt.Scale(scheme="dark2"), legend=alt.Legend(orient="top")
            ),
            tooltip=[alt.Tooltip("seed:N"), alt.Tooltip("epoch:Q"), alt.Tooltip("error:Q", format=".2%")],
        )
    )
    mean = (
        alt.Chart(bands)
        .mark_line(strokeWidth=3, color=MEAN_COLOUR)
        .encode(
            x=x,
            y=alt.Y("mean:Q", title=title, axis=percent, scale=alt.Scale(zero=False)),
            tooltip=[
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("mean:Q", format=".2%"),
                alt.Tooltip("std:Q", format=".2%"),
            ],  # fmt: skip
        )
    )
    return alt.layer(band, seeds, mean)
