"""Experiments: start seed groups and sweeps, follow them, and read their results per setting.

The list and the chosen experiment are fragments: the list refreshes on a timer, and the chosen
experiment refreshes while it runs (as the Live page does) and stops once it has ended.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, experiment_charts
from dashboard.access import write_lock
from dashboard.api_session import get_client, show_api_error
from dashboard.client import ApiError
from dashboard.experiment_form import EXPERIMENT_NOTICE, STARTED_EXPERIMENT, start_experiment_form
from dashboard.experiment_table import best_row_style, experiments_frame, results_frame
from dashboard.formatting import format_mean_std, status_badge
from dashboard.models import Experiment, ExperimentSummary
from dashboard.navigation import EXPERIMENT_QUERY, RUNS_PAGE
from dashboard.settings import get_settings

EXPERIMENTS_SHOWN = 200
CHART_HEIGHT = 320
# This page's own session keys.
EXPERIMENT_CHOICE = "experiment_choice"  # the picker's key
PENDING_EXPERIMENT_DELETE = "pending_experiment_delete"  # the experiment waiting for "Yes, delete"
HEADS = {"error_scan": "label scan", "error_softmax": "softmax head"}


@st.fragment(run_every=get_settings().refresh_s * 2)
def experiment_list() -> None:
    """Every experiment with its status and progress, fetched anew on a timer."""
    try:
        experiments = get_client().list_experiments(limit=EXPERIMENTS_SHOWN).experiments
    except ApiError as error:
        show_api_error(error, "list the experiments")
        return
    if not experiments:
        st.info(
            "No experiments yet. Start one with the form: a grid of a few settings, each over a few seeds."
        )
        return
    st.dataframe(
        experiments_frame(experiments),
        hide_index=True,
        width="stretch",
        key="experiments_table",
        column_config={
            "experiment": st.column_config.TextColumn("Experiment"),
            "name": st.column_config.TextColumn("Name"),
            "status": st.column_config.TextColumn("Status"),
            "search": st.column_config.TextColumn("Search"),
            "varies": st.column_config.TextColumn("Varies"),
            "progress": st.column_config.ProgressColumn(
                "Progress",
                min_value=0.0,
                max_value=1.0,
                format="percent",
                help="Settings finished of planned",
            ),
            "settings": st.column_config.TextColumn("Settings", help="Finished / planned"),
            "runs": st.column_config.TextColumn("Runs"),
            "best": st.column_config.TextColumn("Best", help="The best setting's objective: mean ± std"),
            "created": st.column_config.DatetimeColumn("Created", format="MMM D, HH:mm:ss"),
        },
    )


def pick_experiment(experiments: list[ExperimentSummary]) -> ExperimentSummary | None:
    """The experiment to show: the one just started, else the picker's, else the URL's ?experiment=."""
    if not experiments:
        return None
    by_id = {experiment.id: experiment for experiment in experiments}
    if started := st.session_state.pop(STARTED_EXPERIMENT, None):
        st.session_state[EXPERIMENT_CHOICE] = started
    if st.session_state.get(EXPERIMENT_CHOICE) not in by_id:
        linked = st.query_params.get(EXPERIMENT_QUERY)
        st.session_state[EXPERIMENT_CHOICE] = linked if linked in by_id else experiments[0].id
    chosen = st.selectbox(
        "Experiment", list(by_id), format_func=lambda i: by_id[i].label, key=EXPERIMENT_CHOICE
    )
    if st.query_params.get(EXPERIMENT_QUERY) != chosen:
        st.query_params[EXPERIMENT_QUERY] = chosen  # a shareable link; set only on change
    return by_id[chosen]


def show_header(experiment: Experiment) -> None:
    title = f"**{experiment.name}** ({experiment.id})" if experiment.name else f"**{experiment.id}**"
    st.markdown(
        f"{status_badge(experiment.status)} &nbsp; {title} · {experiment.search} search over "
        f"{', '.join(experiment.params)} · seeds {', '.join(map(str, experiment.seeds))} · "
        f"objective {experiment.objective}"
    )
    progress = experiment.progress
    st.progress(
        progress.fraction,
        text=f"settings {progress.settings_finished}/{progress.settings_planned} finished · runs: "
        f"{progress.runs_queued} queued, {progress.runs_running} running, {progress.runs_finished} finished",
    )
    if experiment.error:
        st.error(f"The experiment {experiment.status}: {experiment.error}", icon=":material/error:")
    if experiment.best is not None and experiment.best_objective is not None:
        stats = experiment.best_objective
        st.success(
            f"Best setting so far: #{experiment.best} {experiment.best_params or {}} with "
            f"{experiment.objective} {format_mean_std(stats.mean, stats.std)} over {stats.n} seed(s).",
            icon=":material/trophy:",
        )


def experiment_actions(experiment: Experiment) -> None:
    """CSV download, runs, cancel and delete (with a confirmation); the last two need a key for changes."""
    client = get_client()
    lock = write_lock()
    download, runs, cancel, delete = st.columns(4)
    try:
        table_csv = client.experiment_table_csv(experiment.id)
    except ApiError as error:
        show_api_error(error, "load the table as CSV")
        table_csv = None
    download.download_button(
        "Download CSV", data=table_csv or "", file_name=f"experiment-{experiment.id}.csv", mime="text/csv",
        icon=":material/download:", disabled=table_csv is None, on_click="ignore", width="stretch",
    )  # fmt: skip
    # A link, not a button: the Runs page reads the experiment from its URL (shareable, kept on reload).
    runs.page_link(RUNS_PAGE, label="Its runs", icon=":material/view_list:", width="stretch",
                   query_params={EXPERIMENT_QUERY: experiment.id})  # fmt: skip
    if cancel.button("Cancel", icon=":material/stop_circle:", width="stretch", key="experiment_cancel",
                     disabled=lock is not None or not experiment.is_running, help=lock):  # fmt: skip
        try:
            client.cancel_experiment(experiment.id)
        except ApiError as error:
            show_api_error(error, f"cancel experiment {experiment.id}")
            return
        st.session_state[EXPERIMENT_NOTICE] = f"Cancelling experiment {experiment.id}."
        st.rerun()
    if delete.button("Delete", icon=":material/delete:", disabled=lock is not None or experiment.is_running,
                     width="stretch", key="experiment_delete", help=lock):  # fmt: skip
        st.session_state[PENDING_EXPERIMENT_DELETE] = experiment.id
    if lock is not None:
        st.caption(lock)
        st.session_state.pop(PENDING_EXPERIMENT_DELETE, None)  # asked before the key was taken away
    elif st.session_state.get(PENDING_EXPERIMENT_DELETE) == experiment.id:
        st.warning(f"Delete experiment {experiment.id} and its results? This cannot be undone.",
                   icon=":material/warning:")  # fmt: skip
        confirm, keep = st.columns(2)
        if confirm.button("Yes, delete", type="primary", width="stretch", key="experiment_delete_yes"):
            st.session_state.pop(PENDING_EXPERIMENT_DELETE, None)
            try:
                client.delete_experiment(experiment.id)
            except ApiError as error:
                show_api_error(error, f"delete experiment {experiment.id}")
                return
            st.session_state[EXPERIMENT_NOTICE] = f"Deleted experiment {experiment.id}."
            st.rerun()
        if keep.button("Keep it", width="stretch", key="experiment_delete_no"):
            st.session_state.pop(PENDING_EXPERIMENT_DELETE, None)
            st.rerun()
    if experiment.is_running:
        st.caption("A running experiment can be cancelled; delete it once it has stopped.")


def show_results(experiment: Experiment) -> None:
    st.subheader("Results per setting")
    if not experiment.table.settings:
        st.info("No setting has started yet.", icon=":material/hourglass_top:")
        return
    st.caption("Mean ± sample standard deviation over each setting's succeeded runs, in percent.")
    st.dataframe(
        results_frame(experiment).style.apply(best_row_style, axis=1),
        hide_index=True,
        width="stretch",
        key=f"results_{experiment.id}",
        column_config={"best": st.column_config.TextColumn("", width="small")},
    )
    frame = experiment_charts.parallel_frame(experiment)
    if frame.empty:
        return
    st.markdown(
        "**Settings against the objective** — each axis scaled from its smallest to its largest value"
    )
    axes = [*experiment.params, experiment_charts.objective_axis(experiment.objective)]
    st.altair_chart(
        experiment_charts.parallel_chart(frame, axes), width="stretch", height=CHART_HEIGHT, key="parallel"
    )


def show_seed_group(experiment: Experiment) -> None:
    """A chosen setting's seeds: their validation (or test) curves, mean and band."""
    settings = experiment.table.settings
    if not settings:
        return
    st.subheader("A setting's seeds")
    pick, head_column, band_column = st.columns([3, 2, 2])
    default = experiment.best if experiment.best is not None else 0
    index = pick.selectbox(
        "Setting",
        range(len(settings)),
        index=default,
        format_func=lambda i: f"#{i} {settings[i].params}",
        key=f"seed_setting_{experiment.id}",
    )
    objective_head = "error_softmax" if experiment.objective.endswith("softmax") else "error_scan"
    head = head_column.radio("Head", list(HEADS), index=list(HEADS).index(objective_head),
                             format_func=HEADS.__getitem__, horizontal=True, key="seed_head")  # fmt: skip
    bands = experiment_charts.BANDS
    band = band_column.radio(
        "Band", list(bands), format_func=bands.__getitem__, horizontal=True, key="seed_band"
    )
    evals_by_seed = {}
    for outcome in settings[index].runs:
        if outcome.run_id is None:
            continue
        try:
            page = get_client().metrics(outcome.run_id, kind="eval", limit=1000)
        except ApiError as error:
            show_api_error(error, f"load the curves of run {outcome.run_id}")
            return
        evals_by_seed[outcome.seed] = charts.eval_frame(page.records)
    curves = experiment_charts.seed_curves_frame(evals_by_seed, head)
    if curves.empty:
        st.info("No validation yet: the curves appear after each run's first epoch.", icon=":material/info:")
        return
    band_frame = experiment_charts.seed_band_frame(curves, band)
    split = charts.error_curve_split(pd.concat(evals_by_seed.values()))
    if split == "test":
        st.caption("These runs keep no validation set (validation = none): their curves are test error.")
    st.altair_chart(
        experiment_charts.seed_curves_chart(curves, band_frame, head, f"{split} error"),
        width="stretch",
        height=CHART_HEIGHT,
        key="seed_curves",
    )
    st.caption(f"One thin line per seed, their mean in black, and the band {experiment_charts.BANDS[band]}.")


