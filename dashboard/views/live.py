"""Live run: FF's learning, layer by layer, updating by itself while the run trains.

The page keeps a `MetricsFeed` per run in st.session_state and hands it to a fragment: the first
load is a thinned series, then the fragment polls only what came after the cursor and draws it, so
new points show within about a second without reloading the page or refetching the series. A control
above the run's header switches between the training curves and the Probes view
(dashboard/probes_view.py, `?view=probes` in a link), which draws from the same feed in a fragment of its
own, on a slower timer. Only the chosen view is built: the probes add nothing to the curves' first paint.
"""

from __future__ import annotations

import streamlit as st

from dashboard import charts
from dashboard.api_session import get_client, show_api_error
from dashboard.client import ApiError
from dashboard.formatting import format_duration, format_percent, format_rate, status_badge
from dashboard.layer_grid import show_layer_grid
from dashboard.live_feed import MetricsFeed
from dashboard.models import Run
from dashboard.navigation import LIVE_RUN_ID, RUNS_PAGE
from dashboard.probes_view import PROBES_EVERY, show_probes
from dashboard.settings import get_settings

# Train steps drawn per chart; the feed keeps every record, the charts show an even subset.
MAX_CHART_STEPS = 600
CHART_HEIGHT = 280
# This page's own session keys: the MetricsFeed of each run shown in this session, by run id; the view.
LIVE_FEEDS = "live_feeds"
LIVE_VIEW = "live_view"
TRAINING, PROBES = "Training", "Probes"


def pick_run() -> Run | None:
    try:
        runs = get_client().list_runs(limit=200).runs
    except ApiError as error:
        show_api_error(error, "list the runs")
        return None
    if not runs:
        st.info("No runs yet. Start one on the **Runs** page.", icon=":material/info:")
        st.page_link(RUNS_PAGE, label="Go to Runs", icon=":material/view_list:")
        return None
    by_id = {run.id: run for run in runs}
    ids = list(by_id)
    # Which run: the one chosen in this session (here or on Runs), then the URL's ?run=, then a
    # running one, then the newest.
    wanted = st.session_state.get(LIVE_RUN_ID) or st.query_params.get("run")
    if wanted not in by_id:
        running = [run.id for run in runs if run.status == "running"]
        wanted = running[0] if running else ids[0]
    run_id = st.selectbox("Run", ids, index=ids.index(wanted), format_func=lambda i: by_id[i].label)
    st.session_state[LIVE_RUN_ID] = run_id
    if st.query_params.get("run") != run_id:
        st.query_params["run"] = run_id  # a shareable link to this run's page; set only on change
    return by_id[run_id]


def pick_view() -> str:
    """Training curves or probes: the session's choice, first taken from the URL's ?view=probes."""
    if LIVE_VIEW not in st.session_state:
        st.session_state[LIVE_VIEW] = PROBES if st.query_params.get("view") == "probes" else TRAINING
    view = st.segmented_control(
        "View",
        [TRAINING, PROBES],
        key=LIVE_VIEW,
        required=True,
        label_visibility="collapsed",
        help="Training: how each layer's goodness and the errors move as it trains. Probes: what each layer "
        "has learned, at each evaluation, and the first layer's receptive fields.",
    )
    if view == PROBES and st.query_params.get("view") != "probes":
        st.query_params["view"] = "probes"  # a shareable link to this view
    elif view != PROBES and "view" in st.query_params:
        del st.query_params["view"]
    return view


def feed_for(run_id: str) -> MetricsFeed:
    """The run's feed, kept in the session so that reruns extend the series instead of loading it again."""
    feeds: dict[str, MetricsFeed] = st.session_state.setdefault(LIVE_FEEDS, {})
    if run_id not in feeds:
        feeds[run_id] = MetricsFeed(run_id)
    return feeds[run_id]


def show_header(run: Run) -> None:
    config = run.config
    st.markdown(
        f"{status_badge(run.status)} &nbsp; **{run.id}** · {run.dataset_name} · "
        f"preset {run.preset or 'custom'} · {run.architecture} · batch {config.get('batch_size', '?')} · "
        f"lr {config.get('lr', '?')} · "
        f"{config.get('negatives', '?')} negatives · {config.get('goodness', '?')} goodness"
    )
    epochs = run.epochs or 0
    eta = run.eta_s()
    progress_text = f"epoch {run.epoch}/{epochs} · step {run.step:,}/{run.total_steps or 0:,}"
    if eta is not None:
        progress_text += f" · about {format_duration(eta)} left"
    st.progress(min(max(run.progress, 0.0), 1.0), text=progress_text)
    finished = run.test_error_scan is not None
    cards = st.columns(6)
    cards[0].metric("Error (label scan)", format_percent(run.current_error_scan), border=True,
                    help="Test error" if finished else "Latest validation error")  # fmt: skip
    cards[1].metric("Error (softmax head)", format_percent(run.current_error_softmax), border=True,
                    help="Test error" if finished else "Latest validation error")  # fmt: skip
    cards[2].metric("Images/s", format_rate(run.samples_per_s), border=True,
                    help="Training throughput: images (positive passes) per second of training.")  # fmt: skip
    cards[3].metric("Device", run.device or "—", border=True)
    cards[4].metric("Duration", format_duration(run.duration_s()), border=True)
    cards[5].metric("ETA", format_duration(eta) if eta is not None else "—", border=True)
    if run.status == "failed" and run.error:
        st.error(f"The run failed: {run.error}", icon=":material/error:")


