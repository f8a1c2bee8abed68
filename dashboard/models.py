"""The dashboard's view of the API's JSON: lenient pydantic models of its own.

They mirror docs/architecture.md's REST API but ignore fields they do not know, so that the API
can grow without breaking the dashboard. Derived values the pages show (duration, ETA, the error
to report) live here so that every page computes them the same way.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ACTIVE_STATUSES = frozenset({"queued", "running"})
# How pages name each data set a run may train on (RunConfig.dataset); a config without one is MNIST's,
# the only data set before Fashion-MNIST came.
DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
DEFAULT_DATASET = "mnist"
FINISHED_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class Run(BaseModel):
    """One training run as GET /runs/{id} describes it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: str
    preset: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    progress: float = 0.0
    epoch: int = 0
    step: int = 0
    total_steps: int | None = None
    device: str | None = None
    worker: str | None = None
    attempts: int = 0
    error: str | None = None
    val_error_scan: float | None = None
    val_error_softmax: float | None = None
    test_error_scan: float | None = None
    test_error_softmax: float | None = None
    samples_per_s: float | None = None
    has_model: bool = False
    tags: list[str] = Field(default_factory=list)
    note: str | None = None
    provenance: dict[str, Any] | None = Field(None, description="How the run was made (its last attempt).")
    experiment: str | None = Field(None, description="The experiment that made the run, if one did.")
    setting: int | None = Field(None, description="Its setting's index in that experiment's table.")

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def epochs(self) -> int | None:
        return self.config.get("epochs")

    @property
    def hidden(self) -> list[int]:
        return list(self.config.get("hidden") or [])

    @property
    def dataset(self) -> str:
        """The data set it trains on: 'mnist' or 'fashion-mnist'."""
        return str(self.config.get("dataset") or DEFAULT_DATASET)

    @property
    def dataset_name(self) -> str:
        """'MNIST', 'Fashion-MNIST' (or the API's own name of a data set this dashboard does not know)."""
        return DATASET_NAMES.get(self.dataset, self.dataset)

    @property
    def is_digits(self) -> bool:
        """Whether it learns handwritten digits (MNIST), the pictures one can draw on the canvas."""
        return self.dataset == DEFAULT_DATASET

    @property
    def architecture(self) -> str:
        """'2x500' for equal widths, '784-500-300' style otherwise."""
        widths = self.hidden
        if not widths:
            return "?"
        if len(set(widths)) == 1:
            return f"{len(widths)}x{widths[0]}"
        return "-".join(str(width) for width in widths)

    def duration_s(self, now: float | None = None) -> float | None:
        """Training time so far (running) or in total (finished); None before it started."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else (now or time.time())
        return max(0.0, end - self.started_at)

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at the pace so far; None when it is not running or too early to tell."""
        if self.status != "running" or self.progress <= 0.0 or self.started_at is None:
            return None
        elapsed = self.duration_s(now) or 0.0
        return max(0.0, elapsed * (1.0 - self.progress) / self.progress)

    @property
    def current_error_scan(self) -> float | None:
        """The test error once there is one, else the latest validation error (label scan)."""
        return self.test_error_scan if self.test_error_scan is not None else self.val_error_scan

    @property
    def current_error_softmax(self) -> float | None:
        return self.test_error_softmax if self.test_error_softmax is not None else self.val_error_softmax

    @property
    def label(self) -> str:
        """How pickers name the run: id, preset, architecture, its data set unless MNIST, and status."""
        dataset = "" if self.is_digits else f" · {self.dataset_name}"
        return f"{self.id} · {self.preset or 'custom'} · {self.architecture}{dataset} · {self.status}"

    @property
    def experiment_label(self) -> str:
        """'abc123 #2': its experiment and setting, or '' for a run started on its own."""
        if not self.experiment:
            return ""
        return self.experiment if self.setting is None else f"{self.experiment} #{self.setting}"


class Access(BaseModel):
    """GET /access: which requests need a key, and what the key sent (or none) allows. An API that does not
    answer it counts as open: the API itself still refuses what a key guards."""

    model_config = ConfigDict(extra="ignore")

    writes_need_key: bool = False
    reads_need_key: bool = False
    can_read: bool = True
    can_write: bool = True


class RunPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    runs: list[Run]
    total: int


class MetricsPage(BaseModel):
    """Metric records (each with its stream `id`) and the cursor to ask for the ones after them."""

    model_config = ConfigDict(extra="ignore")

    records: list[dict[str, Any]]
    next: str | None = None


