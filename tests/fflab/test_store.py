"""RunStore against a real redis-server: records, metrics, leases and the training-attempt scripts."""

from __future__ import annotations

import time

import pytest

from ffcore.config import RunConfig
from fflab.store import LeaseLostError, RunStore


@pytest.fixture
def store(redis_url) -> RunStore:
    return RunStore.from_url(redis_url, metrics_maxlen=1000)


@pytest.fixture
def run_id(store) -> str:
    return store.create_run(RunConfig.from_preset("quick"), preset="quick").id


def statuses(store: RunStore, run_id: str) -> list[str]:
    records, _ = store.read_metrics(run_id)
    return [r["status"] for _, r in records if r["kind"] == "status"]


def test_create_get_list_and_delete(store):
    first = store.create_run(RunConfig.from_preset("quick"), preset="quick")
    second = store.create_run(RunConfig.from_preset("quick", epochs=3))
    got = store.get_run(second.id)
    assert got.status == "queued" and got.config.epochs == 3 and got.preset is None
    runs, total = store.list_runs()
    assert total == 2 and [r.id for r in runs] == [second.id, first.id]
    store.update_run(first.id, status="running")
    runs, total = store.list_runs(status="running")
    assert total == 1 and runs[0].id == first.id
    assert store.running_run_ids() == [first.id]
    assert store.delete_run(first.id) and store.get_run(first.id) is None
    assert not store.delete_run(first.id)


def test_metrics_cursor_reads_only_newer_records(store, run_id):
    store.append_metrics(run_id, [{"kind": "train", "step": s} for s in (25, 50, 75)])
    records, cursor = store.read_metrics(run_id, limit=2)
    assert [r.get("status") or r["step"] for _, r in records] == ["queued", 25]
    records, cursor = store.read_metrics(run_id, after=cursor)
    assert [r["step"] for _, r in records] == [50, 75]
    assert store.read_metrics(run_id, after=cursor) == ([], cursor)


def test_claim_marks_running_and_a_second_claim_is_refused(store, run_id):
    first = store.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    assert (first.outcome, first.attempt) == ("claimed", 1)
    record = store.get_run(run_id)
    assert (record.status, record.worker, record.device, record.attempts) == ("running", "w1", "cpu", 1)
    assert record.started_at is not None
    assert store.claim_run(run_id, "w2", ttl_s=10, device="cpu").outcome == "leased"
    assert store.get_run(run_id).attempts == 1
    assert statuses(store, run_id) == ["queued", "running"]


def test_claim_skips_missing_finished_and_cancelled_runs(store, run_id):
    assert store.claim_run("nope", "w1", 10, "cpu").outcome == "missing"
    store.request_cancel(run_id)
    assert store.claim_run(run_id, "w1", 10, "cpu").outcome == "cancelled"
    assert store.get_run(run_id).status == "cancelled"
    assert store.lease_owner(run_id) is None
    assert store.claim_run(run_id, "w1", 10, "cpu").outcome == "finished"
    assert statuses(store, run_id) == ["queued", "cancelled"]


def test_writes_are_fenced_by_the_lease(store, run_id):
    store.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    store.publish_progress(run_id, "w1", [{"kind": "train", "step": 25}], step=25, progress=0.5)
    assert store.get_run(run_id).step == 25
    with pytest.raises(LeaseLostError):
        store.publish_progress(run_id, "w2", [{"kind": "train", "step": 50}], step=50)
    with pytest.raises(LeaseLostError):
        store.save_checkpoint(run_id, "w2", b"state", b"model", step=50, epoch=1)
    assert not store.end_attempt(run_id, "w2", "succeeded")
    record = store.get_run(run_id)
    assert (record.step, record.status, record.has_model) == (25, "running", False)
    assert store.count_metrics(run_id) == 3  # queued, running, one train record


