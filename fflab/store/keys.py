"""The Redis key layout of FF Lab and how a run is encoded in it: the one module that knows both.

The stores next to this module (`runs`, `attempts`, `workers`, `experiments`) build every key
through the functions here. Keys (all under the `ff:` prefix):

    ff:runs                 ZSET    run id -> creation time; the time-ordered index of runs
    ff:run:{id}             HASH    the run record (see `RunRecord`); `config`, `tags` and `provenance`
                                    hold JSON
    ff:run:{id}:metrics     STREAM  one entry per metric or status record, field `data` = JSON;
                                    capped with XADD MAXLEN ~; stream ids are the cursors
    ff:run:{id}:model       STRING  the trained model (safetensors bytes)
    ff:run:{id}:state       STRING  the latest resumable training state (safetensors bytes)
    ff:run:{id}:cancel      STRING  present when a cancel was requested
    ff:run:{id}:lease       STRING  the worker that trains the run; expires unless renewed (heartbeat)
    ff:run:{id}:checkpoint  HASH    where the saved state stands: step, epoch, at, and stream_id (the
                                    last metrics entry it covers; a resumed run drops later records)
    ff:workers              HASH    worker name -> JSON {name, device, host, pid, run_id, seen_at}
    ff:retention:turn       STRING  present (with a TTL) while a worker's retention pass is recent: the
                                    next pass among all workers waits for it to expire (worker.retention)

    ff:experiments                  ZSET    experiment id -> creation time
    ff:experiment:{id}              HASH    the experiment record (see `ExperimentRecord`); `spec` holds JSON
    ff:experiment:{id}:trials       HASH    Optuna trial number -> JSON `TrialEntry` (its setting, and
                                            whether the study has been told its outcome)
    ff:experiment:{id}:runs         HASH    "{setting}:{seed}" -> run id, once the run's task was sent
    ff:experiment:{id}:pruned       SET     ids of its runs that the pruner stopped
    ff:experiment:{id}:lock         STRING  held by the coordinator while it advances the experiment
    ff:experiment:{id}:optuna:*     STRING  the Optuna study's journal (optuna's JournalRedisBackend)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from ffcore.config import RunConfig
from ffcore.experiment import ExperimentSpec

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

PREFIX = "ff:"
RUN_ID_LENGTH = 12  # hex digits of a run or experiment id
RUNS_INDEX = PREFIX + "runs"
WORKERS = PREFIX + "workers"
EXPERIMENTS_INDEX = PREFIX + "experiments"
RETENTION_TURN = PREFIX + "retention:turn"


def run_key(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}"


def metrics_key(run_id: str) -> str:
    return f"{run_key(run_id)}:metrics"


def model_key(run_id: str) -> str:
    return f"{run_key(run_id)}:model"


def state_key(run_id: str) -> str:
    return f"{run_key(run_id)}:state"


def cancel_key(run_id: str) -> str:
    return f"{run_key(run_id)}:cancel"


def lease_key(run_id: str) -> str:
    return f"{run_key(run_id)}:lease"


def checkpoint_key(run_id: str) -> str:
    return f"{run_key(run_id)}:checkpoint"


def all_run_keys(run_id: str) -> list[str]:
    """Every key that holds something of the run (what deleting it removes, besides its index entry)."""
    return [
        run_key(run_id),
        metrics_key(run_id),
        model_key(run_id),
        state_key(run_id),
        cancel_key(run_id),
        lease_key(run_id),
        checkpoint_key(run_id),
    ]


def read_all_runs(
    client: Any, *fields: str, newest_first: bool = False, created_before: float | None = None
) -> list[tuple[str, list[bytes | None]]]:
    """(run id, values of `fields`) of every run in the index (only those created before the Unix time
    `created_before`, when given), in one pipelined round trip: what the stores' filters and counts
    read (fine for thousands of runs)."""
    if created_before is None:
        order = client.zrevrange if newest_first else client.zrange
        raw_ids = order(RUNS_INDEX, 0, -1)
    else:  # the index's scores are the creation times
        raw_ids = client.zrangebyscore(RUNS_INDEX, "-inf", f"({created_before!r}")
        raw_ids = raw_ids[::-1] if newest_first else raw_ids
    ids = [i.decode() for i in raw_ids]
    pipe = client.pipeline(transaction=False)
    for run_id in ids:
        pipe.hmget(run_key(run_id), *fields)
    return list(zip(ids, pipe.execute(), strict=True))


def experiment_key(experiment_id: str) -> str:
    return f"{PREFIX}experiment:{experiment_id}"


def experiment_trials_key(experiment_id: str) -> str:
    return f"{experiment_key(experiment_id)}:trials"


def experiment_runs_key(experiment_id: str) -> str:
    return f"{experiment_key(experiment_id)}:runs"


def experiment_pruned_key(experiment_id: str) -> str:
    return f"{experiment_key(experiment_id)}:pruned"


def experiment_lock_key(experiment_id: str) -> str:
    return f"{experiment_key(experiment_id)}:lock"


def optuna_prefix(experiment_id: str) -> str:
    """The key prefix of the experiment's Optuna journal (JournalRedisBackend appends ':log:N' etc.)."""
    return f"{experiment_key(experiment_id)}:optuna"


