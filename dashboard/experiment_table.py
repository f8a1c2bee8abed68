"""The Experiments page's tables: the list of experiments, and one experiment's results per setting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from dashboard.experiment_spec import format_param_value
from dashboard.formatting import format_mean_std
from dashboard.models import ERROR_NAMES, Experiment, ExperimentSummary

BEST_MARK = "★ best"
LIST_COLUMNS = ["experiment", "name", "status", "search", "varies", "progress", "settings", "runs", "best",
                "created"]  # fmt: skip
# The results table's error columns: the API's names, as the header reads them.
ERROR_TITLES = {
    "val_error_scan": "val error (scan)",
    "val_error_softmax": "val error (softmax)",
    "test_error_scan": "test error (scan)",
    "test_error_softmax": "test error (softmax)",
}


def experiments_frame(experiments: Sequence[ExperimentSummary]) -> pd.DataFrame:
    """One row per experiment: status, how far it is (settings finished of planned) and its best result."""
    rows = []
    for experiment in experiments:
        progress = experiment.progress
        best = experiment.best_objective
        rows.append(
            {
                "experiment": experiment.id,
                "name": experiment.name or "",
                "status": experiment.status,
                "search": experiment.search,
                "varies": ", ".join(experiment.params),
                "progress": progress.fraction,
                "settings": f"{progress.settings_finished}/{progress.settings_planned}",
                "runs": f"{progress.runs_queued} queued · {progress.runs_running} running · "
                f"{progress.runs_finished} finished",
                "best": format_mean_std(best.mean, best.std) if best else "—",
                "created": datetime.fromtimestamp(experiment.created_at) if experiment.created_at else None,
            }
        )
    frame = pd.DataFrame(rows, columns=LIST_COLUMNS)
    frame["progress"] = pd.to_numeric(frame["progress"], errors="coerce").astype(float)
    return frame


def results_frame(experiment: Experiment) -> pd.DataFrame:
    """One row per setting: its params, status, runs finished of its seeds, and each error's mean ± std
    over its succeeded runs; the best setting (the API's `table.best`) is marked in the first column."""
    params = list(experiment.params)
    for setting in experiment.table.settings:  # a spec's params, should the summary lack them
        params += [name for name in setting.params if name not in params]
    columns = ["best", "setting", *params, "status", "runs", *ERROR_TITLES.values()]
    seeds = len(experiment.seeds)
    rows = []
    for index, setting in enumerate(experiment.table.settings):
        row = {"best": BEST_MARK if index == experiment.table.best else "", "setting": index}
        row |= {name: format_param_value(setting.params.get(name)) for name in params}
        row["status"] = setting.status
        row["runs"] = f"{setting.runs_finished}/{seeds or len(setting.runs)}"
        for name in ERROR_NAMES:
            stats = setting.stat(name)
            row[ERROR_TITLES[name]] = format_mean_std(stats.mean, stats.std)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def best_row_style(row: pd.Series) -> list[str]:
    """CSS for a results row (pandas Styler, axis=1): the best setting's row stands out."""
    style = "background-color: #e6fcf5; font-weight: 600" if row.get("best") == BEST_MARK else ""
    return [style] * len(row)
