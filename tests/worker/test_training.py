"""One training attempt, in process: a real Redis store and the real ffcore Trainer on tiny data.

These cover the worker's logic quickly; tests/worker/test_worker_process.py drives the same paths
through real `python -m worker` processes on MNIST.
"""

from __future__ import annotations

import importlib.metadata
import platform
import threading
import time

import pytest
import torch

from ffcore import load_model
from fflab.queue import enqueue_run, make_celery, pending_run_ids
from fflab.store.keys import lease_key
from tests.support.tiny_data import tiny_config
from tests.support.waiting import wait_for
from worker import provenance as provenance_module
from worker.heartbeat import Heartbeat
from worker.progress import RunMonitor
from worker.reaper import Reaper
from worker.training import DatasetCache, train_run, training_device


def stream(store, run_id) -> list[dict]:
    return [record for _, record in store.read_metrics(run_id, limit=100_000)[0]]


def train_steps(records: list[dict]) -> list[int]:
    return [r["step"] for r in records if r["kind"] == "train"]


def start_in_thread(context, run_id, datasets) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def target() -> None:
        result["outcome"] = train_run(context, run_id, datasets)
        result["done_at"] = time.monotonic()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def test_a_run_trains_to_success_and_streams_its_metrics(store, make_context, datasets):
    config = tiny_config()
    run_id = store.create_run(config, preset="quick").id
    assert train_run(make_context(), run_id, datasets) == "succeeded"

    record = store.get_run(run_id)
    assert (record.status, record.attempts, record.worker, record.device) == ("succeeded", 1, "w1", "cpu")
    assert (record.step, record.total_steps, record.epoch, record.progress) == (24, 24, 3, 1.0)
    assert record.samples_per_s > 0 and record.val_error_scan is not None
    records = stream(store, run_id)
    assert [r["status"] for r in records if r["kind"] == "status"] == ["queued", "running", "succeeded"]
    assert train_steps(records) == list(range(2, 25, 2))  # every metrics_every_steps
    evals = [(r["step"], r["split"], r.get("final", False)) for r in records if r["kind"] == "eval"]
    assert evals == [(8, "val", False), (16, "val", False), (24, "val", False), (24, "test", True)]
    final = next(r for r in records if r.get("final"))
    assert (record.test_error_scan, record.test_error_softmax) == (
        final["error_scan"],
        final["error_softmax"],
    )

    model, model_config = load_model(store.load_model(run_id))
    assert model_config == config  # the submitted config, not the worker's data dir or device
    assert record.has_model and store.load_state(run_id) is None  # state is dropped once finished
    assert store.lease_owner(run_id) is None
    # The worker's data directory was used; the device resolved from 'auto'.
    used, device = datasets.requests[0]
    assert used.data_dir == make_context().settings.data_dir and str(device) == "cpu"


