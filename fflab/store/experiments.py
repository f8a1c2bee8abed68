"""Experiments in Redis: their records, the trials their coordinator drew, the runs it created, and
the results table built from those runs.

The API creates, lists, cancels and deletes experiments here; the coordinator (worker.coordinator)
records trials and runs and ends experiments; the workers' retention (worker.retention) deletes old
ended ones. Runs themselves live in the run store: this module
only reads the fields of theirs that a results table needs. Keys come from `fflab.store.keys`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from ffcore.experiment import ExperimentSpec
from ffcore.experiment_table import ExperimentTable, RunOutcome, SettingResult, SettingStatus
from fflab.store.keys import (
    EXPERIMENTS_INDEX,
    RUN_ID_LENGTH,
    ExperimentRecord,
    ExperimentStatus,
    TrialEntry,
    decode_experiment,
    encode_experiment,
    experiment_key,
    experiment_lock_key,
    experiment_pruned_key,
    experiment_runs_key,
    experiment_trials_key,
    optuna_prefix,
    run_key,
)

# End a running experiment, atomically. KEYS experiment; ARGV status, now, error. Returns the status
# before the call, false for no such experiment.
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], 'error', ARGV[3])
end
return status
"""

# Release the lock only if we still hold it. KEYS lock; ARGV token.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Renew the lock's expiry only if we still hold it; 0 when it was lost. KEYS lock; ARGV token, ttl ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# The run fields a results table reads.
_RUN_FIELDS = (
    "status",
    "val_error_scan",
    "val_error_softmax",
    "test_error_scan",
    "test_error_softmax",
    "epoch",
    "error",
)


class ExperimentLocked(Exception):
    """Another coordinator is advancing this experiment right now."""


class ExperimentLockLost(Exception):
    """The lock expired (or was taken over) while its holder was still at work: it must stop writing."""


class ExperimentLease:
    """A held coordinator lock. `renew()` before each write: it pushes the expiry back and fails when
    the lock is no longer ours, so a holder that stalled past its expiry stops instead of writing over
    the new holder's work."""

    def __init__(self, renew_script, key: str, token: str, ttl_ms: int):
        self._renew = renew_script
        self.key = key
        self.token = token
        self.ttl_ms = ttl_ms

    def renew(self) -> None:
        if not self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            raise ExperimentLockLost(self.key)


