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
    ff:run:{id}:checkpoint  HASH    where the saved state stands: step, epoch, at, and stream_id (the
                                    last metrics entry it covers; a resumed run drops later records)
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


def checkpoint_key(run_id: str) -> str:
    return f"{run_key(run_id)}:checkpoint"


class LeaseLostError(RuntimeError):
    """A worker tried to write to a run whose lease it no longer holds (another worker may own it)."""


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


class ClaimResult(BaseModel):
    """What `RunStore.claim_run` did: `claimed` (attempt = its number), or why it did not."""

    outcome: Literal["claimed", "missing", "finished", "leased", "cancelled"]
    attempt: int = 0


class Checkpoint(BaseModel):
    """Where a run's stored training state stands."""

    stream_id: str = Field(description="Last metrics entry written before the state was saved.")
    step: int
    epoch: int
    at: float


# Fields stored as JSON text in the hash, the rest are plain strings/numbers.
_INT_FIELDS = {"epoch", "step", "total_steps", "attempts"}
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

# The scripts below make each step of a training attempt atomic, so that two workers (or a worker
# and a reaper) can never both act on one run. Every write a worker makes while training is fenced
# by its lease: a worker that lost its lease (paused past the TTL, cut off from Redis) writes nothing.

# Start (or resume) an attempt: KEYS run, lease, cancel, metrics; ARGV worker, ttl_ms, device, now, maxlen.
_CLAIM_RUN = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', 0} end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return {'finished', 0} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'leased', 0} end
local now = ARGV[4]
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', now, 'updated_at', now)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'data',
    cjson.encode({kind='status', status='cancelled', at=tonumber(now)}))
  return {'cancelled', 0}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'device', ARGV[3],
  'updated_at', now, 'error', '')
local started = redis.call('HGET', KEYS[1], 'started_at')
if not started or started == '' then redis.call('HSET', KEYS[1], 'started_at', now) end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'data',
  cjson.encode({kind='status', status='running', at=tonumber(now), worker=ARGV[1], attempt=attempts}))
return {'claimed', attempts}
"""

# Stream records and update the run record: KEYS lease, metrics, run;
# ARGV worker, maxlen, n, n JSON records, then field/value pairs. {0} when the lease is not ours.
_PUBLISH_PROGRESS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
local n = tonumber(ARGV[3])
local last = ''
for i = 1, n do
  last = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[3 + i])
end
if #ARGV > 3 + n then redis.call('HSET', KEYS[3], unpack(ARGV, 4 + n)) end
return {1, last}
"""

# KEYS lease, state, model, run, checkpoint, metrics; ARGV worker, state, model, step, epoch, now.
# The checkpoint remembers the stream's last entry: what a resumed attempt keeps of the metrics.
_SAVE_CHECKPOINT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[4], 'has_model', '1', 'updated_at', ARGV[6])
local last = redis.call('XREVRANGE', KEYS[6], '+', '-', 'COUNT', 1)
local stream_id = '0-0'
if #last > 0 then stream_id = last[1][1] end
redis.call('HSET', KEYS[5], 'stream_id', stream_id, 'step', ARGV[4], 'epoch', ARGV[5], 'at', ARGV[6])
return stream_id
"""

# End an attempt (finished, or handed back to the queue) and drop the lease:
# KEYS lease, run, metrics, state; ARGV worker, maxlen, event JSON, drop_state, field/value pairs.
_END_ATTEMPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[3])
redis.call('DEL', KEYS[1])
if ARGV[4] == '1' then redis.call('DEL', KEYS[4]) end
return 1
"""

# The reaper: a `running` run without a live lease lost its worker. Checking and requeueing in one
# script means two reapers cannot both requeue it, nor requeue a run a worker has just claimed.
# KEYS run, lease, metrics; ARGV now, maxlen, reason.
_REQUEUE_ORPHAN = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'worker', '', 'updated_at', ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'data',
  cjson.encode({kind='status', status='queued', at=tonumber(ARGV[1]), reason=ARGV[3]}))