def test_a_killed_attempt_is_resumed_from_its_checkpoint_exactly(store, make_context, datasets, monkeypatch):
    config = tiny_config(epochs=3)
    run_id = store.create_run(config).id
    first = make_context("dies")

    class DyingMonitor(RunMonitor):
        """Goes silent after step 12, past the epoch-1 checkpoint at step 8, like a killed worker."""

        def __call__(self, record):
            super().__call__(record)
            if record["kind"] == "train" and record["step"] == 12:
                self.flush()
                first.lease_lost.set()

    monkeypatch.setattr("worker.training.RunMonitor", DyingMonitor)
    assert train_run(first, run_id, datasets) == "lease_lost"
    monkeypatch.undo()
    assert store.get_run(run_id).status == "running"  # the dead worker wrote nothing more
    assert train_steps(stream(store, run_id)) == [2, 4, 6, 8, 10, 12]
    assert store.load_checkpoint(run_id).step == 8

    store.redis.delete(lease_key(run_id))  # the lease expires
    enqueued: list[str] = []
    assert Reaper(store, enqueued.append, "reaper").sweep() == [run_id] == enqueued
    assert store.get_run(run_id).status == "queued"
    assert train_run(make_context("resumer"), run_id, datasets) == "succeeded"

    record = store.get_run(run_id)
    assert (record.status, record.attempts, record.worker, record.step) == ("succeeded", 2, "resumer", 24)
    records = stream(store, run_id)
    assert [(r["status"], r.get("attempt")) for r in records if r["kind"] == "status"] == [
        ("queued", None), ("running", 1), ("queued", None), ("running", 2), ("succeeded", None),
    ]  # fmt: skip
    # Steps 10 and 12 of the dead attempt are gone; the series continues from the checkpoint.
    assert train_steps(records) == list(range(2, 25, 2))
    resumed_at = max(i for i, r in enumerate(records) if r.get("status") == "running")
    # It tells live viewers, who saw steps 10 and 12 already, where training starts again.
    assert records[resumed_at + 1] | {"at": 0} == {"kind": "rewind", "step": 8, "epoch": 1, "at": 0}
    assert records[resumed_at + 2]["step"] == 10
    assert [r["step"] for r in records if r["kind"] == "eval"] == [8, 16, 24, 24]

    # Exact resume: the same weights as a run that was never interrupted.
    straight_id = store.create_run(config).id
    assert train_run(make_context("straight"), straight_id, datasets) == "succeeded"
    resumed, _ = load_model(store.load_model(run_id))
    straight, _ = load_model(store.load_model(straight_id))
    for (name, a), (_, b) in zip(resumed.state_dict().items(), straight.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_cancel_request_stops_a_running_run_within_two_seconds(store, make_context, datasets):
    run_id = store.create_run(tiny_config(epochs=10_000)).id
    thread, result = start_in_thread(make_context(), run_id, datasets)
    wait_for(lambda: (store.get_run(run_id).step or 0) >= 20, 20, "the run to reach step 20", interval_s=0.01)
    asked_at = time.monotonic()
    assert store.cancel_run(run_id) == "running"  # the API's call: it only sets the flag
    thread.join(timeout=10)
    assert result["outcome"] == "cancelled"
    assert result["done_at"] - asked_at < 2.0
    record = store.get_run(run_id)
    assert record.status == "cancelled" and record.finished_at and 0 < record.progress < 1
    assert stream(store, run_id)[-1]["status"] == "cancelled"
    assert store.lease_owner(run_id) is None


def test_a_worker_that_lost_its_lease_stops_and_writes_nothing(store, make_context, datasets):
    run_id = store.create_run(tiny_config(epochs=10_000)).id
    thread, result = start_in_thread(make_context(), run_id, datasets)
    wait_for(lambda: (store.get_run(run_id).step or 0) >= 20, 20, "the run to reach step 20", interval_s=0.01)
    store.redis.set(lease_key(run_id), "thief")  # the lease expired and another worker took it
    thread.join(timeout=10)
    assert result["outcome"] == "lease_lost"
    count, record = store.count_metrics(run_id), store.get_run(run_id)
    time.sleep(0.3)
    assert store.count_metrics(run_id) == count and store.get_run(run_id).step == record.step
    assert record.status == "running" and store.lease_owner(run_id) == "thief"


def test_a_warm_shutdown_hands_the_run_back_where_it_stands(store, make_context, datasets, enqueued):
    run_id = store.create_run(tiny_config(epochs=6)).id
    context = make_context()
    thread, result = start_in_thread(context, run_id, datasets)
    wait_for(lambda: (store.get_run(run_id).step or 0) >= 13, 20, "the run to reach step 13", interval_s=0.01)
    context.shutting_down.set()
    thread.join(timeout=10)
    assert result["outcome"] == "requeued" and enqueued == [run_id]
    record = store.get_run(run_id)
    assert record.status == "queued" and store.lease_owner(run_id) is None
    assert stream(store, run_id)[-1]["reason"] == "worker w1 shut down"
    stopped_at = store.load_checkpoint(run_id).step
    assert stopped_at == record.step >= 13  # saved mid-epoch: ffcore states resume exactly there
    # A task taken while shutting down goes back untouched.
    assert train_run(context, run_id, datasets) == "requeued" and enqueued == [run_id, run_id]
    assert train_run(make_context("next"), run_id, datasets) == "succeeded"
    steps = train_steps(stream(store, run_id))
    assert steps == sorted(set(steps)) and steps[-1] == 48


def test_duplicate_deliveries_are_no_ops(store, make_context, datasets):
    run_id = store.create_run(tiny_config()).id
    assert store.claim_run(run_id, "busy", ttl_s=30, device="cpu").outcome == "claimed"
    before = (store.get_run(run_id), store.count_metrics(run_id))
    assert train_run(make_context(), run_id, datasets) == "leased"
    assert (store.get_run(run_id), store.count_metrics(run_id)) == before
    assert datasets.requests == []  # nothing was even loaded
    store.end_attempt(run_id, "busy", "succeeded")
    assert train_run(make_context(), run_id, datasets) == "finished"
    assert train_run(make_context(), "no-such-run", datasets) == "missing"


def test_a_queued_run_cancelled_before_it_starts_never_trains(store, make_context, datasets):
    run_id = store.create_run(tiny_config()).id
    assert store.cancel_run(run_id) == "queued"
    assert train_run(make_context(), run_id, datasets) == "finished"
    record = store.get_run(run_id)
    assert (record.status, record.attempts, record.started_at) == ("cancelled", 0, None)


def test_a_failing_run_records_a_readable_error(store, make_context):
    # The worker's data dir holds MNIST only: Fashion-MNIST is missing there.
    run_id = store.create_run(tiny_config(dataset="fashion-mnist")).id
    assert train_run(make_context(), run_id, DatasetCache()) == "failed"
    record = store.get_run(run_id)
    assert record.status == "failed" and record.error.startswith("data: fashion-mnist:")
    assert "not found" in record.error and "Traceback" not in record.error
    assert stream(store, run_id)[-1] == stream(store, run_id)[-1] | {
        "status": "failed",
        "error": record.error,
    }
    assert store.lease_owner(run_id) is None


def test_a_diverging_run_fails_with_the_step_and_streams_no_nan(store, make_context, datasets):
    # An infinite pixel makes every loss non-finite from the first step, as a diverging run's do.
    datasets.dataset.train.images[:, 500] = float("inf")
    run_id = store.create_run(tiny_config()).id
    assert train_run(make_context(), run_id, datasets) == "failed"
    record = store.get_run(run_id)
    assert record.status == "failed" and record.error.startswith("diverged at step 2: a non-finite loss")
    assert "try a lower one" in record.error
    assert train_steps(stream(store, run_id)) == [], "no record of a broken step reaches the stream"


def test_where_each_requested_device_trains_on_each_kind_of_worker(store, make_context, datasets, enqueued):
    assert training_device("auto", "cuda") == "cuda" and training_device("cpu", "cuda") == "cpu"
    assert training_device("auto", "cpu") == "cpu" and training_device("cuda", "cuda") == "cuda"
    with pytest.raises(ValueError, match="asks for device 'cuda'"):  # the last line of defence
        training_device("cuda", "cpu")
    # A CPU worker never gets that far with a cuda run: it sends it on unclaimed (see test_devices.py).
    run_id = store.create_run(tiny_config(device="cuda")).id
    assert train_run(make_context(), run_id, datasets) == "passed_on" and enqueued == [run_id]
    assert (store.get_run(run_id).status, store.get_run(run_id).attempts) == ("queued", 0)


def test_heartbeat_registers_the_worker_and_renews_or_loses_the_lease(store, make_context):
    context = make_context()
    run_id = store.create_run(tiny_config()).id
    store.claim_run(run_id, "w1", ttl_s=0.5, device="cpu")
    context.begin_run(run_id)
    heartbeat = Heartbeat(context, Reaper(store, context.enqueue, context.name))
    heartbeat.start()
    try:
        time.sleep(1.0)  # twice the TTL: only the heartbeat keeps the lease alive
        assert store.lease_owner(run_id) == "w1" and not context.lease_lost.is_set()
        (registered,) = store.workers.list(max_age_s=5)
        assert (registered["name"], registered["run_id"], registered["device"]) == ("w1", run_id, "cpu")
        store.redis.set(lease_key(run_id), "thief")
        wait_for(context.lease_lost.is_set, 2, "the lease to be lost", interval_s=0.01)
    finally:
        heartbeat.stop()
    assert store.get_run(run_id).status == "running"  # the thief's run: the reaper leaves it alone


def test_the_monitor_batches_records_flushes_at_evaluations_and_watches_the_flags(store):
    run_id = store.create_run(tiny_config()).id
    store.claim_run(run_id, "w1", ttl_s=30, device="cpu")
    monitor = RunMonitor(
        store, run_id, "w1", total_steps=100, steps_per_epoch=50, flush_interval_s=60, poll_s=0.05
    )
    monitor.start()
    try:
        before = store.count_metrics(run_id)
        for step in (10, 20, 30):
            monitor({"kind": "train", "step": step, "samples_per_s": 100.0})
        time.sleep(0.2)
        assert store.count_metrics(run_id) == before  # buffered: the next flush is a minute away
        monitor({"kind": "eval", "step": 50, "split": "val", "error_scan": 0.1, "error_softmax": 0.2})
        wait_for(lambda: store.count_metrics(run_id) == before + 4, 5, "4 more records", interval_s=0.01)
        record = store.get_run(run_id)
        assert (record.step, record.epoch, record.progress, record.val_error_scan) == (50, 1, 0.5, 0.1)
        assert record.samples_per_s == 100.0
        assert not monitor.cancel_requested.is_set() and not monitor.lease_lost.is_set()
        store.cancel_run(run_id)
        wait_for(monitor.cancel_requested.is_set, 2, "the cancel request", interval_s=0.01)
        store.redis.set(lease_key(run_id), "thief")
        wait_for(monitor.lease_lost.is_set, 2, "the lost lease", interval_s=0.01)
    finally:
        monitor.close()
    assert not monitor.is_alive()


def test_a_claimed_run_records_how_it_is_made(store, make_context, datasets, settings):
    run_id = store.create_run(tiny_config(), tags=["t"], note="n").id
    context = make_context()
    context.settings = settings.model_copy(update={"git_commit": "abc123"})
    assert train_run(context, run_id, datasets) == "succeeded"

    record = store.get_run(run_id)
    provenance = record.provenance
    assert (provenance.device, provenance.cpu_threads, provenance.host) == ("cpu", 1, context.host)
    assert (provenance.torch_version, provenance.git_commit) == (torch.__version__, "abc123")
    assert provenance.fflab_version == importlib.metadata.version("fflab")
    assert provenance.python_version == platform.python_version()
    assert (record.tags, record.note) == (["t"], "n")  # the worker leaves them alone


def test_provenance_without_git_is_still_recorded(monkeypatch, tmp_path):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance_module.subprocess, "run", no_git)
    (tmp_path / ".git").mkdir()
    assert provenance_module.checkout_commit.__wrapped__(tmp_path) is None
    assert provenance_module.checkout_commit.__wrapped__(tmp_path / "not-a-checkout") is None
    monkeypatch.setattr(provenance_module, "checkout_commit", lambda: None)
    recorded = provenance_module.collect_provenance("cuda:0")
    assert (recorded.git_commit, recorded.cpu_threads, recorded.device) == (None, None, "cuda:0")
    assert recorded.torch_version == torch.__version__


def test_a_run_whose_provenance_cannot_be_collected_still_trains(store, make_context, datasets, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no provenance today")

    monkeypatch.setattr("worker.training.collect_provenance", broken)
    run_id = store.create_run(tiny_config()).id
    assert train_run(make_context(), run_id, datasets) == "succeeded"
    assert store.get_run(run_id).provenance is None


def test_the_reaper_resends_a_queued_run_whose_task_was_lost_and_only_that(store, settings, enqueued):
    celery = make_celery(settings)
    waiting = store.create_run(tiny_config()).id
    enqueue_run(celery, waiting)  # its task is in the broker: it only waits for a worker
    lost = store.create_run(tiny_config()).id  # created, and its task never sent (or lost)
    store.create_run(tiny_config())  # queued a moment ago, with no task either: not yet lost
    for run_id in (waiting, lost):
        store.update_run(run_id, updated_at=time.time() - 60)
    reaper = Reaper(store, enqueued.append, "reaper")

    assert reaper.resend_lost(min_age_s=30) == [lost] == enqueued  # the fresh one may still be sent
    assert pending_run_ids(store.redis) == {waiting}
    celery.close()
