"""The attempt cap (fflab.store.attempt_cap) against a real redis-server: the reaper's requeue of a run
whose worker was lost and the hand-back of an attempt that gave up on Redis are counted, together, and
the failed attempt that reaches FF_MAX_ATTEMPTS ends the run failed, saying how its attempts ended."""

from __future__ import annotations

import pytest

from fflab.store.attempt_cap import LOST_WORKER_ADVICE, REDIS_ADVICE
from fflab.store.keys import lease_key

OOM = "OOM command not allowed when used memory > 'maxmemory'."


def why(step: int) -> str:
    return f"Redis is out of memory for 300 s while saving its checkpoint at step {step} ({OOM})"


def status_records(store, run_id: str) -> list[dict]:
    return [r for _, r in store.runs.read_metrics(run_id)[0] if r["kind"] == "status"]


def start_attempt(store, run_id: str, worker: str, step: int) -> None:
    assert store.attempts.claim_run(run_id, worker, ttl_s=10, device="cpu").outcome == "claimed"
    store.attempts.save_checkpoint(run_id, worker, b"state", b"model", step=step, epoch=step)


def lose_worker(store, run_id: str, worker: str) -> str | None:
    store.redis.delete(lease_key(run_id))  # the worker died: its lease expired
    return store.attempts.requeue_if_orphaned(run_id, f"lease expired ({worker} lost)", max_attempts=3)


def assert_failed_for_good(store, run_id: str) -> None:
    """Finished: its training state dropped, its model kept, a failed event with its error, no more
    attempts."""
    record = store.runs.get_run(run_id)
    assert record.status == "failed" and record.finished_at is not None and record.worker is None
    assert store.attempts.load_state(run_id) is None and store.runs.load_model(run_id) == b"model"
    assert store.attempts.lease_owner(run_id) is None
    assert status_records(store, run_id)[-1] == {
        "kind": "status", "status": "failed", "error": record.error, "at": pytest.approx(record.finished_at),
    }  # fmt: skip
    assert store.attempts.claim_run(run_id, "w9", ttl_s=10, device="cpu").outcome == "finished"


def test_a_run_that_keeps_losing_its_worker_ends_failed_at_the_attempt_cap(store, run_id):
    for attempt in (1, 2, 3):
        start_attempt(store, run_id, f"w{attempt}", step=attempt)
        assert lose_worker(store, run_id, f"w{attempt}") == ("queued" if attempt < 3 else "failed")
    record = store.runs.get_run(run_id)
    assert (record.lost_workers, record.redis_give_ups, record.attempts) == (3, 0, 3)
    assert record.error == (
        "gave up after 3 failed attempts (FF_MAX_ATTEMPTS=3): its worker was lost 3 times; "
        f"the last time: lease expired (w3 lost); {LOST_WORKER_ADVICE}"
    )
    assert [r["status"] for r in status_records(store, run_id)] == ["queued"] + ["running", "queued"] * 2 + [
        "running", "failed",
    ]  # fmt: skip
    assert_failed_for_good(store, run_id)


def test_an_attempt_that_gave_up_on_redis_hands_the_run_back_and_is_counted(store, run_id):
    start_attempt(store, run_id, "w1", step=8)
    assert store.attempts.hand_back(run_id, "w1", why(8)) == "queued"
    record = store.runs.get_run(run_id)
    assert (record.status, record.worker, record.redis_give_ups, record.lost_workers) == (
        "queued",
        None,
        1,
        0,
    )
    assert store.attempts.lease_owner(run_id) is None
    assert store.attempts.load_state(run_id) == b"state"  # it resumes from its checkpoint
    last = status_records(store, run_id)[-1]
    assert (last["status"], last["reason"]) == ("queued", f"{why(8)}; handed back")
    assert set(last) == {"kind", "status", "at", "reason"}
    assert store.attempts.claim_run(run_id, "w2", ttl_s=10, device="cpu").attempt == 2