def experiment_view(experiment_id: str, was_running: bool) -> None:
    """Rerun on a timer while the experiment runs; `was_running`: whether it ran when the timer was set."""
    try:
        experiment = get_client().get_experiment(experiment_id)
    except ApiError as error:
        show_api_error(error, f"load experiment {experiment_id}")
        return
    show_header(experiment)
    experiment_actions(experiment)
    show_results(experiment)
    show_seed_group(experiment)
    if was_running and not experiment.is_running:
        st.rerun()  # it ended: rerun the page so that the timer stops too


# --- layout ----------------------------------------------------------------------------------------

st.title("Experiments")
st.caption(
    "Seed groups and sweeps: every setting trained with several seeds, compared by the mean and spread "
    "of its errors."
)
if notice := st.session_state.pop(EXPERIMENT_NOTICE, None):
    st.success(notice, icon=":material/check_circle:")
try:
    experiments = get_client().list_experiments(limit=EXPERIMENTS_SHOWN).experiments
except ApiError:
    experiments = []  # the list below says why
# The form is open while there is nothing to show yet; afterwards the results take the page.
with st.expander("Start an experiment", expanded=not experiments, icon=":material/science:"):
    start_experiment_form()
experiment_list()
chosen = pick_experiment(experiments)
if chosen is not None:
    interval = get_settings().refresh_s * 2 if chosen.is_running else None
    st.fragment(run_every=interval)(experiment_view)(chosen.id, chosen.is_running)
