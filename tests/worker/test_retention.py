"""Retention (worker.retention): with FF_RETENTION_DAYS the workers' reaper deletes finished runs and
experiments older than that, with all their data; against a real redis-server, in process and through
a real worker."""

from __future__ import annotations

import threading
import time

import pytest

from ffcore.experiment import ExperimentSpec
from fflab.store.keys import (
    EXPERIMENTS_INDEX,
    RETENTION_TURN,
    RUNS_INDEX,
    checkpoint_key,
    experiment_key,
    optuna_prefix,
    run_key,
    state_key,
)
from tests.support.store import TestStore
from tests.support.tiny_data import tiny_config
from tests.support.waiting import wait_for
from tests.support.worker import start_worker
from worker.heartbeat import Heartbeat
from worker.reaper import Reaper
from worker.retention import DAY_S, Retention

RETENTION_DAYS = 30


def created_days_ago(store: TestStore, run_id: str, days: float) -> None:
    """Backdate a run's creation (its record and its place in the index)."""
    at = time.time() - days * DAY_S
    store.update_run(run_id, created_at=at, updated_at=at)
    store.redis.zadd(RUNS_INDEX, {run_id: at})


def make_run(store: TestStore, status: str, days: float, experiment: str | None = None) -> str:
    """A run that has everything a trained run stores (metrics, model, state, checkpoint, cancel flag),
    created a day before it reached `status`, `days` ago."""
    run_id = store.create_run(tiny_config(), experiment=experiment).id
    created_days_ago(store, run_id, days + 1)
    store.append_metrics(run_id, [{"kind": "train", "step": 1}])
    store.save_model(run_id, b"model")
    store.redis.set(state_key(run_id), b"state")
    store.redis.hset(checkpoint_key(run_id), mapping={"stream_id": "0-0", "step": 1, "epoch": 0, "at": 1})
    store.request_cancel(run_id)
    at = time.time() - days * DAY_S
    store.set_status(
        run_id, status, finished_at=at if status in ("succeeded", "failed", "cancelled") else None
    )
    store.update_run(run_id, updated_at=at)
    return run_id


def make_experiment(
    store: TestStore, status: str, days: float, runs: list[str], created_days: float = 100
) -> str:
    """An experiment created `created_days` ago (before its runs) that reached `status` `days` ago,
    with a study and `runs` (recorded and tagged as its coordinator does)."""
    spec = ExperimentSpec.model_validate(
        {"base": {"preset": "quick", "overrides": {"epochs": 1}}, "params": {"lr": {"values": [1e-3]}}}
    )
    experiment_id = store.experiments.create(spec).id
    created = time.time() - created_days * DAY_S
    store.redis.zadd(EXPERIMENTS_INDEX, {experiment_id: created})
    store.redis.hset(experiment_key(experiment_id), mapping={"created_at": repr(created)})
    if status != "running":
        store.experiments.finish(experiment_id, status)
        store.redis.hset(experiment_key(experiment_id), "finished_at", repr(time.time() - days * DAY_S))
    for seed, run_id in enumerate(runs):
        store.experiments.save_run_id(experiment_id, 0, seed, run_id)
        store.update_run(run_id, experiment=experiment_id)
    store.redis.set(f"{optuna_prefix(experiment_id)}:log:0", "{}")
    return experiment_id


def gone(store: TestStore, run_id: str) -> bool:
    """Nothing of the run is left: no key under its prefix, no index entry."""
    return not store.redis.keys(f"{run_key(run_id)}*") and store.redis.zscore(RUNS_INDEX, run_id) is None


def kept(store: TestStore, run_id: str) -> bool:
    return store.get_run(run_id) is not None and store.load_model(run_id) == b"model"


@pytest.fixture
def retention(store) -> Retention:
    return Retention(store.runs, store.experiments, RETENTION_DAYS)


def test_finished_runs_past_the_retention_are_deleted_with_all_their_data(store, retention):
    old = [make_run(store, status, days=31) for status in ("succeeded", "failed", "cancelled")]
    recent = make_run(store, "succeeded", days=29)
    unfinished = [make_run(store, status, days=31) for status in ("queued", "running")]
    assert all(len(store.redis.keys(f"{run_key(run_id)}*")) == 6 for run_id in old)  # all it stores

    expired = retention.expire(time.time())

    assert sorted(expired.runs) == sorted(old) and expired.experiments == []
    assert all(gone(store, run_id) for run_id in old)
    assert kept(store, recent) and all(kept(store, run_id) for run_id in unfinished)
    assert retention.expire(time.time()).runs == []  # a second pass finds nothing more


