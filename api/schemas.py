"""Request and response bodies of the REST API; their descriptions become the OpenAPI docs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ffcore.config import IMAGE_SIZE, RunConfig
from ffcore.experiment import ExperimentSpec
from ffcore.experiment_table import ErrorStats, ExperimentTable

# One pixel of a digit: a finite value in [0, 1] (1 = ink), as in MNIST scaled to [0, 1].
Pixel = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
PixelRow = Annotated[list[Pixel], Field(min_length=IMAGE_SIZE, max_length=IMAGE_SIZE)]


class ErrorOut(BaseModel):
    detail: str = Field(description="What is wrong and, where it helps, what is allowed.")


MAX_TAGS = 16
MAX_TAG_LENGTH = 40
MAX_NOTE_LENGTH = 2000
TAG_PATTERN = r"^[A-Za-z0-9_.:=-]+$"


def _unique(tags: list[str]) -> list[str]:
    """Tags in their first order, a repeated one kept once."""
    return list(dict.fromkeys(tags))


Tag = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TAG_LENGTH,
        pattern=TAG_PATTERN,
        description=f"1-{MAX_TAG_LENGTH} characters of letters, digits and _ . : = -",
    ),
]
Tags = Annotated[
    list[Tag],
    Field(
        max_length=MAX_TAGS,
        description=f"Labels to find the run by (GET /runs?tag=): at most {MAX_TAGS}, "
        f"each 1-{MAX_TAG_LENGTH} characters of letters, digits and _ . : = - ; a repeated tag is kept once.",
    ),
    AfterValidator(_unique),
]
Note = Annotated[
    str,
    Field(
        max_length=MAX_NOTE_LENGTH,
        description=f"Free text about the run, at most {MAX_NOTE_LENGTH} characters.",
    ),
]


class RunCreate(BaseModel):
    """A run to start: a preset with overrides, or a full configuration (not both)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"preset": "quick", "overrides": {"epochs": 3}}, {"config": {"hidden": [500, 500]}}]
        },
    )

    preset: str | None = Field(
        None, description="A preset name: 'reference', 'paper' or 'quick'. Leave out when giving `config`."
    )
    overrides: dict[str, Any] | None = Field(
        None, description='Settings of RunConfig to change on top of the preset, e.g. {"epochs": 3}.'
    )
    config: RunConfig | None = Field(
        None,
        description="A full run configuration (every field optional: defaults are the reference recipe).",
    )
    tags: Tags = Field(default_factory=list)
    note: Note | None = None


class RunRerun(BaseModel):
    """What to change when running a run again (its config and preset stay)."""

    model_config = ConfigDict(extra="forbid")

    tags: Tags | None = Field(None, description="The new run's tags; left out: the original run's.")
    note: Note | None = Field(None, description="The new run's note; left out: 'rerun of {id}'.")


