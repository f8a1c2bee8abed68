"""The API's side of the run store: create, read, list, cancel and delete runs, and read their
metrics and models; also what the workers' retention (worker.retention) reads and deletes.

The worker writes through `fflab.store.attempts` instead; keys and encoding come from
`fflab.store.keys`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, NamedTuple

import redis
import redis.asyncio

from ffcore.config import RunConfig
from fflab.store.keys import (
    FINISHED,
    RETENTION_TURN,
    RUN_ID_LENGTH,
    RUNS_INDEX,
    Checkpoint,
    RunRecord,
    all_run_keys,
    cancel_key,
    checkpoint_key,
    decode_checkpoint,
    decode_record,
    field_pairs,
    metrics_key,
    model_key,
    read_all_runs,
    run_key,
    status_event,
)

# Create a run unless one with its id exists (an experiment's run ids are derived, and its coordinator
# may create the same run twice). KEYS run, index, metrics; ARGV id, now, maxlen, the queued event
# (JSON), then the record's field/value pairs. 1 when created, 0 when it was there already.
_CREATE_RUN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[4])
return 1
"""

# Ask a run to stop, atomically. KEYS run, cancel, metrics; ARGV now, maxlen, the cancelled event
# (JSON). Returns the status before the call, false for no such run.
_CANCEL_RUN = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'queued' or status == 'running' then redis.call('SET', KEYS[2], '1') end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1], 'updated_at', ARGV[1])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[3])
end
return status
"""

# Edit fields of an existing run only: a run deleted meanwhile stays deleted (no half record).
# KEYS run; ARGV field/value pairs. 1 when written, 0 for no such run.
_UPDATE_EXISTING = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS model. The SHA-1 of the stored model, false when there is none.
_MODEL_DIGEST = """
local data = redis.call('GET', KEYS[1])
if not data then return false end
return redis.sha1hex(data)
"""


class RunAge(NamedTuple):
    """What retention reads of a run."""

    id: str
    status: str
    ended_at: float | None  # None while it is queued or running
    experiment: str | None


class RunStore:
    """Run records, their metrics and their models, as the API reads and changes them."""

    def __init__(self, client: redis.Redis, metrics_maxlen: int = 100_000):
        self.redis = client
        self.metrics_maxlen = metrics_maxlen
        self._create = client.register_script(_CREATE_RUN)
        self._cancel = client.register_script(_CANCEL_RUN)
        self._model_digest = client.register_script(_MODEL_DIGEST)
        self._update_existing = client.register_script(_UPDATE_EXISTING)

    def ping(self) -> bool:
        return bool(self.redis.ping())

    # --- run records -------------------------------------------------------------------------

    def create_run(
        self,
        config: RunConfig,
        preset: str | None = None,
        tags: list[str] | None = None,
        note: str | None = None,
        *,
        run_id: str | None = None,
        experiment: str | None = None,
        setting: int | None = None,
    ) -> RunRecord:
        """A new `queued` run (enqueue its task with fflab.queue.enqueue_run).

        With `run_id` (an experiment's derived id), a run that already has that id is returned as it
        is instead: creating it again is harmless.
        """
        now = time.time()
        record = RunRecord(
            id=run_id or uuid.uuid4().hex[:RUN_ID_LENGTH],
            status="queued",
            preset=preset,
            config=config,
            created_at=now,
            updated_at=now,
            tags=list(tags or []),
            note=note or None,
            experiment=experiment,
            setting=setting,
        )
        fields = field_pairs(record.model_dump(exclude={"config"}) | {"config": config})
        queued_event = json.dumps(status_event("queued", now))
        created = self._create(
            keys=[run_key(record.id), RUNS_INDEX, metrics_key(record.id)],
            args=[record.id, repr(now), self.metrics_maxlen, queued_event, *fields],
        )
        if not created:
            return self.get_run(record.id) or record  # (or: deleted in the same instant)
        return record

    def _add_event(self, pipe: redis.client.Pipeline, run_id: str, event: dict[str, Any]) -> None:
        """Queue a status event onto the run's capped metrics stream, in `pipe`'s transaction."""
        pipe.xadd(
            metrics_key(run_id), {"data": json.dumps(event)}, maxlen=self.metrics_maxlen, approximate=True
        )

    def get_run(self, run_id: str) -> RunRecord | None:
        raw = self.redis.hgetall(run_key(run_id))
        return decode_record(raw) if raw else None

    def list_runs(
        self,
        status: str | None = None,
        offset: int = 0,
        limit: int = 50,
        tag: str | None = None,
        experiment: str | None = None,
    ) -> tuple[list[RunRecord], int]:
        """Runs newest first, optionally only those with `status`, those tagged `tag` and those of
        `experiment`; also the total that matched."""
        if status is None and tag is None and experiment is None:
            total = self.redis.zcard(RUNS_INDEX)
            ids = self.redis.zrevrange(RUNS_INDEX, offset, offset + limit - 1)
            return [r for r in (self.get_run(i.decode()) for i in ids) if r], total
        matching = []
        rows = read_all_runs(self.redis, "status", "tags", "experiment", newest_first=True)
        for run_id, (run_status, tags, run_experiment) in rows:
            if run_status is None or (status is not None and run_status.decode() != status):
                continue
            if tag is not None and tag not in (json.loads(tags) if tags else []):
                continue
            if experiment is not None and (run_experiment or b"").decode() != experiment:
                continue
            matching.append(run_id)
        page = matching[offset : offset + limit]
        return [r for r in (self.get_run(i) for i in page) if r], len(matching)

    def count_runs(self, status: str) -> int:
        """How many runs have `status`."""
        return sum(value == status.encode() for _, (value,) in read_all_runs(self.redis, "status"))

    def edit_run(
        self, run_id: str, tags: list[str] | None = None, note: str | None = None, clear_note: bool = False
    ) -> RunRecord | None:
        """Set a run's tags and/or note (`clear_note` removes it); None when there is no such run.

        Only these fields are written, and only if the run exists: the worker never writes them, and
        a run deleted meanwhile is not brought back as a half record.
        """
        fields: dict[str, Any] = {}
        if tags is not None:
            fields["tags"] = list(tags)
        if note is not None or clear_note:
            fields["note"] = note or None
        # updated_at stays: it tracks training (the model cache reads it).
        if fields and not self._update_existing(keys=[run_key(run_id)], args=field_pairs(fields)):
            return None
        return self.get_run(run_id)

    def cancel_run(self, run_id: str) -> str | None:
        """Ask a run to stop; its status before the call (None: no such run).

        In one atomic step: a queued run becomes `cancelled` at once (a worker that picks up its
        task skips it), a running run gets the cancel flag its worker polls; a finished run is
        left alone.
        """
        now = time.time()
        status = self._cancel(
            keys=[run_key(run_id), cancel_key(run_id), metrics_key(run_id)],
            args=[repr(now), self.metrics_maxlen, json.dumps(status_event("cancelled", now))],
        )
        return status.decode() if status else None

    def statuses(self, run_ids: list[str]) -> list[str | None]:
        """The status of each run (None: no such run), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hget(run_key(run_id), "status")
        return [status.decode() if status else None for status in pipe.execute()]

    def created_before(self, cutoff: float) -> list[RunAge]:
        """Status, end and experiment of every run created before the Unix time `cutoff`, in one round
        trip (what retention reads: a run that ended before `cutoff` was created before it)."""
        fields = ("status", "finished_at", "updated_at", "experiment")
        ages = []
        for run_id, (status, finished_at, updated_at, experiment) in read_all_runs(
            self.redis, *fields, created_before=cutoff
        ):
            if status is None:  # deleted meanwhile
                continue
            at = finished_at or updated_at  # every end sets finished_at; older records may lack it
            ended_at = float(at) if at and status.decode() in FINISHED else None
            ages.append(
                RunAge(run_id, status.decode(), ended_at, experiment.decode() if experiment else None)
            )
        return ages

    def take_retention_turn(self, every_s: float) -> bool:
        """True when no retention pass was made (by any worker) within `every_s`; this call then counts
        as one (worker.retention)."""
        return bool(self.redis.set(RETENTION_TURN, "1", nx=True, px=int(every_s * 1000)))

    def delete_run(self, run_id: str) -> bool:
        """Remove a run and everything stored for it; False when there was no such run (deleting it
        again, from two places at once, removes it once)."""
        pipe = self.redis.pipeline()
        pipe.zrem(RUNS_INDEX, run_id)
        pipe.delete(*all_run_keys(run_id))
        removed, deleted = pipe.execute()
        return bool(removed or deleted)

    # --- metrics -----------------------------------------------------------------------------

    def read_metrics(
        self, run_id: str, after: str | None = None, limit: int = 1000
    ) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
        """Records after the cursor `after` (exclusive), oldest first, and the next cursor."""
        start = "-" if after is None else f"({after}"
        entries = self.redis.xrange(metrics_key(run_id), min=start, max="+", count=limit)
        records = [(eid.decode(), json.loads(fields[b"data"])) for eid, fields in entries]
        next_cursor = records[-1][0] if records else after
        return records, next_cursor

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

    # --- models ------------------------------------------------------------------------------

    def load_model(self, run_id: str) -> bytes | None:
        return self.redis.get(model_key(run_id))

    def load_checkpoint(self, run_id: str) -> Checkpoint | None:
        """Where the stored model stands while a run trains (None before its first checkpoint)."""
        return decode_checkpoint(self.redis.hgetall(checkpoint_key(run_id)))

    def model_fingerprint(self, run_id: str) -> str | None:
        """SHA-1 of the stored model, computed inside Redis (40 bytes travel, not the model)."""
        digest = self._model_digest(keys=[model_key(run_id)])
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
