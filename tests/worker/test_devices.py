"""Runs and devices, in process: a real Redis store and broker, the real Trainer on tiny data.

A run asking for a GPU that reaches a CPU worker is passed on to the GPU queue untouched; the reaper
leaves a run waiting there alone; a run resumed from a state saved on another kind of device says so
in its stream; the worker's device lines, with stand-ins for a GPU this machine does not have.
tests/worker/test_device_queues.py drives the queues through a real `python -m worker` process.
"""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load, save

from ffcore import Trainer, save_model, save_training_state
from ffcore.checkpoint import read_metadata
from fflab.queue import CUDA_TRAIN_QUEUE, TRAIN_QUEUE, make_celery, pending_run_ids
from tests.support.tiny_data import tiny_config
from worker import device_report
from worker.reaper import Reaper
from worker.routing import belongs_elsewhere, run_enqueuer
from worker.training import train_run


@pytest.fixture
def celery(settings):
    app = make_celery(settings)
    yield app
    app.close()


@pytest.fixture
def routed_context(make_context, celery, store):
    """A CPU worker's context whose `enqueue` is the worker's own: to the queue of the run's device."""

    def make(name: str = "cpu-worker"):
        context = make_context(name)
        context.enqueue = run_enqueuer(celery, store.attempts)
        return context

    return make


def queued_ids(store, queue: str) -> list[str]:
    return [json.loads(message)["headers"]["id"] for message in store.redis.lrange(queue, 0, -1)]


def statuses(store, run_id: str) -> list[str]:
    records = store.read_metrics(run_id, limit=100_000)[0]
    return [record["status"] for _, record in records if record["kind"] == "status"]


def test_a_cuda_run_reaching_a_cpu_worker_is_passed_on_to_the_gpu_queue_untouched(
    store, routed_context, datasets, caplog
):
    run_id = store.create_run(tiny_config(device="cuda")).id
    caplog.set_level(logging.WARNING, logger="worker.training")
    assert train_run(routed_context(), run_id, datasets) == "passed_on"

    record = store.get_run(run_id)
    assert (record.status, record.attempts, record.worker, record.error) == ("queued", 0, None, None)
    assert statuses(store, run_id) == ["queued"] and datasets.requests == []  # never claimed, nothing loaded
    assert queued_ids(store, CUDA_TRAIN_QUEUE) == [run_id] and queued_ids(store, TRAIN_QUEUE) == []
    assert "asks for device 'cuda', which this worker (cpu) lacks" in caplog.text


def test_runs_a_cpu_worker_can_train_or_that_ended_are_not_passed_on(store, routed_context, datasets):
    auto = store.create_run(tiny_config(epochs=1)).id
    assert train_run(routed_context(), auto, datasets) == "succeeded"
    finished = store.create_run(tiny_config(device="cuda")).id
    store.set_status(finished, "cancelled")
    assert train_run(routed_context(), finished, datasets) == "finished"  # the claim's word, as before
    assert pending_run_ids(store.redis) == set()


def test_which_runs_belong_to_another_kind_of_worker(store):
    gpu = store.create_run(tiny_config(device="cuda"))
    assert belongs_elsewhere(gpu, "cpu") and not belongs_elsewhere(gpu, "cuda")
    running = gpu.model_copy(update={"status": "running"})  # e.g. its GPU worker died: still trainable
    assert belongs_elsewhere(running, "cpu")
    for status in ("succeeded", "failed", "cancelled"):
        assert not belongs_elsewhere(gpu.model_copy(update={"status": status}), "cpu"), status
    for device in ("auto", "cpu"):
        record = store.create_run(tiny_config(device=device))
        assert not belongs_elsewhere(record, "cpu") and not belongs_elsewhere(record, "cuda"), device
    assert not belongs_elsewhere(None, "cpu")


def test_the_reaper_leaves_a_run_waiting_in_the_gpu_queue_alone_and_resends_a_lost_one_there(store, celery):
    enqueue = run_enqueuer(celery, store.attempts)
    waiting = store.create_run(tiny_config(device="cuda")).id
    enqueue(waiting)  # waits for a GPU worker, however long
    lost = store.create_run(tiny_config(device="cuda")).id  # its task never sent (or lost)
    for run_id in (waiting, lost):
        store.update_run(run_id, updated_at=time.time() - 600)
    reaper = Reaper(store, enqueue, "reaper")

    assert reaper.resend_lost(min_age_s=30) == [lost]
    assert sorted(queued_ids(store, CUDA_TRAIN_QUEUE)) == sorted([waiting, lost])
    assert queued_ids(store, TRAIN_QUEUE) == []
    for _ in range(3):  # later passes find both in the broker: nothing is sent again
        assert reaper.resend_lost(min_age_s=30) == []
    assert store.redis.llen(CUDA_TRAIN_QUEUE) == 2