return 1
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
        self._claim = client.register_script(_CLAIM_RUN)
        self._publish = client.register_script(_PUBLISH_PROGRESS)
        self._checkpoint = client.register_script(_SAVE_CHECKPOINT)
        self._end_attempt = client.register_script(_END_ATTEMPT)
        self._requeue_orphan = client.register_script(_REQUEUE_ORPHAN)

    @classmethod
    def from_url(cls, url: str, metrics_maxlen: int = 100_000) -> RunStore:
        return cls(redis.Redis.from_url(url), metrics_maxlen)

    # --- run records -------------------------------------------------------------------------

    def create_run(self, config: RunConfig, preset: str | None = None) -> RunRecord:
        now = time.time()
        record = RunRecord(
            id=uuid.uuid4().hex[:12],
            status="queued",
            preset=preset,
            config=config,
            created_at=now,
            updated_at=now,
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
            run_key(run_id),
            metrics_key(run_id),
            model_key(run_id),
            state_key(run_id),
            cancel_key(run_id),
            lease_key(run_id),
            checkpoint_key(run_id),
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
                metrics_key(run_id),
                {"data": json.dumps(record)},
                maxlen=self.metrics_maxlen,
                approximate=True,
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

    # --- training attempts (the worker's side; every write is fenced by the worker's lease) ----

    def claim_run(self, run_id: str, worker: str, ttl_s: float, device: str) -> ClaimResult:
        """Start or resume an attempt: take the lease and mark the run running, all at once.

        Nothing changes unless the outcome is `claimed`: a run that is `missing`, `finished` or
        `leased` by a live worker is left alone; one with a pending cancel request becomes
        `cancelled` without starting.
        """
        outcome, attempts = self._claim(
            keys=[run_key(run_id), lease_key(run_id), cancel_key(run_id), metrics_key(run_id)],
            args=[worker, int(ttl_s * 1000), device, repr(time.time()), self.metrics_maxlen],
        )
        return ClaimResult(outcome=outcome.decode(), attempt=int(attempts))

    def publish_progress(
        self, run_id: str, worker: str, records: list[dict[str, Any]], **fields: Any
    ) -> str | None:
        """Append metric records and update run fields in one round trip; the last stream id.

        Raises LeaseLostError (writing nothing) when `worker` no longer holds the run's lease.
        """
        if fields:
            fields["updated_at"] = time.time()
        pairs = [part for item in _encode_fields(fields).items() for part in item]
        result = self._publish(
            keys=[lease_key(run_id), metrics_key(run_id), run_key(run_id)],
            args=[worker, self.metrics_maxlen, len(records), *(json.dumps(r) for r in records), *pairs],
        )
        if not result[0]:
            raise LeaseLostError(f"run {run_id}: {worker} no longer holds the lease")
        return result[1].decode() if records else None

    def save_checkpoint(
        self, run_id: str, worker: str, state: bytes, model: bytes, step: int, epoch: int
    ) -> str:
        """Store the resumable state and the current model; returns the stream id it covers."""
        stream_id = self._checkpoint(
            keys=[
                lease_key(run_id),
                state_key(run_id),
                model_key(run_id),
                run_key(run_id),
                checkpoint_key(run_id),
                metrics_key(run_id),
            ],
            args=[worker, state, model, step, epoch, repr(time.time())],
        )
        if stream_id is None:
            raise LeaseLostError(f"run {run_id}: {worker} no longer holds the lease")
        return stream_id.decode()

    def load_checkpoint(self, run_id: str) -> Checkpoint | None:
        """Where the stored training state stands, or None before the first checkpoint."""
        raw = self.redis.hgetall(checkpoint_key(run_id))
        if not raw:
            return None
        info = {k.decode(): v.decode() for k, v in raw.items()}
        return Checkpoint(
            stream_id=info["stream_id"],
            step=int(info["step"]),
            epoch=int(info["epoch"]),
            at=float(info["at"]),
        )

    def discard_metrics_after(self, run_id: str, stream_id: str | None) -> int:
        """Delete the train and eval records after `stream_id` (all of them for None).

        A resumed attempt starts from its checkpoint; the dead attempt's records past it would
        otherwise repeat steps. Status records stay: they are the run's history. Returns how many
        records were deleted.
        """
        start = "-" if stream_id is None else f"({stream_id}"
        deleted = 0
        while True:
            entries = self.redis.xrange(metrics_key(run_id), min=start, max="+", count=1000)
            if not entries:
                return deleted
            stale = [eid for eid, f in entries if json.loads(f[b"data"]).get("kind") != "status"]
            if stale:
                deleted += self.redis.xdel(metrics_key(run_id), *stale)
            start = f"({entries[-1][0].decode()}"

    def end_attempt(self, run_id: str, worker: str, status: RunStatus, **fields: Any) -> bool:
        """Set the run's final status (or `queued` to hand it back) and release the lease.

        Fenced by the lease: False (and nothing written) when `worker` no longer holds it. A
        finished run's training state is deleted; a run handed back keeps it to resume from.
        """
        now = time.time()
        if status in FINISHED:
            fields.setdefault("finished_at", now)
        fields.update(status=status, updated_at=now)
        event: dict[str, Any] = {"kind": "status", "status": status, "at": now}
        for extra in ("error", "reason"):
            if fields.get(extra):
                event[extra] = fields[extra]
        fields.pop("reason", None)
        pairs = [part for item in _encode_fields(fields).items() for part in item]
        drop_state = "1" if status in FINISHED else "0"
        return bool(
            self._end_attempt(
                keys=[lease_key(run_id), run_key(run_id), metrics_key(run_id), state_key(run_id)],
                args=[worker, self.metrics_maxlen, json.dumps(event), drop_state, *pairs],
            )
        )

    def control_flags(self, run_id: str, worker: str) -> tuple[bool, bool]:
        """(does `worker` still hold the lease, was a cancel requested): one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(lease_key(run_id))
        pipe.exists(cancel_key(run_id))
        owner, cancel = pipe.execute()
        return owner is not None and owner.decode() == worker, bool(cancel)

    def running_run_ids(self) -> list[str]:
        """Ids of the runs whose status is `running`."""
        ids = [i.decode() for i in self.redis.zrange(RUNS_INDEX, 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.hget(run_key(run_id), "status")
        return [i for i, s in zip(ids, pipe.execute(), strict=True) if s == b"running"]

    def requeue_if_orphaned(self, run_id: str, reason: str) -> bool:
        """Put a `running` run whose lease expired back to `queued`; False when it was not orphaned."""
        return bool(
            self._requeue_orphan(
                keys=[run_key(run_id), lease_key(run_id), metrics_key(run_id)],
                args=[repr(time.time()), self.metrics_maxlen, reason],
            )
        )

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
        return sorted((w for w in workers if now - w.get("seen_at", 0) <= max_age_s), key=lambda w: w["name"])

    def prune_workers(self, max_age_s: float) -> list[str]:
        """Forget workers not seen for `max_age_s` seconds (killed ones never deregister)."""
        now = time.time()
        stale = [
            name.decode()
            for name, info in self.redis.hgetall(WORKERS).items()
            if now - json.loads(info).get("seen_at", 0) > max_age_s
        ]
        if stale:
            self.redis.hdel(WORKERS, *stale)
        return stale

    def ping(self) -> bool:
        return bool(self.redis.ping())

    # --- added for the API -------------------------------------------------------------------

    def cancel_run(self, run_id: str) -> str | None:
        """Ask a run to stop; its status before the call (None: no such run).

        In one atomic step: a queued run becomes `cancelled` at once (a worker that picks up its
        task skips it), a running run gets the cancel flag its worker polls; a finished run is
        left alone.
        """
        # Scripts are registered per call: RunStore.__init__ belongs to the worker's side of the file.
        status = self.redis.register_script(_CANCEL_RUN)(
            keys=[run_key(run_id), cancel_key(run_id), metrics_key(run_id)],
            args=[repr(time.time()), self.metrics_maxlen],
        )
        return status.decode() if status else None

    def model_fingerprint(self, run_id: str) -> str | None:
        """SHA-1 of the stored model, computed inside Redis (40 bytes travel, not the model)."""
        digest = self.redis.register_script(_MODEL_DIGEST)(keys=[model_key(run_id)])
        return digest.decode() if digest else None

    async def model_status_async(
        self, client: redis.asyncio.Redis, run_id: str
    ) -> tuple[str, bool, float | None] | None:
        """(status, has_model, updated_at) of a run, None when there is no such run.

        The prediction path's per-request check: three fields through an asyncio client, no thread
        hop and no parsing of the whole record.
        """
        status, has_model, updated_at = await client.hmget(
            run_key(run_id), "status", "has_model", "updated_at"
        )
        if status is None:
            return None
        return status.decode(), has_model == b"1", float(updated_at) if updated_at else None

    async def read_metrics_blocking(
        self, client: redis.asyncio.Redis, run_id: str, after: str, block_ms: int | None, count: int = 500
    ) -> list[tuple[str, dict[str, Any]]]:
        """Records after stream id `after` ("0-0": from the start), waiting up to `block_ms` for one
        (None: not waiting).

        Takes an asyncio Redis client so that server-sent event streams wait without a thread each.
        """
        reply = await client.xread({metrics_key(run_id): after}, count=count, block=block_ms)
        if not reply:
            return []
        _, entries = reply[0]
        return [(eid.decode(), json.loads(fields[b"data"])) for eid, fields in entries]


# KEYS run, cancel, metrics; ARGV now, maxlen. Returns the status before, false for no such run.
_CANCEL_RUN = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'queued' or status == 'running' then redis.call('SET', KEYS[2], '1') end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1], 'updated_at', ARGV[1])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'data',
    cjson.encode({kind='status', status='cancelled', at=tonumber(ARGV[1])}))
end
return status
"""

_MODEL_DIGEST = """
local data = redis.call('GET', KEYS[1])
if not data then return false end
return redis.sha1hex(data)
"""