def experiment_run_id(experiment_id: str, setting: int, seed: int) -> str:
    """The id of an experiment's run: derived, not drawn, so that creating it twice (a coordinator
    that died half-way and ran again) finds the run already there instead of making a second one."""
    digest = hashlib.sha256(f"{experiment_id}:{setting}:{seed}".encode()).hexdigest()
    return digest[:RUN_ID_LENGTH]


class Provenance(BaseModel):
    """How an attempt of a run was made: written by the worker when it claims the run."""

    fflab_version: str | None = Field(None, description="The fflab package's version.")
    git_commit: str | None = Field(None, description="The code's git commit, when known.")
    torch_version: str | None = Field(None, description="PyTorch's version.")
    device: str | None = Field(None, description="The device the worker trains on, e.g. 'cpu', 'cuda:0'.")
    cpu_threads: int | None = Field(None, description="CPU threads PyTorch trains with (CPU workers only).")
    host: str | None = Field(None, description="The worker's host name.")
    python_version: str | None = Field(None, description="The worker's Python version.")


class RunRecord(BaseModel):
    """A run as stored in its hash (the API answers with its own model, api.schemas.RunRecord)."""

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
    lost_workers: int = Field(0, description="How many of its attempts ended with their worker lost.")
    redis_give_ups: int = Field(
        0,
        description="How many of its attempts gave up on Redis (it could not take their writes for "
        "FF_REDIS_WAIT_S) and handed the run back; with lost_workers, counted against FF_MAX_ATTEMPTS.",
    )
    error: str | None = None
    val_error_scan: float | None = Field(None, description="Latest validation error of the label scan.")
    val_error_softmax: float | None = Field(None, description="Latest validation error of the softmax head.")
    test_error_scan: float | None = None
    test_error_softmax: float | None = None
    samples_per_s: float | None = None
    has_model: bool = False
    tags: list[str] = Field(default_factory=list, description="Labels given at submit or later (PATCH).")
    note: str | None = Field(None, description="Free text given at submit or later (PATCH).")
    provenance: Provenance | None = Field(
        None, description="How the last attempt was made; None until a worker started the run."
    )
    experiment: str | None = Field(None, description="The experiment that made the run, if one did.")
    setting: int | None = Field(None, description="The run's setting in its experiment's table.")


class Checkpoint(BaseModel):
    """Where a run's stored training state stands."""

    stream_id: str = Field(description="Last metrics entry written before the state was saved.")
    step: int
    epoch: int
    at: float


def status_event(
    status: RunStatus,
    at: float,
    *,
    error: str | None = None,
    reason: str | None = None,
    worker: str | None = None,
) -> dict[str, Any]:
    """The record a status change leaves in the run's metrics stream (the one place that builds it).

    Optional fields appear only when given. The claim script adds `attempt`, a number only it knows.
    """
    event: dict[str, Any] = {"kind": "status", "status": status, "at": at}
    for name, value in (("error", error), ("reason", reason), ("worker", worker)):
        if value:
            event[name] = value
    return event


