"""The attempt cap (FF_MAX_ATTEMPTS): the attempts that end without ending their run are counted, and
the one that reaches the cap ends the run `failed`, saying how its attempts ended, instead of queueing
it again.

An attempt ends that way in one of two manners, each counted in the run record once:

- `lost_workers`: its worker was lost (killed, out of memory, machine gone): its lease expired, and a
  reaper finds the run `running` without one (`requeue_if_orphaned`).
- `redis_give_ups`: its worker gave up on Redis, which could not take its writes (out of memory,
  stalled) for FF_REDIS_WAIT_S, and handed the run back to the queue (`hand_back`).

Each count and the status change it causes (`queued`, or `failed` at the cap) are one Lua script, so
that a count never lands without its status change nor the other way round. A script that Redis refuses
(out of memory: the count is its first write, so nothing of it lands) leaves the run `running` with the
worker's lease; once the lease expires, the reaper counts that attempt as a lost worker. So every
attempt that ends without ending its run is counted exactly once, and Redis running out of memory
for good cannot requeue a run forever: its attempts end with the worker giving up or, when even the
hand-back is refused, with the lease expiring, and both are counted.
"""

from __future__ import annotations

import json
import time
from typing import Literal

import redis

from fflab.store.keys import lease_key, metrics_key, run_key, state_key, status_event

DEFAULT_MAX_ATTEMPTS = 3  # Settings.max_attempts

# What the error of a run ended at the cap advises, by how its last attempt ended.
LOST_WORKER_ADVICE = "the run may need more memory than a worker has, or crash it"
REDIS_ADVICE = "give Redis more memory (its maxmemory) or find what stalls it before running it again"

# Shared by both scripts: the failed run's error (how its failed attempts ended, and why the last one
# did), ending the run failed with it, and the choice between that and queueing it again. The failed
# event (JSON) gets the error here.
_END_FAILED = """
local function gave_up_error(lost, gave_up, max_attempts, last, advice)
  local how = {}
  if lost > 0 then how[#how + 1] = 'its worker was lost ' .. lost .. (lost == 1 and ' time' or ' times') end
  if gave_up > 0 then
    how[#how + 1] = 'Redis could not take its writes ' .. gave_up .. (gave_up == 1 and ' time' or ' times')
  end
  local total = lost + gave_up
  return 'gave up after ' .. total .. (total == 1 and ' failed attempt' or ' failed attempts') ..
    ' (FF_MAX_ATTEMPTS=' .. max_attempts .. '): ' .. table.concat(how, ', ') .. '; the last time: ' ..
    last .. '; ' .. advice
end
local function end_failed(run, metrics, state, now, maxlen, event_json, message)
  redis.call('HSET', run, 'status', 'failed', 'worker', '', 'error', message, 'finished_at', now,
    'updated_at', now)
  local event = cjson.decode(event_json)
  event['error'] = message
  redis.call('XADD', metrics, 'MAXLEN', '~', maxlen, '*', 'data', cjson.encode(event))
  redis.call('DEL', state)
end
-- The attempt counted (lost, gave_up: the run's counts now), end the run failed at the cap, else queue it.
local function fail_at_cap_or_queue(run, metrics, state, now, maxlen, lost, gave_up, max_attempts, last,
    advice, queued_json, failed_json)
  if lost + gave_up >= tonumber(max_attempts) then
    end_failed(run, metrics, state, now, maxlen, failed_json,
      gave_up_error(lost, gave_up, max_attempts, last, advice))
    return 'failed'
  end
  redis.call('HSET', run, 'status', 'queued', 'worker', '', 'updated_at', now)
  redis.call('XADD', metrics, 'MAXLEN', '~', maxlen, '*', 'data', queued_json)
  return 'queued'
end
"""

