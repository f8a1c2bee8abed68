"""Runs: every run at a glance, a form to start one, cancel and delete, and several runs compared."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, run_schema
from dashboard.access import write_lock, write_lock_notice
from dashboard.api_session import get_client, show_api_error
from dashboard.client import ApiError
from dashboard.models import FINISHED_STATUSES, Run
from dashboard.navigation import DRAW_PAGE, DRAW_RUN_ID, EXPERIMENT_QUERY, LIVE_PAGE, LIVE_RUN_ID
from dashboard.run_form import start_run_form, started_run_notice
from dashboard.run_table import runs_frame, status_colour
from dashboard.settings import get_settings

RUNS_SHOWN = 200
# This page's own session keys (the form's are in dashboard/run_form.py).
RUN_NOTICE = "run_notice"  # what the last cancel or delete did, shown once after the rerun
PENDING_DELETE = "pending_delete"  # runs waiting for "Yes, delete"
SELECTED_RUNS = "selected_runs"  # the multiselect's key
TAG_FILTER = "tag_filter"  # the table's tag filter (sent to the API as ?tag=)
EXPERIMENT_FILTER = "experiment_filter"  # the table's experiment filter (?experiment=); "" for all runs

# --- the overview: cards and table ---------------------------------------------------------------


def worker_summary() -> str:
    try:
        workers = get_client().ready().get("workers", [])
    except ApiError:
        return "unknown"
    if not workers:
        return "none"
    devices = sorted({str(worker.get("device") or "?") for worker in workers})
    return f"{len(workers)} ({', '.join(devices)})"


def link_experiment_filter() -> None:
    """Keep the URL's ?experiment= in step with the picker, so the page's link shows what it shows."""
    if chosen := st.session_state.get(EXPERIMENT_FILTER):
        st.query_params[EXPERIMENT_QUERY] = chosen
    else:
        st.query_params.pop(EXPERIMENT_QUERY, None)


def experiment_filter() -> str | None:
    """A picker of the experiments whose runs to list; None for every run.

    The URL's ?experiment= says which ("Its runs" on the Experiments page links here with it, and a
    shared link does the same); the picker changes the URL in its callback, so a URL that differs from
    the picker at the start of a run is a link just followed, and wins."""
    linked = st.query_params.get(EXPERIMENT_QUERY, "")
    if linked != st.session_state.get(EXPERIMENT_FILTER, ""):
        st.session_state[EXPERIMENT_FILTER] = linked
    try:
        experiments = get_client().list_experiments(limit=RUNS_SHOWN).experiments
    except ApiError:
        experiments = []  # an API without experiments: every run is its own
    labels = {experiment.id: experiment.label for experiment in experiments}
    if st.session_state.get(EXPERIMENT_FILTER) not in ("", *labels):
        st.session_state[EXPERIMENT_FILTER] = ""  # it was deleted, or the link names none
        link_experiment_filter()
    chosen = st.selectbox(
        "Filter by experiment",
        ["", *labels],
        format_func=lambda i: labels.get(i, "All runs"),
        key=EXPERIMENT_FILTER,
        on_change=link_experiment_filter,
        help="Show only the runs one experiment made.",
    )
    return chosen or None


@st.fragment(run_every=get_settings().refresh_s * 2)
def overview(tag: str | None = None, experiment: str | None = None) -> None:
    """Cards and the table, fetched and drawn anew on a timer so that progress moves by itself; only
    the runs tagged `tag`, and those of `experiment`, when given."""
    try:
        runs = get_client().list_runs(limit=RUNS_SHOWN, tag=tag, experiment=experiment).runs
    except ApiError as error:
        show_api_error(error, "list the runs")
        return
    count = {
        status: sum(run.status == status for run in runs) for status in ("running", "queued", "succeeded")
    }
    cards = st.columns(5)
    cards[0].metric("Runs", len(runs), border=True)
    cards[1].metric("Running", count["running"], border=True)
    cards[2].metric("Queued", count["queued"], border=True)
    cards[3].metric("Succeeded", count["succeeded"], border=True)
    cards[4].metric("Workers", worker_summary(), border=True)
    if not runs and experiment:
        st.info(f"Experiment **{experiment}** has no runs{f' tagged **{tag}**' if tag else ''}.")
        return
    if not runs and tag:
        st.info(f"No run is tagged **{tag}**.")
        return
    if not runs:
        st.info("No runs yet. Start one with the form below: the **quick** preset trains in under a minute.")
        return
    st.dataframe(
        runs_frame(runs)
        .style.map(status_colour, subset=["status"])
        .format("{:.2%}", subset=["error_scan", "error_softmax"], na_rep=""),
        hide_index=True,
        width="stretch",
        key="runs_table",
        column_config={
            "run": st.column_config.TextColumn("Run", width="medium"),
            "status": st.column_config.TextColumn("Status"),
            "tags": st.column_config.TextColumn("Tags"),
            "experiment": st.column_config.TextColumn(
                "Experiment", help="The experiment that made the run, and # its setting"
            ),
            "dataset": st.column_config.TextColumn("Data set", help="MNIST (digits) or Fashion-MNIST"),
            "preset": st.column_config.TextColumn("Preset"),
            "network": st.column_config.TextColumn("Network", help="Hidden layers: count x width"),
            "epoch": st.column_config.TextColumn("Epoch"),
            "progress": st.column_config.ProgressColumn(
                "Progress", min_value=0.0, max_value=1.0, format="percent"
            ),
            "eta": st.column_config.TextColumn("ETA"),
            "error_scan": st.column_config.NumberColumn(
                "Error (scan)",
                format="percent",
                help="Test error when finished, else the latest validation error",
            ),
            "error_softmax": st.column_config.NumberColumn("Error (softmax)", format="percent"),
            "device": st.column_config.TextColumn("Device"),
            "duration": st.column_config.TextColumn("Duration"),
            "created": st.column_config.DatetimeColumn("Created", format="MMM D, HH:mm:ss"),
            "message": st.column_config.TextColumn("Message", help="Why a run failed"),
        },
    )


# --- selected runs: actions and comparison -------------------------------------------------------


def act_on(selected: list[Run], runs_by_id: dict[str, Run]) -> None:
    client = get_client()
    single = selected[0] if len(selected) == 1 else None
    locked = write_lock_notice()  # run again, cancel and delete need a key the API takes for changes
    buttons = st.columns(5)
    if buttons[0].button(
        "Watch live", icon=":material/monitoring:", disabled=single is None, width="stretch"
    ):
        st.session_state[LIVE_RUN_ID] = single.id
        st.switch_page(LIVE_PAGE)
    if buttons[1].button(
        "Draw or upload",
        icon=":material/draw:",
        disabled=single is None or not single.has_model,
        width="stretch",
    ):
        st.session_state[DRAW_RUN_ID] = single.id
        st.switch_page(DRAW_PAGE)
    if buttons[2].button(
        "Run again",
        icon=":material/replay:",
        disabled=locked or single is None,
        width="stretch",
        key="run_again",
    ):
        try:
            copy = client.rerun(single.id)
        except ApiError as error:
            show_api_error(error, f"run {single.id} again")
            return
        st.session_state[RUN_NOTICE] = (
            f"Run **{copy.id}** is queued: {single.id} again, with its configuration."
        )
        st.session_state[LIVE_RUN_ID] = copy.id
        st.rerun()
    active = [run for run in selected if run.is_active]
    if buttons[3].button(
        "Cancel", icon=":material/stop_circle:", disabled=locked or not active, width="stretch"
    ):
        for run in active:
            try:
                client.cancel_run(run.id)
            except ApiError as error:
                show_api_error(error, f"cancel run {run.id}")
                return
        st.session_state[RUN_NOTICE] = f"Cancelling {', '.join(run.id for run in active)}."
        st.rerun()
    finished = [run for run in selected if run.status in FINISHED_STATUSES]
    if buttons[4].button(
        "Delete", icon=":material/delete:", disabled=locked or not finished, width="stretch"
    ):
        st.session_state[PENDING_DELETE] = [run.id for run in finished]
    pending = [run_id for run_id in st.session_state.get(PENDING_DELETE, []) if run_id in runs_by_id]
    if locked:  # a confirmation asked before the key was taken away
        pending = st.session_state[PENDING_DELETE] = []
    if pending:
        st.warning(
            f"Delete {len(pending)} run(s) ({', '.join(pending)}) with their metrics and models? "
            "This cannot be undone.",
            icon=":material/warning:",
        )
        confirm, keep = st.columns(2)
        if confirm.button("Yes, delete", type="primary", width="stretch"):
            st.session_state[PENDING_DELETE] = []
            for run_id in pending:
                try:
                    client.delete_run(run_id)
                except ApiError as error:
                    show_api_error(error, f"delete run {run_id}")
                    return
            st.session_state[RUN_NOTICE] = f"Deleted {', '.join(pending)}."
            st.rerun()
        if keep.button("Keep them", width="stretch"):
            st.session_state[PENDING_DELETE] = []
            st.rerun()
    if any(run.is_active for run in selected):
        st.caption("Running and queued runs can be cancelled; delete them once they have stopped.")


def run_details(run: Run) -> None:
    """One selected run's note, tags and provenance, and a small form that edits the note and tags."""
    with st.expander(f"Details of {run.id}: note, tags and how it was made", expanded=True):
        if run.note:
            st.markdown(f"**Note:** {run.note}")
        st.markdown(f"**Tags:** {', '.join(f'`{tag}`' for tag in run.tags) or 'none'}")
        if run.provenance:
            st.dataframe(
                [{"made with": name, "value": "" if value is None else str(value)}
                 for name, value in run.provenance.items()],
                hide_index=True,
                width="stretch",
                key=f"provenance_{run.id}",
            )  # fmt: skip
        else:
            st.caption("Provenance appears once a worker has started the run.")
        with st.form(f"edit_{run.id}", border=False):
            tags_text = st.text_input("Tags", value=", ".join(run.tags), key=f"edit_tags_{run.id}")
            note = st.text_area("Note", value=run.note or "", key=f"edit_note_{run.id}")
            lock = write_lock()  # act_on, above, says why
            saved = st.form_submit_button(
                "Save note and tags", icon=":material/save:", disabled=lock is not None, help=lock
            )
        if saved and lock is None:
            try:
                get_client().edit_run(run.id, tags=run_schema.parse_tags(tags_text), note=note.strip())
            except ApiError as error:
                show_api_error(error, f"edit run {run.id}")
                return
            st.session_state[RUN_NOTICE] = f"Saved the note and tags of {run.id}."
            st.rerun()


