"""The worker's side of the run store: training attempts, fenced by the run's lease.

A worker claims a run (taking its lease), streams progress, saves checkpoints and ends the attempt;
the heartbeat renews the lease and the reaper requeues runs whose lease expired (that requeue, and the
hand-back of a worker that gave up on Redis, count against FF_MAX_ATTEMPTS: fflab.store.attempt_cap).
The Lua scripts make each of those steps atomic, so that two workers (or a worker and a reaper) can never
both act on one run, and every write a worker makes while training is fenced by its lease: a
worker that lost its lease (paused past the TTL, cut off from Redis) writes nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import redis
from pydantic import BaseModel

from fflab.store.attempt_cap import AttemptCap
from fflab.store.keys import (
    FINISHED,
    Checkpoint,
    Provenance,
    RunRecord,
    RunStatus,
    cancel_key,
    checkpoint_key,
    decode_checkpoint,
    decode_record,
    encode_fields,
    field_pairs,
    lease_key,
    metrics_key,
    model_key,
    read_all_runs,
    run_key,
    state_key,
    status_event,
)

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

# Start (or resume) an attempt: KEYS run, lease, cancel, metrics; ARGV worker, ttl_ms, device, now,
# maxlen, the running event and the cancelled event (JSON), the attempt's provenance (JSON, '' for
# none). The running event gets the attempt number here, where it is counted.
_CLAIM_RUN = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', 0} end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return {'finished', 0} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'leased', 0} end
local now = ARGV[4]
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', now, 'updated_at', now)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'data', ARGV[7])
  return {'cancelled', 0}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'device', ARGV[3],
  'updated_at', now, 'error', '')
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'provenance', ARGV[8]) end
local started = redis.call('HGET', KEYS[1], 'started_at')
if not started or started == '' then redis.call('HSET', KEYS[1], 'started_at', now) end
local event = cjson.decode(ARGV[6])
event['attempt'] = attempts
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'data', cjson.encode(event))
return {'claimed', attempts}
"""

# Stream records and update the run record: KEYS lease, metrics, run;
# ARGV worker, maxlen, n, n JSON records, then field/value pairs. {0} when the lease is not ours.
# Sent again after a timeout, records that reached the stream the first time are not added twice:
# the lease holder is the stream's only writer, so a record of the batch that is the stream's last
# entry (each record's JSON is unique: steps, kinds and times differ) marks where the batch landed.
_PUBLISH_PROGRESS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
local n = tonumber(ARGV[3])
local first = 1
local last = ''
if n > 0 then
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if #top > 0 then
    for i = n, 1, -1 do
      if top[1][2][2] == ARGV[3 + i] then
        first = i + 1
        last = top[1][1]
        break
      end
    end
  end
end
for i = first, n do
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

# End an attempt (finished, or handed back to the queue) and drop the lease: KEYS lease, run,
# metrics, state; ARGV worker, maxlen, event JSON, drop_state, status, updated_at, field/value pairs.
# Sent again after a timeout, an end that landed the first time (its lease is gone, and the run has
# its status and its very updated_at) answers 1 again and writes nothing.
_END_ATTEMPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  local now = redis.call('HMGET', KEYS[2], 'status', 'updated_at')
  if now[1] == ARGV[5] and now[2] == ARGV[6] then return 1 end
  return 0
