"""The worker's side of the run store (fflab.store.attempts) against a real redis-server: claims,
lease-fenced writes, checkpoints, the end of an attempt and the reaper's requeue."""

from __future__ import annotations

import time

import pytest

from fflab.store.attempts import LeaseLostError
from fflab.store.keys import Provenance
from tests.support.store import TestStore


def statuses(store: TestStore, run_id: str) -> list[str]:
    records, _ = store.runs.read_metrics(run_id)
    return [r["status"] for _, r in records if r["kind"] == "status"]


@pytest.fixture
def attempts(store):
    return store.attempts


def test_claim_marks_running_and_a_second_claim_is_refused(store, attempts, run_id):
    first = attempts.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    assert (first.outcome, first.attempt) == ("claimed", 1)
    record = store.runs.get_run(run_id)
    assert (record.status, record.worker, record.device, record.attempts) == ("running", "w1", "cpu", 1)
    assert record.started_at is not None
    assert attempts.claim_run(run_id, "w2", ttl_s=10, device="cpu").outcome == "leased"
    assert store.runs.get_run(run_id).attempts == 1
    assert statuses(store, run_id) == ["queued", "running"]


def test_the_claim_event_names_the_worker_and_the_attempt(store, attempts, run_id):
    attempts.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    event = store.runs.read_metrics(run_id)[0][-1][1]
    assert set(event) == {"kind", "status", "at", "worker", "attempt"}
    assert (event["kind"], event["status"], event["worker"], event["attempt"]) == (
        "status",
        "running",
        "w1",
        1,
    )
    assert event["at"] == pytest.approx(store.runs.get_run(run_id).started_at)


def test_claim_skips_missing_finished_and_cancelled_runs(store, attempts, run_id):
    assert attempts.claim_run("nope", "w1", 10, "cpu").outcome == "missing"
    store.request_cancel(run_id)
    assert attempts.claim_run(run_id, "w1", 10, "cpu").outcome == "cancelled"
    assert store.runs.get_run(run_id).status == "cancelled"
    assert attempts.lease_owner(run_id) is None
    assert attempts.claim_run(run_id, "w1", 10, "cpu").outcome == "finished"
    assert statuses(store, run_id) == ["queued", "cancelled"]
    assert set(store.runs.read_metrics(run_id)[0][-1][1]) == {"kind", "status", "at"}


def test_writes_are_fenced_by_the_lease(store, attempts, run_id):
    attempts.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    attempts.publish_progress(run_id, "w1", [{"kind": "train", "step": 25}], step=25, progress=0.5)
    assert store.runs.get_run(run_id).step == 25
    with pytest.raises(LeaseLostError):
        attempts.publish_progress(run_id, "w2", [{"kind": "train", "step": 50}], step=50)
    with pytest.raises(LeaseLostError):
        attempts.save_checkpoint(run_id, "w2", b"state", b"model", step=50, epoch=1)
    assert not attempts.end_attempt(run_id, "w2", "succeeded")
    record = store.runs.get_run(run_id)
    assert (record.step, record.status, record.has_model) == (25, "running", False)
    assert store.count_metrics(run_id) == 3  # queued, running, one train record


def test_checkpoint_remembers_the_stream_position_and_resume_drops_later_records(store, attempts, run_id):
    attempts.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    attempts.publish_progress(run_id, "w1", [{"kind": "train", "step": 25}, {"kind": "eval", "step": 50}])
    stream_id = attempts.save_checkpoint(run_id, "w1", b"state", b"model", step=50, epoch=1)
    checkpoint = attempts.load_checkpoint(run_id)
    assert (checkpoint.stream_id, checkpoint.step, checkpoint.epoch) == (stream_id, 50, 1)
    assert store.runs.load_checkpoint(run_id) == checkpoint  # what the API's predictions report
    assert attempts.load_state(run_id) == b"state" and store.runs.load_model(run_id) == b"model"
    assert attempts.load_run(run_id).has_model
    # The attempt goes on past its checkpoint, then dies; its lease expires; a new one resumes.
    attempts.publish_progress(run_id, "w1", [{"kind": "train", "step": 75}])
    store.redis.delete(f"ff:run:{run_id}:lease")
    assert attempts.requeue_if_orphaned(run_id, "lease expired")
    assert attempts.claim_run(run_id, "w2", 10, "cpu").attempt == 2
    assert attempts.discard_metrics_after(run_id, checkpoint.stream_id) == 1
    records, _ = store.runs.read_metrics(run_id)
    kept = [(r["kind"], r.get("step") or r.get("status")) for _, r in records]
    assert kept == [
        ("status", "queued"), ("status", "running"), ("train", 25), ("eval", 50),
        ("status", "queued"), ("status", "running"),
    ]  # fmt: skip
    # Without a checkpoint every train/eval record goes.
    assert attempts.discard_metrics_after(run_id, None) == 2
    assert all(r["kind"] == "status" for _, r in store.runs.read_metrics(run_id)[0])


def test_reaper_requeues_only_running_runs_without_a_lease(store, attempts, run_id):
    assert not attempts.requeue_if_orphaned(run_id, "x")  # queued: not orphaned
    attempts.claim_run(run_id, "w1", ttl_s=0.2, device="cpu")
    assert not attempts.requeue_if_orphaned(run_id, "x")  # lease alive
    time.sleep(0.3)
    assert attempts.requeue_if_orphaned(run_id, "lease expired")
    assert not attempts.requeue_if_orphaned(run_id, "lease expired")  # a second reaper does nothing
    record = store.runs.get_run(run_id)
    assert record.status == "queued" and record.worker is None
    last = store.runs.read_metrics(run_id)[0][-1][1]
    assert last["reason"] == "lease expired"
    assert set(last) == {"kind", "status", "at", "reason"} and last["status"] == "queued"