def compare(selected: list[Run]) -> None:
    evals_by_run = {}
    for run in selected:
        try:
            page = get_client().metrics(run.id, kind="eval", max_points=2)  # every eval, few train records
        except ApiError as error:
            show_api_error(error, f"load the curves of run {run.id}")
            return
        evals_by_run[f"{run.id} ({run.preset or 'custom'}, {run.architecture})"] = charts.eval_frame(
            page.records
        )
    if not any(len(frame) for frame in evals_by_run.values()):
        st.info("No evaluations yet: the curves appear after each run's first epoch.")
        return
    st.altair_chart(charts.overlay_chart(evals_by_run), width="stretch", height=320)


def selected_runs_panel() -> None:
    st.subheader("Selected runs")
    if notice := st.session_state.pop(RUN_NOTICE, None):
        st.success(notice, icon=":material/check_circle:")
    try:
        runs = get_client().list_runs(limit=RUNS_SHOWN).runs
    except ApiError:
        runs = []  # the overview above already says why
    runs_by_id = {run.id: run for run in runs}
    # Forget runs that are gone (deleted) before the widget shows its value.
    if SELECTED_RUNS in st.session_state:
        st.session_state[SELECTED_RUNS] = [i for i in st.session_state[SELECTED_RUNS] if i in runs_by_id]
    chosen = st.multiselect(
        "Select runs to act on or to compare",
        options=list(runs_by_id),
        format_func=lambda run_id: runs_by_id[run_id].label,
        placeholder="Choose one or more runs",
        key=SELECTED_RUNS,
    )
    selected = [runs_by_id[run_id] for run_id in chosen if run_id in runs_by_id]
    if selected:
        act_on(selected, runs_by_id)
        if len(selected) == 1:
            run_details(selected[0])
        st.markdown(
            "**Error per epoch** (validation; test for runs that keep no validation set) — solid: label "
            "scan, dashed: softmax head"
        )
        compare(selected)
    else:
        st.caption(
            "Pick runs above to watch one live, ask its model about a picture, cancel or delete, or overlay "
            "curves."
        )


# --- layout ----------------------------------------------------------------------------------------

st.title("Runs")
st.caption("Train Forward-Forward networks on MNIST or Fashion-MNIST, follow them live, and compare them.")
tag_column, experiment_column = st.columns(2)
with tag_column:
    tag_filter = st.text_input(
        "Filter by tag",
        placeholder="a tag, e.g. baseline",
        key=TAG_FILTER,
        help="Show only the runs with this tag.",
    ).strip()
with experiment_column:
    chosen_experiment = experiment_filter()
overview(tag_filter or None, chosen_experiment)
form_column, manage_column = st.columns([5, 7], gap="large")
with form_column:
    start_run_form()
    started_run_notice()
with manage_column:
    selected_runs_panel()