def rewind_event(step: int, epoch: int, at: float) -> dict[str, Any]:
    """The record a resumed attempt leaves in the run's metrics stream once it dropped the dead
    attempt's records past its checkpoint: viewers that already received those drop every train and
    eval record after `step` (where training starts again), so that curves never fold back."""
    return {"kind": "rewind", "step": step, "epoch": epoch, "at": at}


# Hash fields that are not plain strings; an empty string stands for None.
_INT_FIELDS = {"epoch", "step", "total_steps", "attempts", "lost_workers", "redis_give_ups", "setting"}
_FLOAT_FIELDS = {
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "progress",
    "val_error_scan",
    "val_error_softmax",
    "test_error_scan",
    "test_error_softmax",
    "samples_per_s",
}


def decode_record(raw: dict[bytes, bytes]) -> RunRecord:
    """The run record from its hash, as HGETALL returns it."""
    fields: dict[str, Any] = {}
    for key_bytes, value_bytes in raw.items():
        key, value = key_bytes.decode(), value_bytes.decode()
        if value == "":
            continue
        if key == "config":
            fields[key] = RunConfig.model_validate_json(value)
        elif key in _INT_FIELDS:
            fields[key] = int(value)
        elif key in _FLOAT_FIELDS:
            fields[key] = float(value)
        elif key == "has_model":
            fields[key] = value == "1"
        elif key == "tags":
            fields[key] = json.loads(value)
        elif key == "provenance":
            fields[key] = Provenance.model_validate_json(value)
        else:
            fields[key] = value
    return RunRecord(**fields)


def encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    """Run record fields as hash values: None -> '', bools -> '1'/'0', models, lists (tags) and dicts
    -> JSON."""
    encoded = {}
    for key, value in fields.items():
        if value is None:
            encoded[key] = ""
        elif isinstance(value, bool):
            encoded[key] = "1" if value else "0"
        elif isinstance(value, BaseModel):
            encoded[key] = value.model_dump_json()
        elif isinstance(value, list | dict):  # tags; a dumped Provenance
            encoded[key] = json.dumps(value)
        else:
            encoded[key] = str(value)
    return encoded


def field_pairs(fields: dict[str, Any]) -> list[str]:
    """Encoded fields flattened to [name, value, name, value, ...], as Lua scripts take them for HSET."""
    return [part for item in encode_fields(fields).items() for part in item]


def decode_checkpoint(raw: dict[bytes, bytes]) -> Checkpoint | None:
    """The checkpoint hash as HGETALL returns it; None when there is none yet."""
    if not raw:
        return None
    info = {k.decode(): v.decode() for k, v in raw.items()}
    return Checkpoint(
        stream_id=info["stream_id"], step=int(info["step"]), epoch=int(info["epoch"]), at=float(info["at"])
    )


# --- experiments ---------------------------------------------------------------------------------

ExperimentStatus = Literal["running", "succeeded", "failed", "cancelled"]


class ExperimentRecord(BaseModel):
    """An experiment as stored in its hash."""

    id: str
    name: str | None = None
    status: ExperimentStatus
    spec: ExperimentSpec
    created_at: float
    finished_at: float | None = None
    error: str | None = None


class TrialEntry(BaseModel):
    """One Optuna trial of an experiment: the setting it drew and what became of it."""

    number: int = Field(description="Optuna's trial number.")
    setting: int = Field(description="Index of its setting in the table; a setting drawn again shares it.")
    params: dict[str, Any]
    told: bool = Field(False, description="Whether the study has been told the trial's outcome.")
    error: str | None = Field(None, description="Why its setting cannot be trained (it then has no runs).")


def encode_experiment(record: ExperimentRecord) -> dict[str, str]:
    fields = record.model_dump(exclude={"spec"})
    return encode_fields(fields) | {"spec": record.spec.model_dump_json()}


def decode_experiment(raw: dict[bytes, bytes]) -> ExperimentRecord:
    fields: dict[str, Any] = {}
    for key_bytes, value_bytes in raw.items():
        key, value = key_bytes.decode(), value_bytes.decode()
        if value == "":
            continue
        if key == "spec":
            fields[key] = ExperimentSpec.model_validate_json(value)
        elif key in ("created_at", "finished_at"):
            fields[key] = float(value)
        else:
            fields[key] = value
    return ExperimentRecord(**fields)
