"""The worker as it runs: real `python -m worker` processes, a real redis-server, real MNIST.

Runs use a one-layer net and big batches (20 steps an epoch) so that each test takes seconds of
training; what is under test is the service around the training.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
import torch

from ffcore import RunConfig, load_model
from fflab.queue import TRAIN_TASK_NAME, enqueue_run, make_celery
from fflab.settings import Settings
from fflab.store.keys import metrics_key
from tests.support.api import start_api
from tests.support.events import read_events
from tests.support.store import TestStore
from tests.support.waiting import wait_for
from tests.support.worker import start_worker, submit_run, wait_for_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

METRICS_EVERY = 5


def small_run(**overrides) -> RunConfig:
    """20 steps an epoch on MNIST's 50,000 training images."""
    return RunConfig.from_preset(
        "quick", **{"hidden": [16], "scan_layers": [0], "head_layers": [0], "batch_size": 2500} | overrides
    )


def statuses(store: TestStore, run_id: str) -> list[str]:
    return [r["status"] for _, r in store.read_metrics(run_id, limit=100_000)[0] if r["kind"] == "status"]


@pytest.fixture(scope="module")
def module_redis_url(redis_server) -> str:
    """A database of its own for the module's shared worker (the per-test `redis_url` flushes db 0)."""
    import redis

    url = f"redis://{redis_server.host}:{redis_server.port}/3"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def worker(module_redis_url, mnist_dir):
    with start_worker(module_redis_url, mnist_dir, metrics_every_steps=METRICS_EVERY) as process:
        yield process


@pytest.fixture
def store(module_redis_url) -> TestStore:
    return TestStore.from_url(module_redis_url)


def test_a_run_goes_from_queued_to_succeeded_with_metrics_and_a_model(worker, store, module_redis_url):
    (registered,) = [w for w in store.workers.list(max_age_s=30) if w["name"] == worker.name]
    assert (registered["device"], registered["pid"], registered["run_id"]) == (
        "cpu",
        worker.process.pid,
        None,
    )
    assert registered["threads"] == 1  # start_worker's FF_WORKER_THREADS=1 reached PyTorch

    config = small_run(epochs=2)
    run_id = submit_run(module_redis_url, config, preset="quick")
    running = wait_for_status(store, run_id, {"running", "succeeded"}, timeout_s=60)
    assert running.worker == worker.name
    record = wait_for_status(store, run_id, {"succeeded", "failed"}, timeout_s=120)

    assert record.status == "succeeded", record.error
    assert (record.attempts, record.step, record.total_steps, record.progress) == (1, 40, 40, 1.0)
    assert record.test_error_scan is not None and record.started_at <= record.finished_at
    records = [r for _, r in store.read_metrics(run_id, limit=100_000)[0]]
    assert statuses(store, run_id) == ["queued", "running", "succeeded"]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(
        range(METRICS_EVERY, 41, METRICS_EVERY)
    )
    assert [(r["step"], r["split"]) for r in records if r["kind"] == "eval"] == [
        (20, "val"), (40, "val"), (40, "test"),
    ]  # fmt: skip
    train = next(r for r in records if r["kind"] == "train")
    assert train["layers"][0]["layer"] == 0 and train["samples_per_s"] > 0
    model, model_config = load_model(store.load_model(run_id))
    assert model_config == config and record.has_model
    # How it was made: the worker's device, its one thread and its PyTorch.
    provenance = record.provenance
    assert (provenance.device, provenance.cpu_threads, provenance.torch_version) == (
        "cpu",
        1,
        torch.__version__,
    )
    assert provenance.fflab_version and provenance.host and provenance.python_version
    idle = wait_for(
        lambda: [w for w in store.workers.list(30) if w["name"] == worker.name and w["run_id"] is None],
        timeout_s=10,
        what="the worker to report itself idle",
    )
    assert idle