class Prediction(BaseModel):
    """The answer of POST /runs/{id}/predict."""

    model_config = ConfigDict(extra="ignore")

    scan_label: int
    goodness: list[list[float]] = Field(description="Per label (10), the goodness of every layer.")
    scan_scores: list[float] = Field(default_factory=list)
    head_label: int
    head_probs: list[float] = Field(default_factory=list)
    thresholds: list[float] = Field(default_factory=list)
    scan_layers: list[int] = Field(default_factory=list)
    image: list[list[float]] = Field(default_factory=list, description="The 28x28 image the model saw.")
    model_step: int | None = None
    # Since class names came (an older API answers without them: the labels are then MNIST's digits).
    dataset: str | None = Field(None, description="The model's data set: 'mnist' or 'fashion-mnist'.")
    classes: list[str] = Field(default_factory=list, description="The names of labels 0-9.")
    scan_class: str | None = Field(None, description="The label scan's prediction by name.")
    head_class: str | None = Field(None, description="The softmax head's prediction by name.")

    @property
    def class_names(self) -> list[str]:
        """The ten labels' names: the API's, else the digits."""
        count = len(self.goodness) or 10
        return list(self.classes) if len(self.classes) == count else [str(label) for label in range(count)]

    @property
    def scan_name(self) -> str:
        return self.scan_class or self.class_names[self.scan_label]

    @property
    def head_name(self) -> str:
        return self.head_class or self.class_names[self.head_label]

    @property
    def is_digits(self) -> bool:
        return (self.dataset or DEFAULT_DATASET) == DEFAULT_DATASET


class ReceptiveFields(BaseModel):
    """GET /runs/{id}/receptive-fields: the first layer's input weights, strongest units first."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    units: list[int] = Field(default_factory=list, description="The units' indices in the first layer.")
    weights: list[list[list[float]]] = Field(
        default_factory=list,
        description="Per unit, its 28x28 input weights (label pixels: row 0's first ten).",
    )
    label_weights: list[list[float]] = Field(
        default_factory=list, description="Per unit, its ten label weights."
    )
    model_step: int | None = None


class RunOptions(BaseModel):
    """GET /run-options: the presets in full and RunConfig's JSON schema with the server's limits."""

    model_config = ConfigDict(extra="ignore")

    default_preset: str
    presets: dict[str, dict[str, Any]]
    config_schema: dict[str, Any]


# --- experiments: seed groups and sweeps ---------------------------------------------------------------

ERROR_NAMES = ("val_error_scan", "val_error_softmax", "test_error_scan", "test_error_softmax")
# A setting's or an experiment's runs that will not change any more.
FINISHED_RUN_STATUSES = frozenset({"succeeded", "pruned", "failed", "cancelled"})


class ErrorStats(BaseModel):
    """Mean and sample standard deviation (n-1) of one error over a setting's succeeded runs."""

    model_config = ConfigDict(extra="ignore")

    mean: float | None = None
    std: float | None = None
    n: int = 0


class RunOutcome(BaseModel):
    """One run of a setting: the setting trained with one seed."""

    model_config = ConfigDict(extra="ignore")

    seed: int
    status: str
    run_id: str | None = None
    val_error_scan: float | None = None
    val_error_softmax: float | None = None
    test_error_scan: float | None = None
    test_error_softmax: float | None = None
    epochs: int = 0
    error: str | None = None


class SettingResult(BaseModel):
    """One setting of an experiment, its runs, and its errors' statistics by name (ERROR_NAMES)."""

    model_config = ConfigDict(extra="ignore")

    trial: int
    params: dict[str, Any]
    status: str
    runs: list[RunOutcome] = Field(default_factory=list)
    stats: dict[str, ErrorStats] = Field(default_factory=dict)

    def stat(self, name: str) -> ErrorStats:
        return self.stats.get(name) or ErrorStats()

    @property
    def runs_finished(self) -> int:
        return sum(run.status in FINISHED_RUN_STATUSES for run in self.runs)


class ExperimentTable(BaseModel):
    model_config = ConfigDict(extra="ignore")

    settings: list[SettingResult] = Field(default_factory=list)
    best: int | None = None


class ExperimentProgress(BaseModel):
    model_config = ConfigDict(extra="ignore")

    settings_planned: int = 0
    settings_started: int = 0
    settings_finished: int = 0
    runs_queued: int = 0
    runs_running: int = 0
    runs_finished: int = 0

    @property
    def fraction(self) -> float:
        """Settings finished out of those planned, in [0, 1]."""
        if self.settings_planned <= 0:
            return 0.0
        return min(1.0, self.settings_finished / self.settings_planned)


class ExperimentSummary(BaseModel):
    """An experiment as GET /experiments lists it (no table)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str | None = None
    status: str
    created_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    search: str = "grid"
    objective: str = "val_error_scan"
    params: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    progress: ExperimentProgress = Field(default_factory=ExperimentProgress)
    best: int | None = None
    best_params: dict[str, Any] | None = None
    best_objective: ErrorStats | None = None

    @property
    def is_running(self) -> bool:
        return self.status == "running"

    @property
    def label(self) -> str:
        """How pickers name it: name (or id), search, what it varies. Not its status: a picker keeps the
        label it first drew, and the status changes."""
        title = f"{self.name} ({self.id})" if self.name else self.id
        return f"{title} · {self.search} over {', '.join(self.params) or 'nothing'}"


class Experiment(ExperimentSummary):
    """GET /experiments/{id}: the summary plus its spec and its results table."""

    spec: dict[str, Any] = Field(default_factory=dict)
    table: ExperimentTable = Field(default_factory=ExperimentTable)


class ExperimentPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    experiments: list[ExperimentSummary]
    total: int