def show_charts(feed: MetricsFeed) -> None:
    train = charts.train_frame(feed.of_kind("train"))
    evals = charts.eval_frame(feed.of_kind("eval"))
    if train.empty:
        st.info("Waiting for the first training metrics…", icon=":material/hourglass_top:")
    else:
        train = charts.thin(train, MAX_CHART_STEPS)
        st.subheader("Goodness of positive vs negative data, per layer")
        st.caption(
            "FF trains each layer to give positive data (an image with its true label) a goodness above the "
            "threshold (dashed) and negative data (the image with a wrong label) a goodness below it."
        )
        show_layer_grid(
            (int(layer) for layer in train["layer"].unique()),
            lambda layer: charts.goodness_chart(train, layer),
            height=CHART_HEIGHT,
            key_prefix="chart_goodness",
        )
        loss_column, accuracy_column = st.columns(2)
        loss_column.markdown("**FF loss per layer**")
        loss_column.altair_chart(
            charts.layer_metric_chart(train, "ff_loss", "FF loss"),
            width="stretch",
            height=CHART_HEIGHT,
            key="chart_loss",
        )
        accuracy_column.markdown("**FF accuracy per layer** (positive above, negative below the threshold)")
        accuracy_column.altair_chart(
            charts.layer_metric_chart(train, "ff_accuracy", "FF accuracy", percent=True),
            width="stretch",
            height=CHART_HEIGHT,
            key="chart_accuracy",
        )
    st.subheader(charts.error_curve_title(evals))
    if charts.error_curve_split(evals) == "test":
        st.caption(
            "This run keeps no validation set (validation = none), so each epoch is measured on the test "
            "set: compare settings on runs that keep one."
        )
    if evals.empty or evals["final"].all():
        st.caption("The first evaluation comes at the end of the first epoch.")
    else:
        st.altair_chart(
            charts.validation_chart(evals), width="stretch", height=CHART_HEIGHT, key="chart_validation"
        )
    final = evals[evals["final"]]
    if not final.empty:
        last = final.iloc[-1]
        st.success(
            f"Final test error: label scan {format_percent(last['error_scan'])}, "
            f"softmax head {format_percent(last['error_softmax'])}.",
            icon=":material/flag:",
        )


def live_view(run_id: str, feed: MetricsFeed, was_active: bool, curves: bool = True) -> None:
    """Rerun on a timer while the run is active: fetch the run and only the new metric records, draw them
    (the header always, the curves when `curves`).

    `was_active` is whether the run was active when the page (and so this fragment's timer) was set up.
    """
    client = get_client()
    try:
        run = client.get_run(run_id)
        feed.refresh(client)
    except ApiError as error:
        show_api_error(error, f"update run {run_id}")
        return
    show_header(run)
    if curves:
        show_charts(feed)
    st.caption(f"{len(feed.records):,} metric records loaded · cursor {feed.cursor or '—'}")
    if was_active and not run.is_active:
        st.rerun()  # the run stopped: rerun the page so that the timer stops too


def show_config(run: Run) -> None:
    with st.expander("Configuration"):
        st.dataframe(
            [{"setting": key, "value": str(value)} for key, value in run.config.items()],
            hide_index=True,
            width="stretch",
        )


# --- layout ----------------------------------------------------------------------------------------

st.title("Live run")
run = pick_run()
if run is not None:
    interval = get_settings().refresh_s if run.is_active else None
    view = pick_view()
    feed = feed_for(run.id)
    st.fragment(run_every=interval)(live_view)(run.id, feed, run.is_active, curves=view == TRAINING)
    if view == PROBES:  # probes change once per evaluation: a slower timer
        first_layer = run.hidden[0] if run.hidden else None
        st.fragment(run_every=interval and interval * PROBES_EVERY)(show_probes)(run.id, feed, first_layer)
    show_config(run)
