"""The Redis key layout of FF Lab: the one module that knows it.

The API and the worker only go through `RunStore`. Keys (all under the `ff:` prefix):

    ff:runs                 ZSET    run id -> creation time; the time-ordered index of runs
    ff:run:{id}             HASH    the run record (see `RunRecord`); `config` holds JSON
    ff:run:{id}:metrics     STREAM  one entry per metric or status record, field `data` = JSON;
                                    capped with XADD MAXLEN ~; stream ids are the cursors
    ff:run:{id}:model       STRING  the trained model (safetensors bytes)
    ff:run:{id}:state       STRING  the latest resumable training state (safetensors bytes)
    ff:run:{id}:cancel      STRING  present when a cancel was requested
    ff:run:{id}:lease       STRING  the worker that trains the run; expires unless renewed (heartbeat)
    ff:workers              HASH    worker name -> JSON {name, device, host, pid, run_id, seen_at}
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

import redis
from pydantic import BaseModel, Field

from ffcore.config import RunConfig

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

PREFIX = "ff:"
RUNS_INDEX = PREFIX + "runs"
WORKERS = PREFIX + "workers"


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


class RunRecord(BaseModel):
    """What the store knows about one run."""

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
    error: str | None = None
    val_error_scan: float | None = Field(None, description="Latest validation error of the label scan.")
    val_error_softmax: float | None = Field(None, description="Latest validation error of the softmax head.")
    test_error_scan: float | None = None
    test_error_softmax: float | None = None
    samples_per_s: float | None = None
    has_model: bool = False


# Fields stored as JSON text in the hash, the rest are plain strings/numbers.
_INT_FIELDS = {"epoch", "step", "total_steps", "attempts"}
_FLOAT_FIELDS = {
    "created_at", "started_at", "finished_at", "updated_at", "progress", "val_error_scan",
    "val_error_softmax", "test_error_scan", "test_error_softmax", "samples_per_s",
}

# Renew a lease only if we still own it (a plain PEXPIRE could extend another worker's lease).
_RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _decode_record(raw: dict[bytes, bytes]) -> RunRecord:
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
        else:
            fields[key] = value
    return RunRecord(**fields)


def _encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    encoded = {}
    for key, value in fields.items():
        if value is None:
            encoded[key] = ""
        elif isinstance(value, bool):
            encoded[key] = "1" if value else "0"
        elif isinstance(value, RunConfig):
            encoded[key] = value.model_dump_json()
        else:
            encoded[key] = str(value)
    return encoded


class RunStore:
    """Run records, metrics, models, training states, cancel flags and leases in Redis."""

    def __init__(self, client: redis.Redis, metrics_maxlen: int = 100_000):
        self.redis = client
        self.metrics_maxlen = metrics_maxlen
        self._renew = client.register_script(_RENEW_LEASE)
        self._release = client.register_script(_RELEASE_LEASE)

    @classmethod
    def from_url(cls, url: str, metrics_maxlen: int = 100_000) -> RunStore:
        return cls(redis.Redis.from_url(url), metrics_maxlen)

    # --- run records -------------------------------------------------------------------------

    def create_run(self, config: RunConfig, preset: str | None = None) -> RunRecord:
        now = time.time()
        record = RunRecord(
            id=uuid.uuid4().hex[:12], status="queued", preset=preset, config=config,
            created_at=now, updated_at=now,
        )
        pipe = self.redis.pipeline()
        pipe.hset(run_key(record.id), mapping=_encode_fields(record.model_dump() | {"config": config}))
        pipe.zadd(RUNS_INDEX, {record.id: now})
        pipe.execute()
        self.append_metrics(record.id, [{"kind": "status", "status": "queued", "at": now}])
        return record

    def get_run(self, run_id: str) -> RunRecord | None:
        raw = self.redis.hgetall(run_key(run_id))
        return _decode_record(raw) if raw else None

    def list_runs(
        self, status: str | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[list[RunRecord], int]:
        """Runs newest first, optionally only those with `status`; also the total that matched."""
        if status is None:
            total = self.redis.zcard(RUNS_INDEX)
            ids = self.redis.zrevrange(RUNS_INDEX, offset, offset + limit - 1)
            return [r for r in (self.get_run(i.decode()) for i in ids) if r], total
        # Filtering by status reads every record's status; fine for thousands of runs.
        ids = [i.decode() for i in self.redis.zrevrange(RUNS_INDEX, 0, -1)]
        pipe = self.redis.pipeline()
        for run_id in ids:
            pipe.hget(run_key(run_id), "status")
        statuses = pipe.execute()
        matching = [i for i, s in zip(ids, statuses, strict=True) if s is not None and s.decode() == status]
        page = matching[offset : offset + limit]
        return [r for r in (self.get_run(i) for i in page) if r], len(matching)

    def update_run(self, run_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        self.redis.hset(run_key(run_id), mapping=_encode_fields(fields))

    def set_status(self, run_id: str, status: RunStatus, **fields: Any) -> None:
        """Change a run's status (with any other fields) and record the change in its stream."""
        now = time.time()
        if status in FINISHED:
            fields.setdefault("finished_at", now)
        self.update_run(run_id, status=status, **fields)
        event = {"kind": "status", "status": status, "at": now}
        if fields.get("error"):
            event["error"] = fields["error"]
        self.append_metrics(run_id, [event])

    def delete_run(self, run_id: str) -> bool:
        """Remove a run and everything stored for it; False when there was no such run."""
        pipe = self.redis.pipeline()
        pipe.zrem(RUNS_INDEX, run_id)
        pipe.delete(
            run_key(run_id), metrics_key(run_id), model_key(run_id), state_key(run_id),
            cancel_key(run_id), lease_key(run_id),
        )
        removed, deleted = pipe.execute()
        return bool(removed or deleted)

    # --- metrics -----------------------------------------------------------------------------

    def append_metrics(self, run_id: str, records: list[dict[str, Any]]) -> str | None:
        """Append records to the run's stream; returns the id of the last one."""
        if not records:
            return None
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            pipe.xadd(
                metrics_key(run_id), {"data": json.dumps(record)},
                maxlen=self.metrics_maxlen, approximate=True,
            )
        return pipe.execute()[-1].decode()

    def read_metrics(
        self, run_id: str, after: str | None = None, limit: int = 1000
    ) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
        """Records after the cursor `after` (exclusive), oldest first, and the next cursor."""
        start = "-" if after is None else f"({after}"
        entries = self.redis.xrange(metrics_key(run_id), min=start, max="+", count=limit)
        records = [(eid.decode(), json.loads(fields[b"data"])) for eid, fields in entries]
        next_cursor = records[-1][0] if records else after
        return records, next_cursor

    def count_metrics(self, run_id: str) -> int:
        return self.redis.xlen(metrics_key(run_id))

    # --- artifacts ---------------------------------------------------------------------------

    def save_model(self, run_id: str, data: bytes) -> None:
        pipe = self.redis.pipeline()
        pipe.set(model_key(run_id), data)
        pipe.hset(run_key(run_id), mapping={"has_model": "1", "updated_at": str(time.time())})
        pipe.execute()

    def load_model(self, run_id: str) -> bytes | None:
        return self.redis.get(model_key(run_id))

    def save_state(self, run_id: str, data: bytes) -> None:
        self.redis.set(state_key(run_id), data)

    def load_state(self, run_id: str) -> bytes | None:
        return self.redis.get(state_key(run_id))

    # --- control -----------------------------------------------------------------------------

    def request_cancel(self, run_id: str) -> None:
        self.redis.set(cancel_key(run_id), "1")

    def cancel_requested(self, run_id: str) -> bool:
        return bool(self.redis.exists(cancel_key(run_id)))

    def acquire_lease(self, run_id: str, worker: str, ttl_s: float) -> bool:
        """Take the run for `worker` unless another worker holds a live lease on it."""
        return bool(self.redis.set(lease_key(run_id), worker, nx=True, px=int(ttl_s * 1000)))

    def renew_lease(self, run_id: str, worker: str, ttl_s: float) -> bool:
        """Extend our lease (the heartbeat); False when it expired or another worker holds it."""
        return bool(self._renew(keys=[lease_key(run_id)], args=[worker, int(ttl_s * 1000)]))

    def release_lease(self, run_id: str, worker: str) -> None:
        self._release(keys=[lease_key(run_id)], args=[worker])

    def lease_owner(self, run_id: str) -> str | None:
        owner = self.redis.get(lease_key(run_id))
        return owner.decode() if owner else None

    # --- workers -----------------------------------------------------------------------------

    def register_worker(self, name: str, info: dict[str, Any]) -> None:
        """Record (or refresh) a worker's presence; `seen_at` is set here."""
        self.redis.hset(WORKERS, name, json.dumps(info | {"name": name, "seen_at": time.time()}))

    def remove_worker(self, name: str) -> None:
        self.redis.hdel(WORKERS, name)

    def list_workers(self, max_age_s: float) -> list[dict[str, Any]]:
        """Workers seen within `max_age_s` seconds."""
        now = time.time()
        workers = [json.loads(v) for v in self.redis.hgetall(WORKERS).values()]
        return sorted(
            (w for w in workers if now - w.get("seen_at", 0) <= max_age_s), key=lambda w: w["name"]
        )

    def ping(self) -> bool:
        return bool(self.redis.ping())