class RunUpdate(BaseModel):
    """Fields of a run to change; those left out stay as they are."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"tags": ["baseline"], "note": "x"}]}
    )

    tags: Tags | None = Field(None, description="The run's new tags (replacing the old; [] removes all).")
    note: Note | None = Field(None, description='The run\'s new note (null or "" removes it).')


RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class Provenance(BaseModel):
    """How a run was made: recorded by the worker when it started (or resumed) the run."""

    model_config = ConfigDict(from_attributes=True)

    fflab_version: str | None = Field(None, description="The fflab package's version.")
    git_commit: str | None = Field(
        None, description="The code's git commit (FF_GIT_COMMIT or the worker's checkout); null when unknown."
    )
    torch_version: str | None = Field(None, description="PyTorch's version.")
    device: str | None = Field(None, description="The device the worker trained on, e.g. 'cpu', 'cuda:0'.")
    cpu_threads: int | None = Field(None, description="CPU threads PyTorch trained with; null on a GPU.")
    host: str | None = Field(None, description="The worker's host name.")
    python_version: str | None = Field(None, description="The worker's Python version.")


# The API's view of a run, built from the stored record (fflab.store.keys.RunRecord) so that the
# store can change without changing the API. Its name and docstring are the OpenAPI component's.
class RunRecord(BaseModel):
    """What the store knows about one run."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    status: RunStatus
    preset: str | None = None
    config: RunConfig
    created_at: float = Field(description="Unix time the run was submitted.")
    started_at: float | None = Field(None, description="Unix time a worker first started it.")
    finished_at: float | None = None
    updated_at: float | None = None
    progress: float = Field(0.0, description="Fraction of the optimizer steps done, 0..1.")
    epoch: int = Field(0, description="Epochs completed.")
    step: int = Field(0, description="Optimizer steps done.")
    total_steps: int | None = None
    device: str | None = None
    worker: str | None = None
    attempts: int = Field(0, description="How many times a worker started (or resumed) the run.")
    lost_workers: int = Field(
        0,
        description="How many of its attempts ended with their worker lost (killed, out of memory); with "
        "redis_give_ups, at FF_MAX_ATTEMPTS the run ends failed.",
    )
    redis_give_ups: int = Field(
        0,
        description="How many of its attempts gave up on Redis (it could not take their writes for "
        "FF_REDIS_WAIT_S: out of memory, stalled) and handed the run back; with lost_workers, at "
        "FF_MAX_ATTEMPTS the run ends failed.",
    )
    error: str | None = None
    val_error_scan: float | None = Field(None, description="Latest validation error of the label scan.")
    val_error_softmax: float | None = Field(None, description="Latest validation error of the softmax head.")
    test_error_scan: float | None = None
    test_error_softmax: float | None = None
    samples_per_s: float | None = None
    has_model: bool = False
    tags: list[str] = Field(default_factory=list, description="Labels to find the run by (GET /runs?tag=).")
    note: str | None = Field(None, description="Free text about the run.")
    provenance: Provenance | None = Field(
        None,
        description="How the run was made (versions, device, host) by its last attempt; null until a worker "
        "started it.",
    )
    experiment: str | None = Field(None, description="The experiment that made this run, if one did.")
    setting: int | None = Field(
        None, description="Which setting of its experiment's table (0-based) this run trains."
    )


class RunList(BaseModel):
    runs: list[RunRecord] = Field(description="Runs, newest first.")
    total: int = Field(description="How many runs match the filter, across all pages.")
    offset: int
    limit: int


class MetricsPage(BaseModel):
    records: list[dict[str, Any]] = Field(
        description="Metric records oldest first, each with its stream `id` (train, eval and status records, "
        "see docs/architecture.md)."
    )
    next: str | None = Field(
        description="Cursor to pass as `after` for the records that follow; null when the run has none yet."
    )
    thinned: bool = Field(
        False, description="True when train records were left out to honour `max_points` or `every`."
    )


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: Annotated[list[PixelRow], Field(min_length=IMAGE_SIZE, max_length=IMAGE_SIZE)] = Field(
        description="28 rows of 28 pixel values in [0, 1], 1 being ink (white on black, as MNIST)."
    )
    preprocess: bool = Field(
        False,
        description="Apply MNIST-style preprocessing first (fit the ink into 20x20, centre by centre of "
        "mass). Leave false for images that are MNIST digits already.",
    )


class ReceptiveFields(BaseModel):
    run_id: str
    units: list[int] = Field(
        description="The first layer's units shown, those with the largest weights first."
    )
    weights: list[list[list[float]]] = Field(
        description="Per unit, its 784 input weights as 28 rows of 28 (the label pixels: row 0, columns 0-9)."
    )
    label_weights: list[list[float]] = Field(description="Per unit, its weights on the ten label pixels.")
    model_step: int | None = Field(None, description="The training step of the model read.")


class PredictionOut(BaseModel):
    run_id: str
    scan_label: int = Field(description="The label scan's prediction: the label with the most goodness.")
    scan_scores: list[float] = Field(description="Goodness summed over the scan layers, for each label 0-9.")
    scan_layers: list[int] = Field(description="The 0-based layers the label scan sums.")
    goodness: list[list[float]] = Field(
        description="goodness[label][layer]: each layer's goodness with the label embedded."
    )
    thresholds: list[float] = Field(description="Each layer's goodness threshold.")
    head_label: int = Field(description="The softmax head's prediction.")
    head_probs: list[float] = Field(description="The softmax head's probability of each label 0-9.")
    image: list[list[float]] = Field(description="The 28x28 image the model saw, values in [0, 1].")
    model_step: int | None = Field(description="Training step of the model that answered.")
    dataset: str = Field(description="The data set the model was trained on: 'mnist' or 'fashion-mnist'.")
    classes: list[str] = Field(
        description="The names of labels 0-9 in that data set: the digits, or Fashion-MNIST's garments."
    )
    scan_class: str = Field(description="The label scan's prediction by name (classes[scan_label]).")
    head_class: str = Field(description="The softmax head's prediction by name (classes[head_label]).")


class WorkerOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    device: str | None = None
    threads: int | None = Field(None, description="CPU threads it trains with (CPU workers only).")
    host: str | None = None
    pid: int | None = None
    run_id: str | None = Field(None, description="The run it is training, if any.")
    seen_at: float = Field(description="Unix time of its last heartbeat.")


class HealthOut(BaseModel):
    status: str = Field(description="'ok' while the process serves requests.")


class ReadyOut(BaseModel):
    redis: bool = Field(description="Whether Redis answered.")
    workers: list[WorkerOut] = Field(description="Workers that sent a heartbeat recently.")


class AccessOut(BaseModel):
    """What this server asks of clients, and what the X-API-Key sent with the request allows."""

    writes_need_key: bool = Field(
        description="Requests that change something need the API key (the server has FF_API_KEY)."
    )
    reads_need_key: bool = Field(
        description="Every other request under /api/v1 but the probes and this one needs the API key or "
        "the read-only key (the server has FF_READ_KEY)."
    )
    can_read: bool = Field(description="The key sent (or none) may read runs, metrics, models and predict.")
    can_write: bool = Field(description="The key sent (or none) may change something.")


__all__ = [
    "AccessOut",
    "ErrorOut",
    "HealthOut",
    "MetricsPage",
    "PredictRequest",
    "PredictionOut",
    "Provenance",
    "ReadyOut",
    "RunCreate",
    "RunList",
    "RunRecord",
    "RunRerun",
    "RunUpdate",
    "RunStatus",
    "WorkerOut",
]


# --- experiments -------------------------------------------------------------------------------

ExperimentStatus = Literal["running", "succeeded", "failed", "cancelled"]
MAX_EXPERIMENT_NAME = 80


class ExperimentCreate(ExperimentSpec):
    """An experiment spec (ffcore.experiment.ExperimentSpec) with an optional name."""

    name: str | None = Field(None, max_length=MAX_EXPERIMENT_NAME, description="A name to show it by.")


class ExperimentProgress(BaseModel):
    settings_planned: int = Field(description="Most settings the experiment tries (max_trials, or the grid).")
    settings_started: int = Field(description="Settings tried so far (each once, however often drawn).")
    settings_finished: int = Field(description="Settings whose runs all ended (or that were pruned).")
    runs_queued: int
    runs_running: int
    runs_finished: int


class ExperimentSummary(BaseModel):
    """An experiment without its table (GET /experiments)."""

    id: str
    name: str | None = None
    status: ExperimentStatus = Field(
        description="'running' until every setting has ended; 'succeeded' when at least one setting "
        "completed all its seeds, else 'failed' (see `error`); 'cancelled' by POST .../cancel."
    )
    created_at: float
    finished_at: float | None = None
    error: str | None = None
    search: str
    objective: str
    params: list[str] = Field(description="The settings it varies.")
    seeds: list[int]
    progress: ExperimentProgress
    best: int | None = Field(None, description="Index in the table of the best setting so far.")
    best_params: dict[str, Any] | None = None
    best_objective: ErrorStats | None = Field(
        None, description="The best setting's objective: mean and standard deviation over its seeds."
    )


class Experiment(ExperimentSummary):
    """An experiment with its spec and its results table."""

    spec: ExperimentSpec
    table: ExperimentTable = Field(
        description="Per setting: its runs, and the mean and standard deviation (n-1) over its succeeded "
        "runs of the validation and test errors of both heads; `best` is the setting with the lowest mean "
        "objective among those whose seeds all succeeded."
    )


class ExperimentList(BaseModel):
    experiments: list[ExperimentSummary] = Field(description="Experiments, newest first.")
    total: int
    offset: int
    limit: int