# The reaper: a `running` run without a live lease lost its worker. Checking and requeueing in one
# script means two reapers cannot both requeue it, nor requeue a run a worker has just claimed.
# KEYS run, lease, metrics, state; ARGV now, maxlen, reason, the queued event (JSON), max_attempts,
# the failed event (JSON, without its error), advice. Returns false, 'queued' or 'failed'.
_REQUEUE_ORPHAN = (
    _END_FAILED
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return false end
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local lost = redis.call('HINCRBY', KEYS[1], 'lost_workers', 1)
local gave_up = tonumber(redis.call('HGET', KEYS[1], 'redis_give_ups') or '0')
return fail_at_cap_or_queue(KEYS[1], KEYS[3], KEYS[4], ARGV[1], ARGV[2], lost, gave_up, ARGV[5], ARGV[3],
  ARGV[7], ARGV[4], ARGV[6])
"""
)

# A worker that gave up on Redis hands its run back: KEYS lease, run, metrics, state; ARGV worker,
# maxlen, now, why, the queued event (JSON), max_attempts, the failed event (JSON, without its error),
# advice. Returns 'queued', 'failed', or false when the lease is not the worker's. Sent again after a
# timeout, a hand-back that landed the first time (its lease is gone, and the run has its very
# updated_at) answers the same again and writes nothing.
_HAND_BACK = (
    _END_FAILED
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  local now = redis.call('HMGET', KEYS[2], 'status', 'updated_at')
  if now[2] == ARGV[3] and (now[1] == 'queued' or now[1] == 'failed') then return now[1] end
  return false
end
local gave_up = redis.call('HINCRBY', KEYS[2], 'redis_give_ups', 1)
local lost = tonumber(redis.call('HGET', KEYS[2], 'lost_workers') or '0')
redis.call('DEL', KEYS[1])
return fail_at_cap_or_queue(KEYS[2], KEYS[3], KEYS[4], ARGV[3], ARGV[2], lost, gave_up, ARGV[6], ARGV[4],
  ARGV[8], ARGV[5], ARGV[7])
"""
)

CapOutcome = Literal["queued", "failed"]


class AttemptCap:
    """The two ways an attempt ends without ending its run, each counted against FF_MAX_ATTEMPTS (the
    base of fflab.store.attempts.AttemptStore)."""

    def __init__(self, client: redis.Redis, metrics_maxlen: int = 100_000):
        self.redis = client
        self.metrics_maxlen = metrics_maxlen
        self._requeue_orphan = client.register_script(_REQUEUE_ORPHAN)
        self._hand_back = client.register_script(_HAND_BACK)

    def requeue_if_orphaned(
        self, run_id: str, reason: str, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> CapOutcome | None:
        """Count a lost worker of a `running` run whose lease expired and put the run back to `queued`,
        or end it `failed` when this failed attempt is its `max_attempts`-th; None (and nothing written)
        when the run is not orphaned. `reason` (why the lease expired) goes into the status event."""
        now = time.time()
        outcome = self._requeue_orphan(
            keys=[run_key(run_id), lease_key(run_id), metrics_key(run_id), state_key(run_id)],
            args=[
                repr(now),
                self.metrics_maxlen,
                reason,
                json.dumps(status_event("queued", now, reason=reason)),
                max_attempts,
                json.dumps(status_event("failed", now)),
                LOST_WORKER_ADVICE,
            ],
        )
        return outcome.decode() if outcome else None  # type: ignore[return-value]

    def hand_back(
        self,
        run_id: str,
        worker: str,
        why: str,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        *,
        at: float | None = None,
    ) -> CapOutcome | None:
        """Count an attempt that gave up on Redis, release its lease and put the run back to `queued` (to
        resume from its last checkpoint), or end it `failed` when this failed attempt is its
        `max_attempts`-th. `why` says what Redis did ('Redis is out of memory for 300 s while saving its
        checkpoint at step 8 (...)'). Fenced by the lease: None (and nothing written) when `worker` no
        longer holds it. `at` (default: now) is when it was handed back: a call sent again with the same
        `at` after a timeout answers as the first one did if that landed."""
        now = time.time() if at is None else at
        outcome = self._hand_back(
            keys=[lease_key(run_id), run_key(run_id), metrics_key(run_id), state_key(run_id)],
            args=[
                worker,
                self.metrics_maxlen,
                repr(now),
                why,
                json.dumps(status_event("queued", now, reason=f"{why}; handed back")),
                max_attempts,
                json.dumps(status_event("failed", now)),
                REDIS_ADVICE,
            ],
        )
        return outcome.decode() if outcome else None  # type: ignore[return-value]