def test_a_failed_run_carries_its_error(worker, store, module_redis_url):
    run_id = submit_run(module_redis_url, small_run(dataset="fashion-mnist"))
    record = wait_for_status(store, run_id, {"failed", "succeeded"}, timeout_s=60)
    assert record.status == "failed"
    assert record.error.startswith("data: fashion-mnist: ") and "not found" in record.error
    assert statuses(store, run_id)[-1] == "failed"
    assert worker.process.poll() is None  # the worker lives on


def strict_json(text: str):
    """`text` as JSON, refusing NaN and Infinity (which Python writes and reads, and browsers do not)."""

    def refuse(constant: str):
        raise ValueError(f"{constant} in {text[:300]}")

    return json.loads(text, parse_constant=refuse)


def test_a_diverging_run_fails_with_the_step_and_nothing_anywhere_holds_a_nan(
    worker, store, module_redis_url
):
    """An absurd learning rate (plain SGD at lr 10 with Hinton's peer normalisation at weight 10 blows the
    weights up within ten steps): the run ends failed saying where it diverged, in one attempt, and no
    record a client can read (the stored stream, GET /runs/{id}, /metrics, /events) holds a NaN."""
    absurd = {"optimizer": "sgd", "lr": 10, "peer_norm_style": "hinton", "peer_norm_weight": 10}
    run_id = submit_run(module_redis_url, small_run(epochs=2, **absurd))
    record = wait_for_status(store, run_id, {"failed", "succeeded"}, timeout_s=60)
    assert record.status == "failed"
    step = int(re.match(r"diverged at step (\d+): a non-finite loss", record.error).group(1))
    assert "(lr 10; try a lower one)" in record.error
    assert (record.attempts, record.lost_workers, record.redis_give_ups) == (1, 0, 0)
    raw = [strict_json(fields[b"data"]) for _, fields in store.redis.xrange(metrics_key(run_id))]
    assert [r["step"] for r in raw if r["kind"] == "train"] == list(range(METRICS_EVERY, step, METRICS_EVERY))
    assert raw[-1] == {"kind": "status", "status": "failed", "error": record.error, "at": raw[-1]["at"]}
    assert worker.process.poll() is None  # the worker lives on

    with start_api(module_redis_url) as api, httpx.Client(base_url=api.base_url, timeout=30) as http:
        assert strict_json(http.get(f"/runs/{run_id}").text)["error"] == record.error
        assert len(strict_json(http.get(f"/runs/{run_id}/metrics").text)["records"]) == len(raw)
        with http.stream("GET", f"/runs/{run_id}/events") as response:
            events = list(read_events(response))
    assert [strict_json(e["data"]) for e in events[:-1]] == raw
    assert (events[-1]["event"], strict_json(events[-1]["data"])) == ("end", {"status": "failed"})


def test_cancel_stops_a_running_run_within_two_seconds_and_a_queued_one_never_starts(
    worker, store, module_redis_url
):
    # No evaluation until the last epoch: an evaluation is the one thing a cancel does not cut short.
    running_id = submit_run(module_redis_url, small_run(epochs=100, eval_every=1000))
    queued_id = submit_run(module_redis_url, small_run())
    wait_for(lambda: store.get_run(running_id).step >= METRICS_EVERY, 60, "the first run to train")

    # What the API does: a queued run is cancelled at once and its task revoked.
    assert store.cancel_run(queued_id) == "queued"
    make_celery(Settings(redis_url=module_redis_url)).control.revoke(queued_id)
    assert store.cancel_run(running_id) == "running"
    asked_at = time.monotonic()
    record = wait_for_status(store, running_id, {"cancelled"}, timeout_s=10)
    assert time.monotonic() - asked_at < 2.0
    assert 0 < record.progress < 1 and record.test_error_scan is None

    # The worker is free again: it either discards the revoked task or skips the cancelled run.
    passed_over = (f"run {queued_id} not started", f"revoked task: {TRAIN_TASK_NAME}[{queued_id}]")
    wait_for(
        lambda: any(line in worker.log() for line in passed_over),
        30,
        "the worker to pass over the queued run",
    )
    queued = store.get_run(queued_id)
    assert (queued.status, queued.attempts, queued.started_at) == ("cancelled", 0, None)
    assert statuses(store, queued_id) == ["queued", "cancelled"]