def rewritten_state(state: bytes, generator_device: str) -> bytes:
    """A training state as a worker on `generator_device` would have saved it: a CUDA generator's
    state is 16 bytes (Philox), recorded as such."""
    if generator_device == "cpu":
        return state
    gpu_generator = {"rng": torch.arange(16, dtype=torch.uint8)}
    return save(load(state) | gpu_generator, metadata=read_metadata(state) | {"rng_device": "cuda"})


@pytest.mark.parametrize("saved_on", ["cuda", "cpu"])
def test_a_resume_from_another_kind_of_device_is_noted_in_the_runs_stream(
    store, make_context, datasets, caplog, saved_on
):
    config = tiny_config(epochs=2)
    run_id = store.create_run(config).id
    # A first attempt on another worker that shut down at step 5 (mid-epoch), handing the run back.
    store.claim_run(run_id, "first", ttl_s=60, device="cuda:0" if saved_on == "cuda" else "cpu")
    first = Trainer(config.model_copy(update={"device": "cpu"}), datasets.dataset)
    first.fit(max_steps=5)
    state = rewritten_state(save_training_state(first), saved_on)
    store.save_checkpoint(run_id, "first", state, save_model(first.model, config), step=5, epoch=0)
    assert store.end_attempt(run_id, "first", "queued", reason="worker first shut down")

    caplog.set_level(logging.WARNING)
    assert train_run(make_context("resumer"), run_id, datasets) == "succeeded"
    records = [record for _, record in store.read_metrics(run_id, limit=100_000)[0]]
    status_records = [r for r in records if r["kind"] == "status"]
    notes = [r for r in status_records if "not bit-exact" in r.get("reason", "")]
    if saved_on == "cpu":  # the same kind of device: an exact resume, nothing to say
        assert notes == [] and "not bit-exact" not in caplog.text
        return
    (note,) = notes
    assert note["status"] == "running" and note["worker"] == "resumer"
    assert note["reason"].startswith("resumed at step 5 on cpu, not bit-exact")
    # Right after its attempt's running record, before any of its training records.
    assert status_records.index(note) == 4 and records.index(note) < records.index(
        next(r for r in records if r["kind"] == "train" and r["step"] > 5)
    )
    assert [r["status"] for r in status_records] == [
        "queued", "running", "queued", "running", "running", "succeeded",
    ]  # fmt: skip
    assert f"run {run_id}: resumed at step 5 on cpu, not bit-exact" in caplog.text
    assert store.get_run(run_id).status == "succeeded"


# --- the worker's device lines, with stand-ins for a GPU ---------------------------------------------


def test_a_cpu_worker_describes_its_threads():
    line = device_report.describe_device("cpu")
    assert (
        line.startswith(f"the CPU, {torch.get_num_threads()} PyTorch threads") and torch.__version__ in line
    )


def test_a_gpu_worker_describes_its_gpu_pytorchs_cuda_and_the_driver(monkeypatch):
    h200 = SimpleNamespace(name="NVIDIA H200", total_memory=150_000_000_000, major=9, minor=0)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda device: h200 if device == "cuda:0" else None
    )
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(device_report, "cuda_driver_version", lambda: (12, 9))
    assert device_report.describe_device("cuda:0") == (
        f"cuda:0: NVIDIA H200, 139.7 GiB, compute capability 9.0; torch {torch.__version__} built for "
        "CUDA 12.8, NVIDIA driver for CUDA 12.9"
    )


@pytest.mark.parametrize(
    ("build", "driver", "says"),
    [
        (None, None, "is a CPU build: install a CUDA build of PyTorch"),
        ("12.8", None, "no NVIDIA driver is visible to this process"),
        ("12.8", (12, 2), "but the NVIDIA driver supports CUDA 12.2 only: update the driver"),
        ("12.8", (12, 8), "and the NVIDIA driver supports CUDA 12.8; check nvidia-smi"),
    ],
)
def test_a_missing_gpu_is_explained_by_its_likely_cause(monkeypatch, build, driver, says):
    monkeypatch.setattr(torch.version, "cuda", build)
    monkeypatch.setattr(device_report, "cuda_driver_version", lambda: driver)
    reason = "device 'cuda' was asked for, but PyTorch sees no CUDA GPU"
    explained = device_report.explain_missing_gpu(reason)
    assert explained.startswith(reason + ". ") and says in explained and "\n" not in explained


def test_the_driver_version_is_none_where_no_driver_can_be_loaded(monkeypatch):
    monkeypatch.setattr(device_report, "_LIBCUDA", "libcuda-that-is-not-there.so.1")
    assert device_report.cuda_driver_version() is None
