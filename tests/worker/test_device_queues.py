"""Queues per device through a real CPU worker and the real API: `python -m worker`, `python -m api`,
a real redis-server, real MNIST.

A run asking for 'cuda' (submitted or rerun through the API) waits in the GPU queue, untouched, while
the CPU worker trains the runs after it; one sent to the shared queue (as before queues per device, or
by a caller that did not say its device) is passed on to the GPU queue instead of failing; and the
reaper, which re-sends queued runs whose message is lost, does not take a run waiting in the GPU queue
for lost (no re-sending loop).
"""

from __future__ import annotations

import json

import httpx
import pytest

from ffcore import RunConfig
from fflab.queue import CUDA_TRAIN_QUEUE, TRAIN_QUEUE, enqueue_run, make_celery, pending_run_ids
from fflab.settings import Settings
from tests.support.api import start_api
from tests.support.store import TestStore
from tests.support.waiting import wait_for
from tests.support.worker import start_worker, submit_run, wait_for_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LEASE_TTL_S = 3  # the reaper's "queued with no message for this long" threshold
HEARTBEAT_S = 0.5


def small_run(**overrides) -> RunConfig:
    """20 steps an epoch on MNIST's 50,000 training images, one epoch."""
    return RunConfig.from_preset(
        "quick",
        **{"hidden": [16], "scan_layers": [0], "head_layers": [0], "batch_size": 2500, "epochs": 1}
        | overrides,
    )


def queued_ids(store: TestStore, queue: str) -> list[str]:
    return [json.loads(message)["headers"]["id"] for message in store.redis.lrange(queue, 0, -1)]


def statuses(store: TestStore, run_id: str) -> list[str]:
    return [r["status"] for _, r in store.read_metrics(run_id, limit=100_000)[0] if r["kind"] == "status"]


def test_a_cpu_worker_leaves_cuda_runs_queued_for_a_gpu_worker_and_trains_the_rest(redis_url, mnist_dir):
    store = TestStore.from_url(redis_url)
    timings = {"lease_ttl_s": LEASE_TTL_S, "heartbeat_interval_s": HEARTBEAT_S}
    with start_api(redis_url) as api, start_worker(redis_url, mnist_dir, **timings) as worker:
        # Through the API: straight to the GPU queue, and so is its rerun.
        config = small_run(device="cuda").model_dump(mode="json")
        submitted = httpx.post(f"{api.base_url}/runs", json={"config": config}, timeout=30)
        assert submitted.status_code == 201, submitted.text
        waiting = submitted.json()["id"]
        rerun = httpx.post(f"{api.base_url}/runs/{waiting}/rerun", timeout=30)
        assert rerun.status_code == 201, rerun.text
        rerun_id = rerun.json()["id"]
        # As it was sent before queues per device (or by a caller that does not say its device): to the
        # shared queue, which this worker takes.
        strayed = store.runs.create_run(small_run(device="cuda")).id
        celery = make_celery(Settings(redis_url=redis_url))
        enqueue_run(celery, strayed)
        celery.close()
        after = submit_run(redis_url, small_run())  # 'auto', submitted after both

        record = wait_for_status(store, after, {"succeeded", "failed"}, timeout_s=180)
        assert record.status == "succeeded", record.error
        assert record.worker == worker.name and record.device == "cpu"

        wait_for(
            lambda: f"run {strayed} asks for device 'cuda', which this worker (cpu) lacks" in worker.log(),
            timeout_s=60,
            what=lambda: f"the worker to pass run {strayed} on; its log:\n{worker.log()[-3000:]}",
        )
        cuda_runs = [waiting, rerun_id, strayed]
        for run_id in cuda_runs:
            cuda_run = store.get_run(run_id)
            assert (cuda_run.status, cuda_run.attempts, cuda_run.worker, cuda_run.error) == (
                "queued", 0, None, None,
            )  # fmt: skip
            assert statuses(store, run_id) == ["queued"]
        assert sorted(queued_ids(store, CUDA_TRAIN_QUEUE)) == sorted(cuda_runs)
        assert queued_ids(store, TRAIN_QUEUE) == []  # the worker took everything it can train
        assert pending_run_ids(store.redis) == set(cuda_runs)
        assert "taking runs from fflab.train (redis" in worker.log()  # the shared queue only

        # Every beat registers the worker (seen_at), then its reaper re-sends the runs queued for longer than
        # the lease's TTL that have no message in the broker. Wait for a beat that began after the cuda runs
        # passed that age, and for the next one (so that the first one's reaper pass has ended).
        due = max(store.get_run(run_id).updated_at for run_id in cuda_runs) + LEASE_TTL_S

        def seen_after(moment: float) -> float | None:
            (entry,) = [w for w in store.workers.list(max_age_s=60) if w["name"] == worker.name]
            return entry["seen_at"] if entry["seen_at"] > moment else None

        first_beat = wait_for(
            lambda: seen_after(due), timeout_s=60, what="a beat after the reaper's threshold"
        )
        wait_for(lambda: seen_after(first_beat), timeout_s=30, what="the beat after it")
        assert "no task in the broker" not in worker.log()
        assert sorted(queued_ids(store, CUDA_TRAIN_QUEUE)) == sorted(cuda_runs)  # not sent again
        assert worker.process.poll() is None
