"""The results table of an experiment: every run of every setting, and per setting the mean and
standard deviation of its errors; JSON (the pydantic model) and CSV.

Pure Python and pydantic (no torch), like ffcore.experiment, so that the service can build and
serve tables without the training stack.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from ffcore.experiment import ERRORS, ExperimentSpec

# A local sweep's runs end succeeded, pruned or failed; the service's runs are also queued or running
# while they train, and cancelled when their experiment (or their user) cancels them.
RunStatus = Literal["queued", "running", "succeeded", "pruned", "failed", "cancelled"]
SettingStatus = Literal["running", "succeeded", "pruned", "failed", "cancelled"]


class RunOutcome(BaseModel):
    """One run: a setting trained with one seed."""

    model_config = ConfigDict(extra="forbid")

    seed: int
    status: RunStatus = Field(description="'pruned': stopped early by the pruner (first seed only).")
    run_id: str | None = Field(None, description="The service's run (None in a local sweep).")
    val_error_scan: float | None = Field(None, description="The last validation error of the label scan.")
    val_error_softmax: float | None = Field(None, description="The same for the softmax head.")
    test_error_scan: float | None = Field(None, description="Test error after training (succeeded runs).")
    test_error_softmax: float | None = None
    epochs: int = Field(0, description="Epochs completed.")
    error: str | None = Field(None, description="Why a failed run failed.")


class ErrorStats(BaseModel):
    mean: float | None = None
    std: float | None = None
    n: int = 0


def summarize(values: list[float]) -> ErrorStats:
    """Mean and sample standard deviation (n-1 in the denominator) of `values`; std is None for
    fewer than two values, mean None for none."""
    if not values:
        return ErrorStats()
    std = statistics.stdev(values) if len(values) > 1 else None
    return ErrorStats(mean=statistics.mean(values), std=std, n=len(values))


class SettingResult(BaseModel):
    """One setting and its runs. `stats` summarises the errors over the succeeded runs alone:
    mean and sample standard deviation (n-1), std None with a single run."""

    model_config = ConfigDict(extra="ignore")  # computed fields come back when reading table.json

    trial: int = Field(description="Which trial (0-based) first tried this setting.")
    params: dict[str, Any]
    status: SettingStatus = Field(
        description="'running': some of its runs are still to finish (service only); 'succeeded': every "
        "seed trained; 'pruned': the pruner stopped it and its remaining seeds did not run; 'failed': a "
        "run failed; 'cancelled': its experiment was cancelled first."
    )
    runs: list[RunOutcome] = []
    error: str | None = Field(None, description="Why a setting failed without a run (RunConfig refused it).")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def stats(self) -> dict[str, ErrorStats]:
        completed = [run for run in self.runs if run.status == "succeeded"]
        return {
            name: summarize([getattr(run, name) for run in completed if getattr(run, name) is not None])
            for name in ERRORS
        }


class ExperimentTable(BaseModel):
    """The results of an experiment: its spec, and every setting tried with its runs."""

    model_config = ConfigDict(extra="ignore")

    spec: ExperimentSpec
    settings: list[SettingResult] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def best(self) -> int | None:
        """Index in `settings` of the lowest mean objective among settings whose seeds all succeeded."""
        objective = self.spec.objective
        candidates = [
            (s.stats[objective].mean, i)
            for i, s in enumerate(self.settings)
            if s.status == "succeeded" and s.stats[objective].mean is not None
        ]
        return min(candidates)[1] if candidates else None

    @property
    def best_setting(self) -> SettingResult | None:
        return None if self.best is None else self.settings[self.best]

    def csv_columns(self) -> list[str]:
        columns = ["trial", "status", *self.spec.params, "runs", "succeeded"]
        for name in ERRORS:
            columns += [f"{name}_mean", f"{name}_std"]
        return columns

    def to_csv(self) -> str:
        """One row per setting: its params (JSON-encoded), status, how many runs it has and how many
        succeeded, then the mean and std of each error over the succeeded runs (empty when None)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.csv_columns(), lineterminator="\n")
        writer.writeheader()
        for setting in self.settings:
            row: dict[str, Any] = {"trial": setting.trial, "status": setting.status}
            row |= {name: json.dumps(value) for name, value in setting.params.items()}
            row["runs"] = len(setting.runs)
            row["succeeded"] = sum(run.status == "succeeded" for run in setting.runs)
            for name, stat in setting.stats.items():
                row[f"{name}_mean"] = "" if stat.mean is None else repr(stat.mean)
                row[f"{name}_std"] = "" if stat.std is None else repr(stat.std)
            writer.writerow(row)
        return out.getvalue()

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)