def test_experiments_past_the_retention_go_with_their_runs_and_others_keep_theirs(store, retention):
    # An ended experiment past the retention: it goes, with its study and its runs (recorded or only
    # tagged with it), recent ones included.
    old_runs = [make_run(store, "succeeded", days=40), make_run(store, "succeeded", days=32)]
    old = make_experiment(store, "succeeded", days=31, runs=old_runs[:1])
    store.update_run(old_runs[1], experiment=old)  # made but never recorded (its coordinator died)
    # A running experiment's old finished runs stay, as do a recently ended experiment's.
    running_runs = [make_run(store, "succeeded", days=60)]
    running = make_experiment(store, "running", days=60, runs=running_runs)
    recent_runs = [make_run(store, "failed", days=45)]
    recent = make_experiment(store, "cancelled", days=10, runs=recent_runs)
    # A run whose experiment was deleted before it is a run like any other.
    orphan = make_run(store, "succeeded", days=31, experiment="deadbeef0000")

    expired = retention.expire(time.time())

    assert expired.experiments == [old] and sorted(expired.runs) == sorted([*old_runs, orphan])
    assert store.experiments.get(old) is None and not store.redis.keys(f"{experiment_key(old)}*")
    assert all(gone(store, run_id) for run_id in [*old_runs, orphan])
    assert store.experiments.get(running) is not None and kept(store, running_runs[0])
    assert store.experiments.get(recent) is not None and kept(store, recent_runs[0])


def test_an_ended_experiment_whose_runs_have_not_all_ended_is_kept(store, retention):
    runs = [make_run(store, "succeeded", days=31), make_run(store, "running", days=31)]
    experiment_id = make_experiment(store, "cancelled", days=31, runs=runs)
    assert retention.expire(time.time()).experiments == []
    assert store.experiments.get(experiment_id) is not None and all(kept(store, r) for r in runs)


def test_one_pass_every_few_minutes_among_all_the_workers(store):
    first, second = (Retention(store.runs, store.experiments, RETENTION_DAYS) for _ in range(2))
    old = make_run(store, "succeeded", days=31)
    assert first.maybe_expire().runs == [old]
    assert 0 < store.redis.pttl(RETENTION_TURN) <= 300_000  # the next pass waits five minutes

    older = make_run(store, "succeeded", days=50)
    assert second.maybe_expire() is None and first.maybe_expire() is None  # nobody's turn yet
    assert kept(store, older)
    store.redis.delete(RETENTION_TURN)  # as its TTL would, five minutes on
    assert second.maybe_expire().runs == [older]


def test_workers_expiring_at_once_delete_each_thing_once(store):
    old = [make_run(store, "succeeded", days=31) for _ in range(20)]
    experiment_runs = [make_run(store, "failed", days=31) for _ in range(3)]
    experiment_id = make_experiment(store, "failed", days=31, runs=experiment_runs)
    workers = [Retention(store.runs, store.experiments, RETENTION_DAYS) for _ in range(3)]
    results: list = []
    threads = [threading.Thread(target=lambda w=w: results.append(w.expire(time.time()))) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    deleted_runs = [run_id for result in results for run_id in result.runs]
    assert sorted(deleted_runs) == sorted(old + experiment_runs)  # each once, none missed
    assert [e for result in results for e in result.experiments] == [experiment_id]
    assert all(gone(store, run_id) for run_id in deleted_runs)


def test_the_heartbeat_expires_old_runs_only_when_retention_is_set(store, make_context, enqueued):
    old = make_run(store, "succeeded", days=31)
    context = make_context()
    unset = Heartbeat(context, Reaper(store.attempts, enqueued.append, context.name))
    unset.beat()
    assert unset.background.keys() == set() and kept(store, old)

    retention = Retention(store.runs, store.experiments, RETENTION_DAYS)
    beating = Heartbeat(context, Reaper(store.attempts, enqueued.append, context.name, retention=retention))
    beating.beat()
    beating.background["fflab-retention"].join(timeout=30)
    assert gone(store, old)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_worker_with_a_retention_deletes_old_finished_runs(redis_url, mnist_dir):
    store = TestStore.from_url(redis_url)
    old, recent = make_run(store, "succeeded", days=2), make_run(store, "cancelled", days=0.5)
    with start_worker(redis_url, mnist_dir, heartbeat_interval_s=0.5, env={"FF_RETENTION_DAYS": "1"}):
        wait_for(lambda: gone(store, old), 60, "the worker to delete the old run")
    assert kept(store, recent)