class ExperimentStore:
    def __init__(self, client: redis.Redis):
        self.redis = client
        self._finish = client.register_script(_FINISH)
        self._unlock = client.register_script(_UNLOCK)
        self._renew = client.register_script(_RENEW)

    # --- records -------------------------------------------------------------------------------

    def create(self, spec: ExperimentSpec, name: str | None = None) -> ExperimentRecord:
        now = time.time()
        record = ExperimentRecord(
            id=uuid.uuid4().hex[:RUN_ID_LENGTH], name=name, status="running", spec=spec, created_at=now
        )
        pipe = self.redis.pipeline()
        pipe.hset(experiment_key(record.id), mapping=encode_experiment(record))
        pipe.zadd(EXPERIMENTS_INDEX, {record.id: now})
        pipe.execute()
        return record

    def get(self, experiment_id: str) -> ExperimentRecord | None:
        raw = self.redis.hgetall(experiment_key(experiment_id))
        return decode_experiment(raw) if raw else None

    def list(
        self, status: str | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[list[ExperimentRecord], int]:
        """Experiments newest first (optionally only those with `status`), and how many matched."""
        ids = self._ids(status)
        page = [self.get(i) for i in ids[offset : offset + limit]]
        return [r for r in page if r is not None], len(ids)

    def running_ids(self) -> list[str]:
        """Ids of the running experiments: the heartbeat's question, answered without reading specs."""
        return self._ids("running")

    def _ids(self, status: str | None) -> list[str]:
        """Experiment ids newest first, only those with `status` unless it is None."""
        ids = [i.decode() for i in self.redis.zrevrange(EXPERIMENTS_INDEX, 0, -1)]
        if status is None:
            return ids
        pipe = self.redis.pipeline(transaction=False)
        for experiment_id in ids:
            pipe.hget(experiment_key(experiment_id), "status")
        return [i for i, s in zip(ids, pipe.execute(), strict=True) if s == status.encode()]

    def finish(self, experiment_id: str, status: ExperimentStatus, error: str | None = None) -> str | None:
        """End a running experiment with `status`; the status it had before (None: no such experiment).
        An experiment that already ended keeps its status."""
        args = [status, repr(time.time()), error or ""]
        before = self._finish(keys=[experiment_key(experiment_id)], args=args)
        return before.decode() if before else None

    def created_before(self, cutoff: float) -> dict[str, float | None]:
        """Id -> end time (None while it runs) of every experiment created before the Unix time
        `cutoff`, in one round trip and without reading specs (what retention reads: the runs created
        before `cutoff` can only belong to these)."""
        ids = [i.decode() for i in self.redis.zrangebyscore(EXPERIMENTS_INDEX, "-inf", f"({cutoff!r}")]
        pipe = self.redis.pipeline(transaction=False)
        for experiment_id in ids:
            pipe.hmget(experiment_key(experiment_id), "status", "finished_at")
        ends: dict[str, float | None] = {}
        for experiment_id, (status, finished_at) in zip(ids, pipe.execute(), strict=True):
            if status is not None:  # (deleted meanwhile otherwise)
                ended = status != b"running" and finished_at
                ends[experiment_id] = float(finished_at) if ended else None
        return ends

    def delete(self, experiment_id: str) -> list[str]:
        """Remove the experiment and its Optuna journal; returns its runs' ids (the caller deletes them)."""
        run_ids = list(self.run_ids(experiment_id).values())
        journal = list(self.redis.scan_iter(match=optuna_prefix(experiment_id) + ":*", count=1000))
        pipe = self.redis.pipeline()
        pipe.zrem(EXPERIMENTS_INDEX, experiment_id)
        keys = [
            experiment_key(experiment_id),
            experiment_trials_key(experiment_id),
            experiment_runs_key(experiment_id),
            experiment_pruned_key(experiment_id),
            *journal,
        ]
        pipe.delete(*keys)
        pipe.execute()
        return run_ids

    # --- what the coordinator records ------------------------------------------------------------

    @contextmanager
    def lock(self, experiment_id: str, ttl_s: float = 60.0) -> Iterator[ExperimentLease]:
        """Hold the experiment's coordinator lock, or raise ExperimentLocked; it expires after `ttl_s`
        (from the last renewal) should its holder die."""
        token = uuid.uuid4().hex
        key = experiment_lock_key(experiment_id)
        ttl_ms = int(ttl_s * 1000)
        if not self.redis.set(key, token, nx=True, px=ttl_ms):
            raise ExperimentLocked(experiment_id)
        try:
            yield ExperimentLease(self._renew, key, token, ttl_ms)
        finally:
            self._unlock(keys=[key], args=[token])

    def trials(self, experiment_id: str) -> list[TrialEntry]:
        """The trials drawn so far, by trial number."""
        raw = self.redis.hgetall(experiment_trials_key(experiment_id))
        entries = [TrialEntry.model_validate_json(v) for v in raw.values()]
        return sorted(entries, key=lambda e: e.number)

    def save_trial(self, experiment_id: str, entry: TrialEntry) -> None:
        self.redis.hset(experiment_trials_key(experiment_id), str(entry.number), entry.model_dump_json())

    def run_ids(self, experiment_id: str) -> dict[tuple[int, int], str]:
        """(setting, seed) -> run id, for the runs whose task was sent."""
        raw = self.redis.hgetall(experiment_runs_key(experiment_id))
        pairs = {tuple(int(p) for p in k.decode().split(":")): v.decode() for k, v in raw.items()}
        return pairs  # type: ignore[return-value]

    def save_run_id(self, experiment_id: str, setting: int, seed: int, run_id: str) -> None:
        self.redis.hset(experiment_runs_key(experiment_id), f"{setting}:{seed}", run_id)

    def mark_pruned(self, experiment_id: str, run_id: str) -> None:
        self.redis.sadd(experiment_pruned_key(experiment_id), run_id)

    # --- the results table -----------------------------------------------------------------------

    def table(self, record: ExperimentRecord) -> ExperimentTable:
        """Every setting drawn so far with the runs created for it, as they stand now."""
        spec = record.spec
        settings: dict[int, dict[str, Any]] = {}
        for entry in self.trials(record.id):
            settings.setdefault(
                entry.setting, {"trial": entry.number, "params": entry.params, "error": entry.error}
            )
        run_ids = self.run_ids(record.id)
        pruned = {m.decode() for m in self.redis.smembers(experiment_pruned_key(record.id))}
        ordered = sorted(run_ids.items())
        pipe = self.redis.pipeline()
        for _, run_id in ordered:
            pipe.hmget(run_key(run_id), *_RUN_FIELDS)
        runs: dict[int, list[RunOutcome]] = {}
        pruned_settings = set()
        for ((setting, seed), run_id), values in zip(ordered, pipe.execute(), strict=True):
            runs.setdefault(setting, []).append(_outcome(seed, run_id, values, run_id in pruned))
            if run_id in pruned:
                pruned_settings.add(setting)
        table = ExperimentTable(spec=spec)
        for index in sorted(settings):
            setting_runs = sorted(runs.get(index, []), key=lambda r: spec.seeds.index(r.seed))
            if settings[index]["error"] is not None:
                status: SettingStatus = "failed"
            elif index in pruned_settings:  # its first seed was pruned (stopped early, or at its end)
                status = "pruned"
            else:
                status = setting_status(spec, setting_runs, record.status == "cancelled")
            table.settings.append(SettingResult(**settings[index], status=status, runs=setting_runs))
        return table


def setting_status(spec: ExperimentSpec, runs: list[RunOutcome], cancelled: bool = False) -> SettingStatus:
    """What became of a setting, from its runs so far (the service's form of ffcore.sweep's rule)."""
    by_seed = {run.seed: run for run in runs}
    first = by_seed.get(spec.seeds[0])
    if first is not None and first.status == "pruned":
        return "pruned"
    if any(run.status == "failed" for run in runs):
        return "failed"
    if any(run.status == "cancelled" for run in runs):
        return "cancelled"
    if all(seed in by_seed and by_seed[seed].status == "succeeded" for seed in spec.seeds):
        return "succeeded"
    return "cancelled" if cancelled else "running"


def _outcome(seed: int, run_id: str, values: list[bytes | None], pruned: bool) -> RunOutcome:
    fields = dict(zip(_RUN_FIELDS, (v.decode() if v else None for v in values), strict=True))
    status = fields["status"] or "failed"  # a run deleted under its experiment counts as failed
    if pruned and status == "cancelled":
        status = "pruned"

    def number(name: str) -> float | None:
        return float(fields[name]) if fields[name] else None

    return RunOutcome(
        seed=seed,
        status=status,  # type: ignore[arg-type]
        run_id=run_id,
        val_error_scan=number("val_error_scan"),
        val_error_softmax=number("val_error_softmax"),
        test_error_scan=number("test_error_scan"),
        test_error_softmax=number("test_error_softmax"),
        epochs=int(fields["epoch"] or 0),
        error=fields["error"] or ("the run was deleted" if fields["status"] is None else None),
    )


def counts(table: ExperimentTable) -> dict[str, int]:
    """How many runs of the table are queued, running and finished."""
    statuses = [run.status for setting in table.settings for run in setting.runs]
    queued, running = statuses.count("queued"), statuses.count("running")
    return {"runs_queued": queued, "runs_running": running, "runs_finished": len(statuses) - queued - running}
