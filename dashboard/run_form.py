"""The Runs page's start-run form, built from GET /run-options: a preset, its settings, tags and a note.

Not a page of its own: dashboard/views/runs.py draws it beside the runs it manages.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import run_schema
from dashboard.access import write_lock_notice
from dashboard.api_session import get_client, get_run_options, show_api_error
from dashboard.client import ApiError
from dashboard.navigation import LIVE_PAGE, LIVE_RUN_ID

# The form's first preset: it trains in about a minute, where the API's default takes hours on a CPU.
FORM_PRESET = "quick"
STARTED_RUN = "started_run"
DATASET_CHOICES = {
    "mnist": "MNIST (handwritten digits)",
    "fashion-mnist": "Fashion-MNIST (clothing)",
}  # session key: the run the form started last, for the "Watch it live" button


def number_field(
    name: str,
    label: str,
    config: dict[str, Any],
    infos: dict[str, run_schema.FieldInfo],
    preset: str,
    **kwargs: Any,
) -> Any:
    info = infos[name]
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


def choice_field(
    name: str,
    label: str,
    config: dict[str, Any],
    infos: dict[str, run_schema.FieldInfo],
    preset: str,
    names: dict[str, str] | None = None,
) -> Any:
    """A selectbox of the schema's choices for `name`; `names` shows some choices by another name."""
    info = infos[name]
    options = list(info.choices)
    return st.selectbox(
        label,
        options,
        index=options.index(config[name]),
        format_func=lambda choice: (names or {}).get(choice, str(choice)),
        help=info.help,
        key=f"form_{preset}_{name}",
    )


def preset_selectbox(options: Any, label: str, key: str, help: str) -> str:
    """A choice of the server's presets, each with its summary; FORM_PRESET preselected when it exists."""
    presets = list(options.presets)
    first = FORM_PRESET if FORM_PRESET in presets else options.default_preset
    return st.selectbox(
        label,
        presets,
        index=presets.index(first) if first in presets else 0,
        format_func=lambda name: run_schema.preset_summary(name, options.presets[name]),
        key=key,
        help=help,
    )


def start_run_form() -> None:
    st.subheader("Start a run")
    try:
        options = get_run_options()
    except ApiError as error:
        show_api_error(error, "load the run options")
        return
    preset = preset_selectbox(
        options,
        "Preset",
        key="form_preset",
        help="A named recipe; the fields below start from its values and whatever you change is sent as "
        "overrides.",
    )
    config = options.presets[preset]
    infos = run_schema.field_infos(options.config_schema)
    locked = write_lock_notice()
    with st.form(f"start_run_{preset}", border=True):
        left, right = st.columns(2)
        with left:
            # An API from before Fashion-MNIST has no data set to choose: it trains on MNIST.
            dataset = (
                choice_field("dataset", "Data set", config, infos, preset, names=DATASET_CHOICES)
                if "dataset" in infos and "dataset" in config
                else None
            )
            epochs = number_field("epochs", "Epochs", config, infos, preset)
            batch_size = number_field("batch_size", "Batch size", config, infos, preset)
            lr = number_field("lr", "Learning rate (FF layers)", config, infos, preset, step=0.001)
            negatives = choice_field("negatives", "Negative labels", config, infos, preset)
        with right:
            hidden_text = st.text_input(
                "Hidden layers",
                value=", ".join(str(width) for width in config["hidden"]),
                help=f"{infos['hidden'].description} Comma-separated widths, e.g. 500, 500. "
                f"Allowed: {infos['hidden'].limits}.",
                key=f"form_{preset}_hidden",
            )
            seed = number_field("seed", "Seed", config, infos, preset)
            head_lr = number_field(
                "head_lr", "Learning rate (softmax head)", config, infos, preset, step=0.001
            )
            validation = choice_field("validation", "Validation", config, infos, preset)
        with st.expander("More settings"):
            more_left, more_right = st.columns(2)
            with more_left:
                goodness = choice_field("goodness", "Goodness", config, infos, preset)
                threshold = st.number_input(
                    "Threshold",
                    value=config["threshold"],
                    min_value=0.0,
                    format="%g",
                    placeholder="the layer width (sum) or 1 (mean)",
                    help=infos["threshold"].help,
                    key=f"form_{preset}_threshold",
                )
                jitter = number_field("jitter", "Jitter (pixels)", config, infos, preset)
                # An API from before these augmentations has neither: nothing to send.
                flip = (
                    st.checkbox(
                        "Mirror left to right",
                        value=config["flip"],
                        help=infos["flip"].help,
                        key=f"form_{preset}_flip",
                    )
                    if "flip" in infos and "flip" in config
                    else None
                )
                augment = (
                    choice_field("augment", "Style augmentation", config, infos, preset)
                    if "augment" in infos and "augment" in config
                    else None
                )
                lr_schedule = choice_field("lr_schedule", "Learning-rate schedule", config, infos, preset)
            with more_right:
                momentum = number_field("momentum", "Momentum", config, infos, preset, step=0.01)
                weight_decay = number_field(
                    "weight_decay", "Weight decay", config, infos, preset, step=0.0001
                )
                peer_norm_weight = number_field(
                    "peer_norm_weight", "Peer-normalisation weight", config, infos, preset
                )
                eval_every = number_field("eval_every", "Evaluate every (epochs)", config, infos, preset)
                device = choice_field("device", "Device", config, infos, preset)
        tags_text = st.text_input(
            "Tags",
            placeholder="e.g. baseline, lr=1e-3",
            help="Optional labels to find the run by: separated by commas or spaces; letters, digits and "
            "_ . : = - only.",
            key="form_tags",
        )
        note = st.text_area("Note", placeholder="Optional: what this run is for", key="form_note")
        submitted = st.form_submit_button(
            "Start run", type="primary", icon=":material/play_arrow:", disabled=locked
        )
    if not submitted or locked:
        return
    try:
        hidden = run_schema.parse_hidden(hidden_text)
    except ValueError as error:
        st.error(str(error), icon=":material/error:")
        return
    values = {
        "dataset": dataset, "epochs": epochs, "batch_size": batch_size, "lr": lr, "negatives": negatives,
        "hidden": hidden, "seed": seed, "head_lr": head_lr, "validation": validation, "goodness": goodness,
        "threshold": threshold or None, "jitter": jitter, "lr_schedule": lr_schedule, "momentum": momentum,
        "weight_decay": weight_decay, "peer_norm_weight": peer_norm_weight, "eval_every": eval_every,
        "device": device,
    }  # fmt: skip
    augmentations = {"flip": flip, "augment": augment}
    values.update({name: value for name, value in augmentations.items() if value is not None})
    try:
        run = get_client().create_run(
            preset,
            run_schema.overrides_against(config, values),
            tags=run_schema.parse_tags(tags_text),
            note=note.strip() or None,
        )
    except ApiError as error:
        show_api_error(error, "start the run")
        return
    st.session_state[STARTED_RUN] = run.id
    st.session_state[LIVE_RUN_ID] = run.id
    st.rerun()


def started_run_notice() -> None:
    if started := st.session_state.get(STARTED_RUN):
        st.success(f"Run **{started}** is queued.", icon=":material/check_circle:")
        if st.button("Watch it live", icon=":material/monitoring:", key="watch_started"):
            st.session_state[LIVE_RUN_ID] = started
            st.switch_page(LIVE_PAGE)