def test_a_duplicate_delivery_of_a_leased_or_finished_run_is_a_no_op(
    worker, store, module_redis_url, mnist_dir
):
    celery = make_celery(Settings(redis_url=module_redis_url))
    with start_worker(module_redis_url, mnist_dir, metrics_every_steps=METRICS_EVERY) as second:
        run_id = submit_run(module_redis_url, small_run(epochs=100, eval_every=1000))
        trainer = wait_for_status(store, run_id, {"running"}, timeout_s=60).worker
        idle = second if trainer == worker.name else worker
        # What a redelivery (visibility timeout, a requeue racing a live worker) looks like.
        enqueue_run(celery, run_id)
        wait_for(lambda: f"run {run_id} not started: leased" in idle.log(), 30, "the idle worker to skip it")
        record = store.get_run(run_id)
        assert (record.status, record.worker, record.attempts) == ("running", trainer, 1)
        assert statuses(store, run_id) == ["queued", "running"]

        store.cancel_run(run_id)
        wait_for_status(store, run_id, {"cancelled"}, timeout_s=10)
        enqueue_run(celery, run_id)
        wait_for(
            lambda: any(f"run {run_id} not started: finished" in w.log() for w in (worker, second)),
            timeout_s=30,
            what="a worker to skip the finished run",
        )
        assert store.get_run(run_id).attempts == 1
        assert statuses(store, run_id) == ["queued", "running", "cancelled"]
        assert second.stop() == 0  # a warm shutdown of an idle worker exits cleanly


def test_a_killed_worker_loses_no_run(redis_url, mnist_dir):
    """SIGKILL mid-run after the first checkpoint: a restarted worker resumes from that checkpoint."""
    store = TestStore.from_url(redis_url)
    timings = {"lease_ttl_s": 3, "heartbeat_interval_s": 0.5, "metrics_every_steps": METRICS_EVERY}
    with start_worker(redis_url, mnist_dir, **timings) as victim:
        # A wide layer, so that an epoch lasts seconds and the kill lands mid-run on a quiet machine too.
        run_id = submit_run(redis_url, small_run(epochs=4, hidden=[1000]))

        def trained_past_a_checkpoint():
            checkpoint = store.load_checkpoint(run_id)
            return checkpoint if checkpoint and store.get_run(run_id).step > checkpoint.step else None

        wait_for(trained_past_a_checkpoint, 120, "a checkpoint and a few steps after it", interval_s=0.05)
        victim.kill()
    checkpoint = store.load_checkpoint(run_id)
    dead_steps = [r["step"] for _, r in store.read_metrics(run_id, limit=100_000)[0] if r["kind"] == "train"]
    assert dead_steps[-1] > checkpoint.step and store.get_run(run_id).status == "running"

    with start_worker(redis_url, mnist_dir, **timings) as restarted:
        record = wait_for_status(store, run_id, {"succeeded", "failed"}, timeout_s=180)
    assert record.status == "succeeded", record.error
    assert (record.attempts, record.worker, record.step) == (2, restarted.name, 80)

    records = [r for _, r in store.read_metrics(run_id, limit=100_000)[0]]
    assert statuses(store, run_id) == ["queued", "running", "queued", "running", "succeeded"]
    requeue = next(r for r in records if r["kind"] == "status" and r.get("reason"))
    assert "lease expired" in requeue["reason"]
    # One series: the dead attempt's records past its checkpoint are gone, the new one continues.
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == list(range(METRICS_EVERY, 81, METRICS_EVERY))
    resumed = max(i for i, r in enumerate(records) if r.get("status") == "running")
    assert records[resumed]["attempt"] == 2
    assert records[resumed + 1] | {"at": 0} == {
        "kind": "rewind",
        "step": checkpoint.step,
        "epoch": checkpoint.epoch,
        "at": 0,
    }  # what live viewers drop the dead attempt's records by
    assert records[resumed + 2]["step"] == checkpoint.step + METRICS_EVERY  # from the checkpoint, not 0
    assert [r["step"] for r in records if r["kind"] == "eval"] == [20, 40, 60, 80, 80]