def test_end_attempt_finishes_or_hands_back(store, attempts, run_id):
    attempts.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    attempts.save_checkpoint(run_id, "w1", b"state", b"model", step=50, epoch=1)
    assert attempts.end_attempt(run_id, "w1", "queued", reason="worker shutting down")
    assert attempts.load_state(run_id) == b"state" and attempts.lease_owner(run_id) is None
    handed_back = store.runs.read_metrics(run_id)[0][-1][1]
    assert (handed_back["status"], handed_back["reason"]) == ("queued", "worker shutting down")
    assert attempts.claim_run(run_id, "w2", 10, "cpu").attempt == 2
    assert attempts.end_attempt(run_id, "w2", "failed", error="boom")
    record = store.runs.get_run(run_id)
    assert (record.status, record.error) == ("failed", "boom") and record.finished_at
    assert attempts.load_state(run_id) is None and store.runs.load_model(run_id) == b"model"
    last = store.runs.read_metrics(run_id)[0][-1][1]
    assert (last["status"], last["error"]) == ("failed", "boom")
    assert last == {"kind": "status", "status": "failed", "at": record.finished_at, "error": "boom"}


def test_lease_renew_and_control_flags(store, attempts, run_id):
    assert store.acquire_lease(run_id, "w1", ttl_s=0.3)
    assert not store.acquire_lease(run_id, "w2", ttl_s=10)
    assert attempts.control_flags(run_id, "w1") == (True, False)
    assert not attempts.renew_lease(run_id, "w2", ttl_s=10)
    assert attempts.renew_lease(run_id, "w1", ttl_s=10)
    store.request_cancel(run_id)
    assert attempts.control_flags(run_id, "w1") == (True, True)
    assert attempts.control_flags(run_id, "w2") == (False, True)
    attempts.release_lease(run_id, "w1")
    assert attempts.lease_owner(run_id) is None


def test_scripts_are_registered_once_not_per_call(store, attempts, run_id, monkeypatch):
    registered = []
    monkeypatch.setattr(store.redis, "register_script", lambda script: registered.append(script))
    attempts.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    attempts.renew_lease(run_id, "w1", ttl_s=10)
    attempts.end_attempt(run_id, "w1", "succeeded")
    assert registered == []


def test_the_claim_records_the_attempts_provenance_and_the_last_attempt_wins(store, attempts, run_id):
    first = Provenance(fflab_version="0.1.0", torch_version="2.0", device="cpu", cpu_threads=2, host="a")
    attempts.claim_run(run_id, "w1", ttl_s=10, device="cpu", provenance=first)
    assert store.runs.get_run(run_id).provenance == first
    second = Provenance(fflab_version="0.1.0", torch_version="2.0", device="cuda:0", host="b")
    assert attempts.claim_run(run_id, "w2", ttl_s=10, device="cuda:0", provenance=second).outcome == "leased"
    assert store.runs.get_run(run_id).provenance == first  # a refused claim writes nothing
    attempts.end_attempt(run_id, "w1", "queued")
    attempts.claim_run(run_id, "w2", ttl_s=10, device="cuda:0", provenance=second)
    assert store.runs.get_run(run_id).provenance == second


def test_progress_sent_again_after_a_timeout_is_recorded_once(store, attempts, run_id):
    """A write whose answer timed out may have landed: the worker sends the same records again, with
    any newer ones after them, and each reaches the stream once."""
    attempts.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    first = [{"kind": "train", "step": 5, "at": 1.5}, {"kind": "train", "step": 10, "at": 2.5}]
    landed = attempts.publish_progress(run_id, "w1", first, step=10)
    assert attempts.publish_progress(run_id, "w1", first, step=10) == landed  # the same batch: nothing new
    newer = [
        {"kind": "eval", "step": 10, "split": "val", "at": 3.0},
        {"kind": "train", "step": 15, "at": 4.0},
    ]
    attempts.publish_progress(run_id, "w1", first + newer, step=15)
    records = [r for _, r in store.runs.read_metrics(run_id)[0] if r["kind"] != "status"]
    assert records == first + newer
    assert store.runs.get_run(run_id).step == 15
    # A batch none of which landed goes in whole.
    attempts.publish_progress(run_id, "w1", [{"kind": "train", "step": 20, "at": 5.0}])
    steps = [r["step"] for _, r in store.runs.read_metrics(run_id)[0] if r["kind"] == "train"]
    assert steps == [5, 10, 15, 20]


def test_an_end_sent_again_after_a_timeout_is_recorded_once(store, attempts, run_id):
    attempts.claim_run(run_id, "w1", ttl_s=10, device="cpu")
    at = time.time()
    assert attempts.end_attempt(run_id, "w1", "succeeded", at=at, step=40)
    assert attempts.end_attempt(run_id, "w1", "succeeded", at=at, step=40)  # the first landed: still ours
    assert statuses(store, run_id) == ["queued", "running", "succeeded"]
    record = store.runs.get_run(run_id)
    assert (record.status, record.finished_at, record.updated_at, record.step) == ("succeeded", at, at, 40)
    # Another end (another time, or another status) is not that one: the lease is gone.
    assert not attempts.end_attempt(run_id, "w1", "succeeded", at=at + 1)
    assert not attempts.end_attempt(run_id, "w1", "failed", at=at)
    assert statuses(store, run_id) == ["queued", "running", "succeeded"]
