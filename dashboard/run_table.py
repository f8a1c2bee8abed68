"""The Runs page's table: one row per run, with the columns a user scans for."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from dashboard.formatting import STATUS_COLOURS, format_duration
from dashboard.models import Run

COLUMNS = [
    "run", "status", "tags", "experiment", "dataset", "preset", "network", "epoch", "progress", "eta",
    "error_scan", "error_softmax", "device", "duration", "created", "message",
]  # fmt: skip


def runs_frame(runs: Sequence[Run], now: float | None = None) -> pd.DataFrame:
    """The table behind st.dataframe; errors as fractions, times as text ready to read."""
    now = now or time.time()
    rows = []
    for run in runs:
        eta = run.eta_s(now)
        rows.append(
            {
                "run": run.id,
                "status": run.status,
                "tags": ", ".join(run.tags),
                "experiment": run.experiment_label,
                "dataset": run.dataset_name,
                "preset": run.preset or "custom",
                "network": run.architecture,
                "epoch": f"{run.epoch}/{run.epochs}" if run.epochs else str(run.epoch),
                "progress": run.progress,
                "eta": format_duration(eta) if eta is not None else "",
                "error_scan": run.current_error_scan,
                "error_softmax": run.current_error_softmax,
                "device": run.device or "",
                "duration": format_duration(run.duration_s(now)) if run.started_at else "",
                "created": datetime.fromtimestamp(run.created_at) if run.created_at else None,
                "message": run.error or "",
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    # All-None columns would be objects and show "None"; as floats they show empty cells.
    for column in ("progress", "error_scan", "error_softmax"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def status_colour(status: str) -> str:
    """CSS for a status cell (pandas Styler), in the colours of the status badges."""
    return f"color: {STATUS_COLOURS.get(status, '#495057')}; font-weight: 600"
