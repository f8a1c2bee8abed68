"""The training queues: the Celery app on the Redis broker and the one way a run is enqueued.

The API enqueues and revokes runs, the worker consumes them (and enqueues again from its reaper
and its shutdown hand-back). This module stays light: no torch, no ffcore, so the API does not
pay for them; the task itself lives in `worker.tasks`, which only the worker process imports.

A queue per kind of device: a run whose config asks for `cuda` goes to `fflab.train.cuda`, which
only GPU workers consume, so it waits there for one (however long) instead of reaching a CPU worker
that cannot train it. Runs asking for `auto` or `cpu` go to the shared `fflab.train`, which every
worker consumes: `auto` trains on whatever the worker has, `cpu` on the CPU even on a GPU worker (the
config asked for it, e.g. to repeat a CPU result exactly). A GPU worker takes from its two queues in
turn. Experiments' coordination tasks also go to the shared queue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis
from celery import Celery
from kombu import Exchange, Queue

from fflab.connections import client_options
from fflab.settings import Settings, get_settings

TRAIN_TASK_NAME = "fflab.train_run"
ADVANCE_TASK_NAME = "fflab.advance_experiment"
TRAIN_QUEUE = "fflab.train"  # every worker's: runs asking for 'auto' or 'cpu', experiments' tasks
CUDA_TRAIN_QUEUE = "fflab.train.cuda"  # GPU workers' only: runs asking for 'cuda'
TRAIN_QUEUES = (TRAIN_QUEUE, CUDA_TRAIN_QUEUE)


def run_queue(device: str) -> str:
    """The queue of a run whose config asks for `device` ('auto', 'cpu' or 'cuda')."""
    return CUDA_TRAIN_QUEUE if device.split(":", 1)[0] == "cuda" else TRAIN_QUEUE


def worker_queues(device_type: str) -> list[str]:
    """The queues a worker training on `device_type` ('cpu' or 'cuda') consumes."""
    return [CUDA_TRAIN_QUEUE, TRAIN_QUEUE] if device_type == "cuda" else [TRAIN_QUEUE]


def make_celery(settings: Settings | None = None, tasks: Sequence[str] = ()) -> Celery:
    """A Celery app on `settings.redis_url`, configured for long training tasks.

    `tasks` names the modules that define tasks, imported when a worker starts (the worker passes
    `worker.tasks`; an app that only enqueues needs none).
    """
    settings = settings or get_settings()
    app = Celery("fflab", broker=settings.redis_url, include=list(tasks))
    connection = client_options(settings)
    app.conf.update(
        # The broker's connections time out and keep alive as every Redis client of the service does
        # (fflab.connections); kombu pings its long-lived consumer connections on the same interval.
        broker_transport_options=connection,
        # The same for a result backend, should one be configured (none is: task_ignore_result).
        redis_socket_timeout=connection["socket_timeout"],
        redis_socket_connect_timeout=connection["socket_connect_timeout"],
        redis_socket_keepalive=True,
        redis_backend_health_check_interval=connection["health_check_interval"],
        task_default_queue=TRAIN_QUEUE,
        # Declared here so that a message sent to a queue no worker has consumed yet is kept in it
        # (a direct exchange per queue, as Celery makes for a queue it was not told of).
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in TRAIN_QUEUES],
        # Early acks: runs survive a lost worker through the lease and the reaper (see worker.reaper),
        # which resume from the checkpoint, not through the broker delivering the task again. (Celery
        # 5.7's solo pool sends the ack from its event loop, between tasks, so a message stays unacked
        # while its run trains; delivered again after the visibility timeout, it finds the run leased
        # by a live worker and does nothing: claim_run in fflab.store.attempts.)
        task_acks_late=False,
        # One run at a time per worker, and no second run reserved while the first trains.
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_disable_prefetch=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


def enqueue_run(app: Celery, run_id: str, device: str = "auto") -> None:
    """Send run `run_id`'s training task to the queue of `device`, the device its config asks for; the
    task id is the run id (so it can be revoked by it).

    A caller that does not know the device may leave it: a `cuda` run sent to the shared queue is
    passed on to the GPU queue by the CPU worker that takes it (worker.training), never failed.
    """
    queue = run_queue(device)
    # The shared queue is the app's default queue (task_default_queue): only a GPU run names its own.
    options = {"queue": queue} if queue != TRAIN_QUEUE else {}
    app.send_task(TRAIN_TASK_NAME, args=[run_id], task_id=run_id, **options)


def enqueue_advance(app: Celery, experiment_id: str) -> None:
    """Ask a worker to advance experiment `experiment_id` (worker.coordinator): queue its first runs."""
    app.send_task(ADVANCE_TASK_NAME, args=[experiment_id])


# Where kombu's Redis transport keeps messages: a list per queue (named after it), and a hash of the
# messages delivered to a worker but not yet acknowledged.
_UNACKED = "unacked"


def pending_run_ids(client: redis.Redis) -> set[str]:
    """Ids of the runs whose training task waits in the broker: in one of the queues (a cuda run may
    wait in its queue for as long as no GPU worker runs), or delivered to a worker and not yet
    acknowledged. The reaper re-sends a queued run that is in none (its message was lost); a message
    that cannot be read is skipped."""
    ids: set[str] = set()
    pipe = client.pipeline(transaction=False)
    for queue in TRAIN_QUEUES:
        pipe.lrange(queue, 0, -1)
    messages = [message for queued in pipe.execute() for message in queued]
    for payload in client.hvals(_UNACKED):
        try:
            messages.append(json.loads(payload)[0])
        except (ValueError, IndexError, TypeError):
            continue
    for message in messages:
        try:
            headers = (json.loads(message) if isinstance(message, bytes | str) else message)["headers"]
        except (ValueError, KeyError, TypeError):
            continue
        if headers.get("task") == TRAIN_TASK_NAME and isinstance(headers.get("id"), str):
            ids.add(headers["id"])
    return ids
