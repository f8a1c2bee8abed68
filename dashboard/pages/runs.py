"""Runs: every run at a glance, a form to start one, cancel and delete, and several runs compared."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import charts, run_schema
from dashboard.api_session import get_client, show_api_error
from dashboard.client import ApiError
from dashboard.models import FINISHED_STATUSES, Run
from dashboard.run_table import runs_frame, status_colour
from dashboard.settings import get_settings

RUNS_SHOWN = 200
client = get_client()

st.title("Runs")
st.caption("Train Forward-Forward networks on MNIST, follow them live, and compare them.")


def load_runs() -> list[Run] | None:
    try:
        return client.list_runs(limit=RUNS_SHOWN).runs
    except ApiError as error:
        show_api_error(error, "list the runs")
        return None


def worker_summary() -> str:
    try:
        workers = client.ready().get("workers", [])
    except ApiError:
        return "unknown"
    if not workers:
        return "none"
    devices = sorted({str(worker.get("device") or "?") for worker in workers})
    return f"{len(workers)} ({', '.join(devices)})"


def overview() -> None:
    """Cards and the table; re-run on a timer so progress moves without reloading the page."""
    runs = load_runs()
    if runs is None:
        return
    st.session_state["runs"] = runs
    count = {
        status: sum(run.status == status for run in runs) for status in ("running", "queued", "succeeded")
    }
    cards = st.columns(5)
    cards[0].metric("Runs", len(runs), border=True)
    cards[1].metric("Running", count["running"], border=True)
    cards[2].metric("Queued", count["queued"], border=True)
    cards[3].metric("Succeeded", count["succeeded"], border=True)
    cards[4].metric("Workers", worker_summary(), border=True)
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


# In a full run the fragment runs inline first and leaves the runs it fetched in the session.
st.session_state["runs"] = []
st.fragment(run_every=get_settings().refresh_s * 2)(overview)()
runs_by_id: dict[str, Run] = {run.id: run for run in st.session_state["runs"]}

form_column, manage_column = st.columns([5, 7], gap="large")

# --- start a run -------------------------------------------------------------------------------


def preset_summary(preset: str) -> str:
    config = run_schema.preset_config(preset)
    widths = config["hidden"]
    network = f"{len(widths)}x{widths[0]}" if len(set(widths)) == 1 else "-".join(map(str, widths))
    return f"{preset} — {network}, {config['epochs']} epochs, {config['negatives']} negatives"


def number_field(name: str, label: str, config: dict[str, Any], preset: str, **kwargs: Any) -> Any:
    info = run_schema.field_infos()[name]
    value = config[name]
    if isinstance(value, int) and not isinstance(value, bool):
        kwargs.setdefault("step", 1)
    else:
        kwargs.setdefault("format", "%g")
    if info.minimum is not None and not info.exclusive_minimum:
        kwargs.setdefault("min_value", type(value)(info.minimum))
    if info.maximum is not None and not info.exclusive_maximum and info.maximum < 1e9:
        kwargs.setdefault("max_value", type(value)(info.maximum))
    return st.number_input(label, value=value, help=info.help, key=f"form_{preset}_{name}", **kwargs)


def choice_field(name: str, label: str, config: dict[str, Any], preset: str) -> Any:
    info = run_schema.field_infos()[name]
    options = list(info.choices)
    return st.selectbox(
        label, options, index=options.index(config[name]), help=info.help, key=f"form_{preset}_{name}"
    )


def start_run_form() -> None:
    st.subheader("Start a run")
    presets = run_schema.preset_names()
    preset = st.selectbox(
        "Preset",
        presets,
        index=presets.index("quick") if "quick" in presets else 0,
        format_func=preset_summary,
        key="form_preset",
        help="A named recipe; the fields below start from its values and whatever you change is sent as "
        "overrides.",
    )
    config = run_schema.preset_config(preset)
    infos = run_schema.field_infos()
    with st.form(f"start_run_{preset}", border=True):
        left, right = st.columns(2)
        with left:
            epochs = number_field("epochs", "Epochs", config, preset)
            batch_size = number_field("batch_size", "Batch size", config, preset)
            lr = number_field("lr", "Learning rate (FF layers)", config, preset, step=0.001)
            negatives = choice_field("negatives", "Negative labels", config, preset)
        with right:
            hidden_text = st.text_input(
                "Hidden layers",
                value=", ".join(str(width) for width in config["hidden"]),
                help=f"{infos['hidden'].description} Comma-separated widths, e.g. 500, 500.",
                key=f"form_{preset}_hidden",
            )
            seed = number_field("seed", "Seed", config, preset)
            head_lr = number_field("head_lr", "Learning rate (softmax head)", config, preset, step=0.001)
            validation = choice_field("validation", "Validation", config, preset)
        with st.expander("More settings"):
            more_left, more_right = st.columns(2)
            with more_left:
                goodness = choice_field("goodness", "Goodness", config, preset)
                threshold = st.number_input(
                    "Threshold",
                    value=config["threshold"],
                    min_value=0.0,
                    format="%g",
                    placeholder="the layer width (sum) or 1 (mean)",
                    help=infos["threshold"].help,
                    key=f"form_{preset}_threshold",
                )
                jitter = number_field("jitter", "Jitter (pixels)", config, preset)
                lr_schedule = choice_field("lr_schedule", "Learning-rate schedule", config, preset)
            with more_right:
                momentum = number_field("momentum", "Momentum", config, preset, step=0.01)
                weight_decay = number_field("weight_decay", "Weight decay", config, preset, step=0.0001)
                peer_norm_weight = number_field(
                    "peer_norm_weight", "Peer-normalisation weight", config, preset
                )
                eval_every = number_field("eval_every", "Evaluate every (epochs)", config, preset)
                device = choice_field("device", "Device", config, preset)
        st.caption(
            "The API checks every value and may set tighter limits than shown (layers, units, epochs); "
            "it says what is allowed if a value is out of range."
        )
        submitted = st.form_submit_button("Start run", type="primary", icon=":material/play_arrow:")
    if not submitted:
        return
    try:
        hidden = run_schema.parse_hidden(hidden_text)
    except ValueError as error:
        st.error(str(error), icon=":material/error:")
        return
    values = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "negatives": negatives, "hidden": hidden,
        "seed": seed, "head_lr": head_lr, "validation": validation, "goodness": goodness,
        "threshold": threshold or None, "jitter": jitter, "lr_schedule": lr_schedule, "momentum": momentum,
        "weight_decay": weight_decay, "peer_norm_weight": peer_norm_weight, "eval_every": eval_every,
        "device": device,
    }  # fmt: skip
    try:
        run = client.create_run(preset, run_schema.overrides_against(preset, values))
    except ApiError as error:
        show_api_error(error, "start the run")
        return
    st.session_state["started_run"] = run.id
    st.session_state["live_run_id"] = run.id
    st.rerun()


with form_column:
    start_run_form()
    if started := st.session_state.get("started_run"):
        st.success(f"Run **{started}** is queued.", icon=":material/check_circle:")
        if st.button("Watch it live", icon=":material/monitoring:", key="watch_started"):
            st.session_state["live_run_id"] = started
            st.switch_page("pages/live.py")

# --- selected runs: actions and comparison -----------------------------------------------------


def act_on(selected: list[Run]) -> None:
    single = selected[0] if len(selected) == 1 else None
    buttons = st.columns(4)
    if buttons[0].button(
        "Watch live", icon=":material/monitoring:", disabled=single is None, width="stretch"
    ):
        st.session_state["live_run_id"] = single.id
        st.switch_page("pages/live.py")
    if buttons[1].button(
        "Draw a digit",
        icon=":material/draw:",
        disabled=single is None or not single.has_model,
        width="stretch",
    ):
        st.session_state["draw_run_id"] = single.id
        st.switch_page("pages/draw.py")
    active = [run for run in selected if run.is_active]
    if buttons[2].button("Cancel", icon=":material/stop_circle:", disabled=not active, width="stretch"):
        for run in active:
            try:
                client.cancel_run(run.id)
            except ApiError as error:
                show_api_error(error, f"cancel run {run.id}")
                return
        st.session_state["run_notice"] = f"Cancelling {', '.join(run.id for run in active)}."
        st.rerun()
    finished = [run for run in selected if run.status in FINISHED_STATUSES]
    if buttons[3].button("Delete", icon=":material/delete:", disabled=not finished, width="stretch"):
        st.session_state["pending_delete"] = [run.id for run in finished]
    pending = [run_id for run_id in st.session_state.get("pending_delete", []) if run_id in runs_by_id]
    if pending:
        st.warning(
            f"Delete {len(pending)} run(s) ({', '.join(pending)}) with their metrics and models? "
            "This cannot be undone.",
            icon=":material/warning:",
        )
        confirm, keep = st.columns(2)
        if confirm.button("Yes, delete", type="primary", width="stretch"):
            st.session_state["pending_delete"] = []
            for run_id in pending:
                try:
                    client.delete_run(run_id)
                except ApiError as error:
                    show_api_error(error, f"delete run {run_id}")
                    return
            st.session_state["run_notice"] = f"Deleted {', '.join(pending)}."
            st.rerun()
        if keep.button("Keep them", width="stretch"):
            st.session_state["pending_delete"] = []
            st.rerun()
    if any(run.is_active for run in selected):
        st.caption("Running and queued runs can be cancelled; delete them once they have stopped.")


def compare(selected: list[Run]) -> None:
    evals_by_run = {}
    for run in selected:
        try:
            page = client.metrics(run.id, kind="eval", max_points=2)  # every eval record, few train ones
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


with manage_column:
    st.subheader("Selected runs")
    if notice := st.session_state.pop("run_notice", None):
        st.success(notice, icon=":material/check_circle:")
    # Forget runs that are gone (deleted) before the widget shows its value.
    if "selected_runs" in st.session_state:
        st.session_state["selected_runs"] = [i for i in st.session_state["selected_runs"] if i in runs_by_id]
    chosen = st.multiselect(
        "Select runs to act on or to compare",
        options=list(runs_by_id),
        format_func=lambda run_id: runs_by_id[run_id].label,
        placeholder="Choose one or more runs",
        key="selected_runs",
    )
    selected = [runs_by_id[run_id] for run_id in chosen if run_id in runs_by_id]
    if selected:
        act_on(selected)
        st.markdown("**Validation error per epoch** — solid: label scan, dashed: softmax head")
        compare(selected)
    else:
        st.caption(
            "Pick runs above to watch one live, draw a digit for it, cancel or delete, or overlay curves."
        )
