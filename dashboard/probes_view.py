"""The Live page's Probes section: what each layer of a run has learned, beside how it trains.

The charts come from the eval records the page's MetricsFeed already holds (no request of their own): each
layer's error by its own label scan and by a linear probe over epochs, and each layer's positive and
negative goodness distributions as bands against its threshold (dashboard/probe_charts.py). The first
layer's receptive fields come from the API as one PNG, through the visitor's client, fetched once per
model version and kept in the session. The Live page runs `show_probes` in a fragment of its own, after
the curves and on a slower timer: probes change once per evaluation.
"""

from __future__ import annotations

import io

import streamlit as st
from PIL import Image

from dashboard import probe_charts
from dashboard.api_session import get_client, show_api_error
from dashboard.client import ApiError
from dashboard.layer_grid import show_layer_grid
from dashboard.live_feed import MetricsFeed

CHART_HEIGHT = 260
# How often the section redraws while the run trains, in refresh intervals of the curves.
PROBES_EVERY = 5
FIELD_COUNTS = (16, 64, 144)
FIELD_SCALE = 3  # screen pixels per weight
FIELDS_KEPT = 8  # receptive-field images kept per session
# This section's own session keys.
RECEPTIVE_FIELDS = "receptive_fields"  # {(run id, units, model version): PNG bytes, or a note why none}
FIELD_COUNT = "field_count"  # the units-shown control
NO_PROBES = (
    "This run was recorded before probes existed: its evaluations carry no per-layer probes. "
    "Run it again (Runs page, **Run again**) to see them."
)


def show_probes(run_id: str, feed: MetricsFeed, first_layer_units: int | None = None) -> None:
    """The Probes view of a run; `first_layer_units`: the width of its first layer, when known."""
    st.subheader("Probes: what each layer has learned")
    evals = feed.of_kind("eval")
    if not evals:
        st.caption("The probes come with every evaluation, the first at the end of the first epoch.")
    elif not probe_charts.has_probes(evals):
        st.info(NO_PROBES, icon=":material/info:")
    else:
        show_probe_charts(probe_charts.probe_frame(evals))
    show_receptive_fields(run_id, model_version(feed), first_layer_units)


def show_probe_charts(probes) -> None:
    during = probes[~probes["final"].astype(bool)]
    if during.empty:
        st.caption("Only the final test evaluation has probes (the run evaluated no epoch on its own).")
    else:
        st.markdown("**Error of each layer on its own**: solid, its own label scan; dashed, a linear probe")
        st.caption(
            "Own label scan: the label whose embedding gives this layer alone the most goodness. Linear "
            "probe: a ridge classifier on the layer's activities under the neutral label, which shows what "
            "the layer's representation holds even where its goodness does not vote well."
        )
        st.altair_chart(
            probe_charts.probe_error_chart(probes), width="stretch", height=CHART_HEIGHT, key="probe_errors"
        )
        st.markdown("**Goodness of positive vs negative data, as distributions**")
        st.caption(
            "For each evaluated image: its goodness under the true label (positive) and under each wrong "
            "label (negative). Filled: the middle half (25-75%); lighter: 5-95%; line: the median; dashed: "
            "the layer's threshold. The margin is the gap between the positive band and the negative one."
        )
        show_layer_grid(
            (int(layer) for layer in during["layer"].unique()),
            lambda layer: probe_charts.goodness_bands_chart(probes, layer),
            height=CHART_HEIGHT,
            key_prefix="probe_bands",
        )
    final = probe_charts.final_probes_table(probes)
    if not final.empty:
        st.markdown("**Final test evaluation, per layer**")
        st.dataframe(
            final.style.format(
                {"own label scan": "{:.2%}", "linear probe": "{:.2%}", "median goodness +": "{:,.1f}",
                 "median goodness −": "{:,.1f}", "threshold": "{:,.1f}"},
                na_rep="—",
            ),
            hide_index=True,
            key="probe_final",
        )  # fmt: skip


def model_version(feed: MetricsFeed) -> tuple[str | None, str | None]:
    """What changes when the run stores a new model: a model comes with each evaluation, and the last one
    when the run ends."""
    evals = feed.of_kind("eval")
    return (evals[-1].get("id") if evals else None, feed.latest_status)


def show_receptive_fields(
    run_id: str, version: tuple[str | None, str | None], first_layer_units: int | None = None
) -> None:
    st.markdown("**First layer's receptive fields**")
    count = st.segmented_control(
        "Units shown", FIELD_COUNTS, default=FIELD_COUNTS[1], key=FIELD_COUNT, required=True
    )
    cache: dict = st.session_state.setdefault(RECEPTIVE_FIELDS, {})
    key = (run_id, count, version)
    if key not in cache:
        try:
            cache[key] = get_client().receptive_fields_png(run_id, count=count, scale=FIELD_SCALE)
        except ApiError as error:
            if error.status_code != 409:  # 409: no model yet, which is no failure
                show_api_error(error, "load the receptive fields")
                return
            cache[key] = f"No receptive fields yet: {error.message}."
        while len(cache) > FIELDS_KEPT:
            cache.pop(next(iter(cache)))
    shown = cache[key]
    if isinstance(shown, str):
        st.caption(shown)
        return
    units = min(count, first_layer_units) if first_layer_units else count
    st.image(
        shown,
        width=Image.open(io.BytesIO(shown)).width,  # its own size: stretched, the tiles would blur
        output_format="PNG",  # as the API drew it: JPEG would blur the tiles' pixels
        caption=f"The {units} units with the largest input weights, strongest first: each tile is one unit's "
        "784 weights as a 28x28 picture, red positive, blue negative, white zero. The first ten pixels of a "
        "tile's top row are its weights on the label, which FF writes there.",
    )