end
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[3])
redis.call('DEL', KEYS[1])
if ARGV[4] == '1' then redis.call('DEL', KEYS[4]) end
return 1
"""

HISTORY_KINDS = ("status", "rewind")  # records a resumed attempt keeps


class LeaseLostError(RuntimeError):
    """A worker tried to write to a run whose lease it no longer holds (another worker may own it)."""


class ClaimResult(BaseModel):
    """What `AttemptStore.claim_run` did: `claimed` (attempt = its number), or why it did not."""

    outcome: Literal["claimed", "missing", "finished", "leased", "cancelled"]
    attempt: int = 0


class AttemptStore(AttemptCap):
    """What a worker reads and writes while it trains runs (the attempt cap's part: AttemptCap)."""

    def __init__(self, client: redis.Redis, metrics_maxlen: int = 100_000):
        super().__init__(client, metrics_maxlen)
        self._renew = client.register_script(_RENEW_LEASE)
        self._release = client.register_script(_RELEASE_LEASE)
        self._claim = client.register_script(_CLAIM_RUN)
        self._publish = client.register_script(_PUBLISH_PROGRESS)
        self._checkpoint = client.register_script(_SAVE_CHECKPOINT)
        self._end_attempt = client.register_script(_END_ATTEMPT)

    # --- an attempt, from claim to end ---------------------------------------------------------

    def claim_run(
        self, run_id: str, worker: str, ttl_s: float, device: str, provenance: Provenance | None = None
    ) -> ClaimResult:
        """Start or resume an attempt: take the lease and mark the run running, all at once.

        `provenance` (how this attempt is made) replaces the previous attempt's, in the same step.
        Nothing changes unless the outcome is `claimed`: a run that is `missing`, `finished` or
        `leased` by a live worker is left alone; one with a pending cancel request becomes
        `cancelled` without starting.
        """
        now = time.time()
        running = json.dumps(status_event("running", now, worker=worker))
        cancelled = json.dumps(status_event("cancelled", now))
        outcome, attempts = self._claim(
            keys=[run_key(run_id), lease_key(run_id), cancel_key(run_id), metrics_key(run_id)],
            args=[
                worker,
                int(ttl_s * 1000),
                device,
                repr(now),
                self.metrics_maxlen,
                running,
                cancelled,
                provenance.model_dump_json() if provenance else "",
            ],
        )
        return ClaimResult(outcome=outcome.decode(), attempt=int(attempts))

    def load_run(self, run_id: str) -> RunRecord | None:
        """The run record (its config says what to train); None when the run was deleted."""
        raw = self.redis.hgetall(run_key(run_id))
        return decode_record(raw) if raw else None

    def load_state(self, run_id: str) -> bytes | None:
        """The resumable training state of the last checkpoint, None before the first one."""
        return self.redis.get(state_key(run_id))

    def load_checkpoint(self, run_id: str) -> Checkpoint | None:
        """Where the stored training state stands, or None before the first checkpoint."""
        return decode_checkpoint(self.redis.hgetall(checkpoint_key(run_id)))

    def discard_metrics_after(self, run_id: str, stream_id: str | None) -> int:
        """Delete the train and eval records after `stream_id` (all of them for None).

        A resumed attempt starts from its checkpoint; the dead attempt's records past it would
        otherwise repeat steps. Status and rewind records stay: they are the run's history. Returns
        how many records were deleted.
        """
        start = "-" if stream_id is None else f"({stream_id}"
        deleted = 0
        while True:
            entries = self.redis.xrange(metrics_key(run_id), min=start, max="+", count=1000)
            if not entries:
                return deleted
            stale = [eid for eid, f in entries if json.loads(f[b"data"]).get("kind") not in HISTORY_KINDS]
            if stale:
                deleted += self.redis.xdel(metrics_key(run_id), *stale)
            start = f"({entries[-1][0].decode()}"

    def publish_progress(
        self, run_id: str, worker: str, records: list[dict[str, Any]], **fields: Any
    ) -> str | None:
        """Append metric records and update run fields in one round trip; the last stream id.

        Raises LeaseLostError (writing nothing) when `worker` no longer holds the run's lease. The
        same records sent again (after a timeout, maybe with newer ones after them) are added once.
        """
        if fields:
            fields["updated_at"] = time.time()
        result = self._publish(
            keys=[lease_key(run_id), metrics_key(run_id), run_key(run_id)],
            args=[
                worker,
                self.metrics_maxlen,
                len(records),
                *(json.dumps(r) for r in records),
                *field_pairs(fields),
            ],
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

    def control_flags(self, run_id: str, worker: str) -> tuple[bool, bool]:
        """(does `worker` still hold the lease, was a cancel requested): one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(lease_key(run_id))
        pipe.exists(cancel_key(run_id))
        owner, cancel = pipe.execute()
        return owner is not None and owner.decode() == worker, bool(cancel)

    def end_attempt(
        self,
        run_id: str,
        worker: str,
        status: RunStatus,
        reason: str | None = None,
        *,
        at: float | None = None,
        **fields: Any,
    ) -> bool:
        """Set the run's final status (or `queued` to hand it back) and release the lease.

        Fenced by the lease: False (and nothing written) when `worker` no longer holds it. A
        finished run's training state is deleted; a run handed back keeps it to resume from.
        `reason` goes into the status event only. `at` (default: now) is when it ended: a call sent
        again with the same `at` after a timeout is True if the first one landed.
        """
        now = time.time() if at is None else at
        if status in FINISHED:
            fields.setdefault("finished_at", now)
        fields.update(status=status, updated_at=now)
        event = status_event(status, now, error=fields.get("error"), reason=reason)
        drop_state = "1" if status in FINISHED else "0"
        pairs = field_pairs(fields)
        updated_at = encode_fields({"updated_at": now})["updated_at"]  # as the hash holds it
        return bool(
            self._end_attempt(
                keys=[lease_key(run_id), run_key(run_id), metrics_key(run_id), state_key(run_id)],
                args=[worker, self.metrics_maxlen, json.dumps(event), drop_state, status, updated_at, *pairs],
            )
        )

    # --- leases, and what the reaper reads -----------------------------------------------------

    def renew_lease(self, run_id: str, worker: str, ttl_s: float) -> bool:
        """Extend our lease (the heartbeat); False when it expired or another worker holds it."""
        return bool(self._renew(keys=[lease_key(run_id)], args=[worker, int(ttl_s * 1000)]))

    def release_lease(self, run_id: str, worker: str) -> None:
        self._release(keys=[lease_key(run_id)], args=[worker])

    def lease_owner(self, run_id: str) -> str | None:
        owner = self.redis.get(lease_key(run_id))
        return owner.decode() if owner else None

    def running_run_ids(self) -> list[str]:
        """Ids of the runs whose status is `running`."""
        return [run_id for run_id, (status,) in read_all_runs(self.redis, "status") if status == b"running"]

    def queued_run_ids(self, older_than_s: float = 0.0) -> list[str]:
        """Ids of the runs `queued` since more than `older_than_s` seconds (by their last update)."""
        cutoff = time.time() - older_than_s
        return [
            run_id
            for run_id, (status, updated) in read_all_runs(self.redis, "status", "updated_at")
            if status == b"queued" and updated and float(updated) < cutoff
        ]