def test_a_hand_back_is_fenced_by_the_lease(store, run_id):
    start_attempt(store, run_id, "w1", step=8)
    assert store.attempts.hand_back(run_id, "w2", why(8)) is None  # not w2's lease: nothing written
    record = store.runs.get_run(run_id)
    assert (record.status, record.redis_give_ups, store.attempts.lease_owner(run_id)) == ("running", 0, "w1")
    store.redis.delete(lease_key(run_id))
    assert store.attempts.hand_back(run_id, "w1", why(8)) is None  # lease expired: the reaper's now
    assert store.runs.get_run(run_id).redis_give_ups == 0


def test_a_hand_back_sent_again_after_a_timeout_is_counted_once(store, run_id):
    start_attempt(store, run_id, "w1", step=8)
    assert store.attempts.hand_back(run_id, "w1", why(8), at=1234.5) == "queued"
    assert store.attempts.hand_back(run_id, "w1", why(8), at=1234.5) == "queued"  # its answer was lost
    assert store.runs.get_run(run_id).redis_give_ups == 1
    assert [r["status"] for r in status_records(store, run_id)] == ["queued", "running", "queued"]
    assert store.attempts.hand_back(run_id, "w1", why(8), at=1300.0) is None  # another one: not ours
    # At the cap, too.
    start_attempt(store, run_id, "w2", step=9)
    assert store.attempts.hand_back(run_id, "w2", why(9), max_attempts=2, at=1400.0) == "failed"
    assert store.attempts.hand_back(run_id, "w2", why(9), max_attempts=2, at=1400.0) == "failed"
    assert store.runs.get_run(run_id).redis_give_ups == 2
    assert [r["status"] for r in status_records(store, run_id)][-2:] == ["running", "failed"]


def test_hand_backs_and_lost_workers_count_together_and_the_one_at_the_cap_says_so(store, run_id):
    start_attempt(store, run_id, "w1", step=1)
    assert lose_worker(store, run_id, "w1") == "queued"
    start_attempt(store, run_id, "w2", step=2)
    assert store.attempts.hand_back(run_id, "w2", why(2)) == "queued"
    start_attempt(store, run_id, "w3", step=3)
    assert store.attempts.hand_back(run_id, "w3", why(3)) == "failed"  # 1 + 2: FF_MAX_ATTEMPTS=3
    record = store.runs.get_run(run_id)
    assert (record.attempts, record.lost_workers, record.redis_give_ups) == (3, 1, 2)
    assert record.error == (
        "gave up after 3 failed attempts (FF_MAX_ATTEMPTS=3): its worker was lost 1 time, Redis could not "
        f"take its writes 2 times; the last time: {why(3)}; {REDIS_ADVICE}"
    )
    assert_failed_for_good(store, run_id)


def test_the_reaper_counts_the_hand_backs_too(store, run_id):
    """An attempt whose hand-back Redis refused ends with its lease expiring: the reaper counts it as a
    lost worker, beside the hand-backs before it, and ends the run failed at the cap."""
    for attempt in (1, 2):
        start_attempt(store, run_id, f"w{attempt}", step=attempt)
        assert store.attempts.hand_back(run_id, f"w{attempt}", why(attempt)) == "queued"
    start_attempt(store, run_id, "w3", step=3)
    assert lose_worker(store, run_id, "w3") == "failed"
    record = store.runs.get_run(run_id)
    assert (record.lost_workers, record.redis_give_ups) == (1, 2)
    assert record.error == (
        "gave up after 3 failed attempts (FF_MAX_ATTEMPTS=3): its worker was lost 1 time, Redis could not "
        f"take its writes 2 times; the last time: lease expired (w3 lost); {LOST_WORKER_ADVICE}"
    )
    assert_failed_for_good(store, run_id)


def test_a_cap_of_one_ends_the_run_at_its_first_failed_attempt(store, run_id):
    start_attempt(store, run_id, "w1", step=1)
    assert store.attempts.hand_back(run_id, "w1", why(1), max_attempts=1) == "failed"
    assert store.runs.get_run(run_id).error.startswith(
        "gave up after 1 failed attempt (FF_MAX_ATTEMPTS=1): Redis could not take its writes 1 time; "
    )