def test_checkpoint_remembers_the_stream_position_and_resume_drops_later_records(store, run_id):
    store.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    store.publish_progress(run_id, "w1", [{"kind": "train", "step": 25}, {"kind": "eval", "step": 50}])
    stream_id = store.save_checkpoint(run_id, "w1", b"state", b"model", step=50, epoch=1)
    checkpoint = store.load_checkpoint(run_id)
    assert (checkpoint.stream_id, checkpoint.step, checkpoint.epoch) == (stream_id, 50, 1)
    assert store.load_state(run_id) == b"state" and store.load_model(run_id) == b"model"
    assert store.get_run(run_id).has_model
    # The attempt goes on past its checkpoint, then dies; its lease expires; a new one resumes.
    store.publish_progress(run_id, "w1", [{"kind": "train", "step": 75}])
    store.redis.delete(f"ff:run:{run_id}:lease")
    assert store.requeue_if_orphaned(run_id, "lease expired")
    assert store.claim_run(run_id, "w2", 10, "cpu").attempt == 2
    assert store.discard_metrics_after(run_id, checkpoint.stream_id) == 1
    records, _ = store.read_metrics(run_id)
    kept = [(r["kind"], r.get("step") or r.get("status")) for _, r in records]
    assert kept == [
        ("status", "queued"), ("status", "running"), ("train", 25), ("eval", 50),
        ("status", "queued"), ("status", "running"),
    ]  # fmt: skip
    # Without a checkpoint every train/eval record goes.
    assert store.discard_metrics_after(run_id, None) == 2
    assert all(r["kind"] == "status" for _, r in store.read_metrics(run_id)[0])


def test_reaper_requeues_only_running_runs_without_a_lease(store, run_id):
    assert not store.requeue_if_orphaned(run_id, "x")  # queued: not orphaned
    store.claim_run(run_id, "w1", ttl_s=0.2, device="cpu")
    assert not store.requeue_if_orphaned(run_id, "x")  # lease alive
    time.sleep(0.3)
    assert store.requeue_if_orphaned(run_id, "lease expired")
    assert not store.requeue_if_orphaned(run_id, "lease expired")  # a second reaper does nothing
    record = store.get_run(run_id)
    assert record.status == "queued" and record.worker is None
    assert store.read_metrics(run_id)[0][-1][1]["reason"] == "lease expired"


def test_end_attempt_finishes_or_hands_back(store, run_id):
    store.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    store.save_checkpoint(run_id, "w1", b"state", b"model", step=50, epoch=1)
    assert store.end_attempt(run_id, "w1", "queued", reason="worker shutting down")
    assert store.load_state(run_id) == b"state" and store.lease_owner(run_id) is None
    assert store.claim_run(run_id, "w2", 10, "cpu").attempt == 2
    assert store.end_attempt(run_id, "w2", "failed", error="boom")
    record = store.get_run(run_id)
    assert (record.status, record.error) == ("failed", "boom") and record.finished_at
    assert store.load_state(run_id) is None and store.load_model(run_id) == b"model"
    last = store.read_metrics(run_id)[0][-1][1]
    assert (last["status"], last["error"]) == ("failed", "boom")


def test_lease_renew_and_control_flags(store, run_id):
    assert store.acquire_lease(run_id, "w1", ttl_s=0.3)
    assert not store.acquire_lease(run_id, "w2", ttl_s=10)
    assert store.control_flags(run_id, "w1") == (True, False)
    assert not store.renew_lease(run_id, "w2", ttl_s=10)
    assert store.renew_lease(run_id, "w1", ttl_s=10)
    store.request_cancel(run_id)
    assert store.control_flags(run_id, "w1") == (True, True)
    assert store.control_flags(run_id, "w2") == (False, True)
    store.release_lease(run_id, "w1")
    assert store.lease_owner(run_id) is None


def test_workers_register_and_age_out(store):
    store.register_worker("a", {"device": "cpu", "run_id": None})
    store.register_worker("b", {"device": "cuda:0", "run_id": "x"})
    assert [w["name"] for w in store.list_workers(max_age_s=60)] == ["a", "b"]
    store.redis.hset("ff:workers", "old", '{"name": "old", "seen_at": 1.0}')
    assert "old" not in [w["name"] for w in store.list_workers(max_age_s=60)]
    store.remove_worker("a")
    assert [w["name"] for w in store.list_workers(max_age_s=60)] == ["b"]
    assert store.prune_workers(max_age_s=60) == ["old"]
    assert sorted(store.redis.hkeys("ff:workers")) == [b"b"]
