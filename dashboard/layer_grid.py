"""One chart per hidden layer, laid out in rows of columns: the Live page's curves and its Probes view."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import altair as alt
import streamlit as st

LAYERS_PER_ROW = 3


def show_layer_grid(
    layers: Iterable[int],
    chart_for: Callable[[int], alt.TopLevelMixin],
    height: int,
    key_prefix: str,
    per_row: int = LAYERS_PER_ROW,
) -> None:
    """Draw `chart_for(layer)` for each layer, in ascending order, `per_row` to a row (fewer when there are
    fewer layers, so that one or two layers fill the width); each chart's key is `{key_prefix}_{layer}`."""
    ordered = sorted(layers)
    if not ordered:
        return
    columns_per_row = min(len(ordered), per_row)
    for first in range(0, len(ordered), columns_per_row):
        row = ordered[first : first + columns_per_row]
        for column, layer in zip(st.columns(columns_per_row), row, strict=False):
            column.altair_chart(chart_for(layer), width="stretch", height=height, key=f"{key_prefix}_{layer}")