def test_a_run_that_kills_its_worker_every_time_ends_failed_at_the_attempt_cap(redis_url, mnist_dir):
    """As a run too large for the workers' memory would: each worker that trains it dies (here by
    SIGKILL); with FF_MAX_ATTEMPTS=2 the second loss ends it failed instead of requeueing it forever."""
    store = TestStore.from_url(redis_url)
    timings = {"lease_ttl_s": 2, "heartbeat_interval_s": 0.3, "env": {"FF_MAX_ATTEMPTS": "2"}}
    run_id = submit_run(redis_url, small_run(epochs=50, hidden=[1000]))
    for attempt in (1, 2):
        with start_worker(redis_url, mnist_dir, name=f"victim-{attempt}", **timings) as victim:
            wait_for(
                lambda: store.get_run(run_id).worker == victim.name and store.get_run(run_id).step > 0,
                120,
                f"victim {attempt} to train the run",
            )
            victim.kill()
    with start_worker(redis_url, mnist_dir, name="reaper", **timings):
        record = wait_for_status(store, run_id, {"failed", "succeeded"}, timeout_s=60)
    assert (record.status, record.attempts, record.lost_workers) == ("failed", 2, 2)
    assert record.error.startswith(
        "gave up after 2 failed attempts (FF_MAX_ATTEMPTS=2): its worker was lost 2 times; the last time: "
    )
    assert statuses(store, run_id) == ["queued", "running", "queued", "running", "failed"]


def test_a_queued_run_whose_task_was_lost_is_picked_up_again(redis_url, mnist_dir):
    store = TestStore.from_url(redis_url)
    run_id = store.runs.create_run(small_run(epochs=1)).id  # queued, and no task sent
    with start_worker(redis_url, mnist_dir, lease_ttl_s=2, heartbeat_interval_s=0.3):
        record = wait_for_status(store, run_id, {"succeeded", "failed"}, timeout_s=120)
    assert record.status == "succeeded" and record.attempts == 1


def test_a_stopped_worker_hands_its_run_back_and_another_finishes_it(redis_url, mnist_dir):
    """SIGTERM (a warm shutdown) mid-run: checkpoint where it stands, requeue, exit cleanly."""
    store = TestStore.from_url(redis_url)
    with start_worker(redis_url, mnist_dir, metrics_every_steps=METRICS_EVERY) as first:
        run_id = submit_run(redis_url, small_run(epochs=1, hidden=[1000]))  # seconds long, see above
        wait_for(lambda: store.get_run(run_id).step >= METRICS_EVERY, 60, "the run to train")
        assert first.stop() == 0
    record = store.get_run(run_id)
    assert record.status == "queued" and store.lease_owner(run_id) is None
    assert store.load_checkpoint(run_id).step == record.step > 0
    assert f"worker {first.name} shut down" in [r.get("reason") for _, r in store.read_metrics(run_id)[0]]

    with start_worker(redis_url, mnist_dir, metrics_every_steps=METRICS_EVERY) as second:
        record = wait_for_status(store, run_id, {"succeeded", "failed"}, timeout_s=120)
    assert (record.status, record.attempts, record.worker, record.step) == ("succeeded", 2, second.name, 20)
    steps = [r["step"] for _, r in store.read_metrics(run_id, limit=100_000)[0] if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 20
