"""The whole service path through real parts: uvicorn API, redis-server, a Celery worker on real MNIST."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.api import RunningApi
from tests.support.events import read_events
from tests.support.mnist import mnist_test_images, mnist_test_labels
from tests.support.store import TestStore
from tests.support.waiting import wait_for
from tests.support.worker import WorkerProcess, start_worker, wait_for_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def worker(redis_url: str, mnist_dir: str) -> Iterator[WorkerProcess]:
    with start_worker(redis_url, mnist_dir, metrics_every_steps=25) as running:
        yield running


def test_cancel_a_running_and_a_queued_run(
    api_server: RunningApi, worker: WorkerProcess, store: TestStore
) -> None:
    http = httpx.Client(base_url=api_server.base_url, timeout=30)
    long_run = http.post("/runs", json={"preset": "quick", "overrides": {"epochs": 20}}).json()["id"]
    wait_for(lambda: http.get(f"/runs/{long_run}").json()["step"] > 0, 180, "the run to start training")
    # The worker trains one run at a time, so this one waits in the queue.
    queued = http.post("/runs", json={"preset": "quick", "overrides": {"epochs": 1}}).json()["id"]
    assert http.get(f"/runs/{queued}").json()["status"] == "queued"

    assert http.post(f"/runs/{queued}/cancel").json()["status"] == "cancelled"
    asked_at = time.monotonic()
    assert http.post(f"/runs/{long_run}/cancel").json()["status"] == "running"
    wait_for(lambda: http.get(f"/runs/{long_run}").json()["status"] == "cancelled", 10, "the cancel")
    assert time.monotonic() - asked_at < 5

    time.sleep(2)  # time enough for the worker to receive the revoked task, if it were going to run it
    never_ran = http.get(f"/runs/{queued}").json()
    assert never_ran["status"] == "cancelled" and never_ran["started_at"] is None
    statuses = [
        r["status"] for r in http.get(f"/runs/{queued}/metrics", params={"kind": "status"}).json()["records"]
    ]
    assert statuses == ["queued", "cancelled"]
    # Cancelled runs can be deleted.
    assert http.delete(f"/runs/{queued}").status_code == 204


def test_a_quick_run_trains_streams_its_metrics_and_reads_mnist_digits(
    api_server: RunningApi, worker: WorkerProcess, store: TestStore, mnist_dir: str
) -> None:
    http = httpx.Client(base_url=api_server.base_url, timeout=30)
    response = http.post("/runs", json={"preset": "quick", "overrides": {"epochs": 1}})
    assert response.status_code == 201
    run_id = response.json()["id"]

    # Follow the run live over Server-Sent Events while it trains.
    events: list[tuple[str, dict, float]] = []

    def follow() -> None:
        with httpx.stream("GET", f"{api_server.base_url}/runs/{run_id}/events", timeout=300) as stream:
            for event in read_events(stream):
                events.append((event["event"], json.loads(event["data"]), time.monotonic()))

    follower = threading.Thread(target=follow)
    follower.start()

    record = wait_for_status(store, run_id, {"succeeded", "failed"}, timeout_s=400)
    follower.join(timeout=30)
    assert not follower.is_alive(), "the event stream did not end after the run finished"
    assert record.status == "succeeded", record.error

    # Events: train metrics arrived while the run was running, then the final status and the end.
    kinds = [kind for kind, _, _ in events]
    train = [data for kind, data, _ in events if kind == "metric" and data["kind"] == "train"]
    assert len(train) >= 10
    finished_at = next(t for kind, data, t in events if kind == "status" and data["status"] == "succeeded")
    first_metric_at = next(t for kind, data, t in events if kind == "metric")
    assert finished_at - first_metric_at > 1.0  # they streamed in, not all at the end
    assert kinds[-1] == "end" and events[-1][1] == {"status": "succeeded"}

    # The cursor API gives the same records.
    page = http.get(f"/runs/{run_id}/metrics", params={"limit": 10_000}).json()
    assert [r for r in page["records"] if r["kind"] == "train"] == [
        {"id": r["id"], **data}
        for r, data in zip([r for r in page["records"] if r["kind"] == "train"], train, strict=True)
    ]
    final = [r for r in page["records"] if r["kind"] == "eval" and r.get("final")]
    assert len(final) == 1 and final[0]["split"] == "test" and final[0]["error_scan"] < 0.15

    # The trained model reads real MNIST test digits, sent as pixels and as a picture file.
    digits, labels = mnist_test_images(mnist_dir, 20), mnist_test_labels(mnist_dir, 20)
    predicted = [
        http.post(f"/runs/{run_id}/predict", json={"image": (d / 255.0).tolist()}).json()["scan_label"]
        for d in digits
    ]
    assert np.mean(np.array(predicted) == labels) >= 0.85, (predicted, labels.tolist())
    assert predicted[0] == labels[0]  # the first test digit, a 7
    picture = Image.fromarray(255 - digits[0]).resize((200, 200), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    answer = http.post(
        f"/runs/{run_id}/predict", files={"image": ("seven.png", buffer.getvalue(), "image/png")}
    )
    assert answer.status_code == 200
    assert answer.json()["scan_label"] == labels[0]
    assert answer.json()["model_step"] == record.step


def test_a_live_consumer_following_a_run_through_a_worker_sigkill_sees_steps_only_increase(
    api_server: RunningApi, redis_url: str, mnist_dir: str, store: TestStore
) -> None:
    """The dead attempt's records past its checkpoint reach the consumer before the worker dies; the
    resumed attempt sends a rewind to the checkpoint's step, and dropping what came after it (as the
    dashboard and the README's example do) leaves one increasing series."""
    timings = {"lease_ttl_s": 3, "heartbeat_interval_s": 0.5, "metrics_every_steps": 5}
    # One wide layer and big batches: 20 steps an epoch, each epoch a few seconds.
    overrides = {"hidden": [1000], "scan_layers": [0], "head_layers": [0], "batch_size": 2500, "epochs": 3}
    received: list[tuple[str, dict]] = []
    with start_worker(redis_url, mnist_dir, **timings) as victim:
        body = {"preset": "quick", "overrides": overrides}
        run_id = httpx.post(f"{api_server.base_url}/runs", json=body, timeout=30).json()["id"]

        def follow() -> None:
            with httpx.stream("GET", f"{api_server.base_url}/runs/{run_id}/events", timeout=300) as stream:
                for event in read_events(stream):
                    received.append((event["event"], json.loads(event["data"])))

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()

        def streamed_past_a_checkpoint():
            checkpoint = store.load_checkpoint(run_id)
            steps = [r["step"] for e, r in list(received) if e == "metric" and r["kind"] == "train"]
            return checkpoint if checkpoint and steps and steps[-1] > checkpoint.step else None

        checkpoint = wait_for(
            streamed_past_a_checkpoint, 120, "the consumer to see steps past a checkpoint", interval_s=0.05
        )
        victim.kill()
    with start_worker(redis_url, mnist_dir, **timings):
        follower.join(timeout=180)
    assert not follower.is_alive() and received[-1][0] == "end" and received[-1][1]["status"] == "succeeded"

    rewinds = [r for e, r in received if e == "rewind"]
    assert [r["step"] for r in rewinds] == [checkpoint.step]
    raw = [r["step"] for e, r in received if e == "metric" and r["kind"] == "train"]
    assert len(set(raw)) < len(raw), "steps the dead attempt sent past its checkpoint came again"
    kept: list[dict] = []
    for event, record in received:
        if event == "rewind":
            kept = [r for r in kept if r["step"] <= record["step"]]
        elif event == "metric" and record["kind"] == "train":
            kept.append(record)
    assert [r["step"] for r in kept] == list(range(5, 61, 5))
