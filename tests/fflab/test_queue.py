"""The training queue the API and the worker share (fflab.queue)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from fflab.queue import (
    ADVANCE_TASK_NAME,
    CUDA_TRAIN_QUEUE,
    TRAIN_QUEUE,
    TRAIN_TASK_NAME,
    enqueue_advance,
    enqueue_run,
    make_celery,
    pending_run_ids,
    run_queue,
    worker_queues,
)
from fflab.settings import Settings
from tests.support.paths import REPO


def test_importing_the_app_does_not_import_torch():
    # The API enqueues through this module; it must not pay for (or need) torch and ffcore's trainer.
    code = (
        "import sys; from fflab.queue import make_celery, TRAIN_TASK_NAME; make_celery(); "
        "print(sorted(m for m in ('torch', 'ffcore.train', 'worker.tasks') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_app_takes_one_long_task_at_a_time_and_acks_early(redis_url):
    app = make_celery(Settings(redis_url=redis_url))
    conf = app.conf
    assert conf.broker_url == redis_url and conf.task_default_queue == TRAIN_QUEUE
    assert sorted(queue.name for queue in conf.task_queues) == [TRAIN_QUEUE, CUDA_TRAIN_QUEUE]
    assert conf.task_acks_late is False  # no redelivery of a long run after the visibility timeout
    assert (conf.worker_prefetch_multiplier, conf.worker_concurrency, conf.worker_disable_prefetch) == (
        1,
        1,
        True,
    )
    assert TRAIN_TASK_NAME == "fflab.train_run"


def test_a_run_is_enqueued_under_its_own_id_on_the_queue_of_its_device():
    sent = []

    class Recorder:
        def send_task(self, name, args, task_id, **options):
            sent.append((name, args, task_id, options.get("queue", make_celery().conf.task_default_queue)))

    for run_id, device in (("a", "cuda"), ("b", "cpu"), ("c", "auto")):
        enqueue_run(Recorder(), run_id, device)
    enqueue_run(Recorder(), "d")  # a caller that does not know the device: the shared queue
    assert sent == [
        (TRAIN_TASK_NAME, ["a"], "a", CUDA_TRAIN_QUEUE),
        (TRAIN_TASK_NAME, ["b"], "b", TRAIN_QUEUE),
        (TRAIN_TASK_NAME, ["c"], "c", TRAIN_QUEUE),
        (TRAIN_TASK_NAME, ["d"], "d", TRAIN_QUEUE),
    ]


@pytest.mark.parametrize(
    ("device", "queue"),
    [
        ("cuda", "fflab.train.cuda"),
        ("cuda:1", "fflab.train.cuda"),
        ("auto", "fflab.train"),
        ("cpu", "fflab.train"),
    ],
)
def test_only_runs_asking_for_a_gpu_go_to_the_gpu_queue(device, queue):
    assert run_queue(device) == queue


def test_a_gpu_worker_takes_both_queues_and_a_cpu_worker_only_the_shared_one():
    assert worker_queues("cuda") == ["fflab.train.cuda", "fflab.train"]
    assert worker_queues("cpu") == ["fflab.train"]
    # Every run's queue is taken by some kind of worker, and the shared one by every kind.
    for device in ("auto", "cpu", "cuda"):
        assert run_queue(device) in worker_queues("cuda")
    assert all(TRAIN_QUEUE in worker_queues(kind) for kind in ("cpu", "cuda"))


def test_messages_wait_in_the_queue_of_their_device_and_pending_run_ids_sees_every_queue(redis_url):
    """On a real redis-server with no worker: each message lands in its queue's list, where the reaper's
    check finds it (so a cuda run waiting for a GPU worker is not taken for a lost one)."""
    client = redis.Redis.from_url(redis_url)
    app = make_celery(Settings(redis_url=redis_url))
    try:
        enqueue_run(app, "gpu-run", "cuda")
        enqueue_run(app, "cpu-run", "cpu")
        enqueue_run(app, "any-run", "auto")
        enqueue_advance(app, "experiment-1")  # not a run: never among the pending runs
    finally:
        app.close()

    def tasks(queue: str) -> set[tuple[str, str]]:
        """(task name, its first argument) of each message in the queue's list."""
        messages = [json.loads(message) for message in client.lrange(queue, 0, -1)]
        return {(m["headers"]["task"], m["headers"]["argsrepr"].strip("[]'")) for m in messages}

    assert tasks(CUDA_TRAIN_QUEUE) == {(TRAIN_TASK_NAME, "gpu-run")}
    assert tasks(TRAIN_QUEUE) == {
        (TRAIN_TASK_NAME, "cpu-run"), (TRAIN_TASK_NAME, "any-run"), (ADVANCE_TASK_NAME, "experiment-1"),
    }  # fmt: skip
    assert pending_run_ids(client) == {"gpu-run", "cpu-run", "any-run"}
    # A message delivered to a worker and not yet acknowledged still counts (kombu's unacked hash).
    message = client.rpop(CUDA_TRAIN_QUEUE)
    client.hset("unacked", "tag-1", json.dumps([json.loads(message), "", CUDA_TRAIN_QUEUE]))
    assert pending_run_ids(client) == {"gpu-run", "cpu-run", "any-run"}
    client.hdel("unacked", "tag-1")
    assert pending_run_ids(client) == {"cpu-run", "any-run"}


def test_the_api_never_imports_the_worker_package():
    api_sources = "\n".join(path.read_text() for path in (REPO / "api").rglob("*.py"))
    assert "from worker" not in api_sources and "import worker" not in api_sources
