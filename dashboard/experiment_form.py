"""The Experiments page's form: a base preset, its data set and overrides, the settings to vary, the
search, the seeds.

Not a page of its own: dashboard/views/experiments.py draws it. Its widgets are not in an st.form,
because which fields it shows depends on the settings chosen and on the search (ranges need random or
tpe). Whatever the API refuses comes back as its 422 message, shown as it is.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard import experiment_spec, run_schema
from dashboard.access import write_lock_notice
from dashboard.api_session import get_client, get_run_options, show_api_error
from dashboard.client import ApiError
from dashboard.run_form import DATASET_CHOICES, preset_selectbox

# Session keys this form sets for the page: the experiment it started, and what to say about it.
STARTED_EXPERIMENT = "started_experiment"
EXPERIMENT_NOTICE = "experiment_notice"
DEFAULT_SEEDS = "0, 1, 2"
DEFAULT_PARALLEL = 2


def param_inputs(name: str, kind: str | None, search: str, current: Any) -> experiment_spec.ParamInput:
    """The fields of one varied setting: listed values, or (random/tpe, numeric settings) a range."""
    can_range = kind is not None and search != "grid"
    use_range = can_range and st.toggle(
        f"Range of {name}", key=f"exp_range_{name}", help="Sample between two values (random and tpe)."
    )
    if not use_range:
        text = st.text_input(
            f"Values of {name}",
            key=f"exp_values_{name}",
            placeholder=f"comma separated, e.g. {experiment_spec.format_param_value(current)}, …",
            help="Numbers, names or lists, e.g. 0.001, 0.002 or [500, 500], [1000, 1000].",
        )
        return experiment_spec.ParamInput(name, values_text=text)
    low_column, high_column, log_column = st.columns([2, 2, 1], vertical_alignment="bottom")
    step = 1.0 if kind == "integer" else None
    low = low_column.number_input(f"{name} from", value=None, step=step, format="%g", key=f"exp_low_{name}")
    high = high_column.number_input(f"{name} to", value=None, step=step, format="%g", key=f"exp_high_{name}")
    log = log_column.checkbox("log", key=f"exp_log_{name}", help="Sample on a log scale (both ends > 0).")
    return experiment_spec.ParamInput(name, use_range=True, low=low, high=high, log=log)


def dataset_selectbox(
    column: DeltaGenerator, config: dict[str, Any], infos: dict[str, run_schema.FieldInfo], preset: str
) -> str | None:
    """The base's data set, named as the run form names it; None where the API offers no choice (an API
    from before Fashion-MNIST trains on MNIST)."""
    if "dataset" not in infos or "dataset" not in config:
        return None
    choices = list(infos["dataset"].choices)
    return column.selectbox(
        "Data set",
        choices,
        index=choices.index(config["dataset"]),
        format_func=lambda choice: DATASET_CHOICES.get(choice, str(choice)),
        key=f"exp_{preset}_dataset",
        help=infos["dataset"].help,
    )


def start_experiment_form() -> None:
    try:
        options = get_run_options()
    except ApiError as error:
        show_api_error(error, "load the run options")
        return
    preset = preset_selectbox(
        options,
        "Base preset",
        key="exp_preset",
        help="Every setting starts from this preset and the overrides below.",
    )
    config = options.presets[preset]
    infos = run_schema.field_infos(options.config_schema)
    properties = options.config_schema.get("properties", {})
    dataset_column, epochs_column, batch_column, hidden_column = st.columns(4)
    dataset = dataset_selectbox(dataset_column, config, infos, preset)
    epochs = epochs_column.number_input(
        "Epochs",
        value=config["epochs"],
        min_value=1,
        step=1,
        key=f"exp_{preset}_epochs",
        help=infos["epochs"].help,
    )
    batch_size = batch_column.number_input(
        "Batch size", value=config["batch_size"], min_value=1, step=1, key=f"exp_{preset}_batch_size",
        help=infos["batch_size"].help,
    )  # fmt: skip
    hidden_text = hidden_column.text_input(
        "Hidden layers",
        value=", ".join(str(width) for width in config["hidden"]),
        key=f"exp_{preset}_hidden",
        help="Comma-separated widths, e.g. 500, 500.",
    )
    more_text = st.text_input(
        "More overrides",
        key="exp_more_overrides",
        placeholder="setting=value, e.g. negatives=hard, jitter=1",
        help="Any other settings of the base, separated by commas.",
    )
    search = st.radio(
        "Search",
        experiment_spec.SEARCHES,
        horizontal=True,
        key="exp_search",
        help="grid: every combination of the listed values; random and tpe (Optuna): `max trials` settings "
        "drawn from the values and ranges.",
    )
    varied = st.multiselect(
        "Settings to vary",
        experiment_spec.variable_settings(options.config_schema),
        key="exp_params",
        placeholder="Choose settings, e.g. lr",
        help="For a seed group, choose one setting and list a single value.",
    )
    inputs = [
        param_inputs(name, experiment_spec.setting_kind(properties[name]), search, config.get(name))
        for name in varied
    ]
    seeds_column, objective_column = st.columns(2)
    seeds_text = seeds_column.text_input(
        "Seeds", value=DEFAULT_SEEDS, key="exp_seeds", help="Every setting is trained once per seed."
    )
    objective = objective_column.selectbox(
        "Objective",
        list(experiment_spec.OBJECTIVES),
        format_func=experiment_spec.OBJECTIVES.__getitem__,
        key="exp_objective",
        help="Its mean over the seeds ranks the settings.",
    )
    trials_column, parallel_column, prune_column = st.columns(3, vertical_alignment="bottom")
    max_trials = trials_column.number_input(
        "Max trials",
        value=None,
        min_value=1,
        step=1,
        placeholder="the whole grid" if search == "grid" else "required",
        key="exp_max_trials",
        help="Most settings to try: required for random and tpe.",
    )
    max_parallel = parallel_column.number_input(
        "Max parallel runs", value=DEFAULT_PARALLEL, min_value=1, max_value=64, step=1, key="exp_max_parallel"
    )
    prune = prune_column.checkbox(
        "Prune", value=True, key="exp_prune", help="Stop hopeless settings early (Optuna's MedianPruner)."
    )
    name = st.text_input("Name", key="exp_name", placeholder="Optional: what this experiment is for")
    locked = write_lock_notice()
    started = st.button(
        "Start experiment", type="primary", icon=":material/science:", key="exp_start", disabled=locked
    )
    if not started or locked:
        return
    try:
        overrides = run_schema.overrides_against(
            config,
            {"epochs": epochs, "batch_size": batch_size, "hidden": run_schema.parse_hidden(hidden_text)}
            | ({"dataset": dataset} if dataset is not None else {}),
        ) | experiment_spec.parse_overrides(more_text)
        params = {
            item.name: item.spec(experiment_spec.setting_kind(properties[item.name])) for item in inputs
        }
        spec = experiment_spec.experiment_body(
            preset=preset,
            overrides=overrides,
            params=params,
            search=search,
            seeds=experiment_spec.parse_seeds(seeds_text),
            objective=objective,
            max_trials=max_trials,
            max_parallel=max_parallel,
            prune=prune,
        )
    except ValueError as error:
        st.error(str(error), icon=":material/error:")
        return
    try:
        experiment = get_client().create_experiment(spec, name=name.strip() or None)
    except ApiError as error:
        show_api_error(error, "start the experiment")
        return
    planned = experiment.progress.settings_planned
    st.session_state[STARTED_EXPERIMENT] = experiment.id
    st.session_state[EXPERIMENT_NOTICE] = (
        f"Experiment **{experiment.id}** started: {planned} setting(s) × {len(experiment.seeds)} seed(s)."
    )
    st.rerun()
