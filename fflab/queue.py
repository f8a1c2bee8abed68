"""The training queue: the Celery app on the Redis broker and the one way a run is enqueued.

The API enqueues and revokes runs, the worker consumes them (and enqueues again from its reaper
and its shutdown hand-back). This module stays light: no torch, no ffcore, so the API does not
pay for them; the task itself lives in `worker.tasks`, which only the worker process imports.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis
from celery import Celery

from fflab.connections import client_options
from fflab.settings import Settings, get_settings

TRAIN_TASK_NAME = "fflab.train_run"
ADVANCE_TASK_NAME = "fflab.advance_experiment"
TRAIN_QUEUE = "fflab.train"


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
        # Early acks: a task is acknowledged when it starts, so the broker never delivers a
        # long-running run again after its visibility timeout. Runs survive a lost worker through
        # the lease and the reaper instead (see worker.reaper), which resume from the checkpoint.
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


def enqueue_run(app: Celery, run_id: str) -> None:
    """Send run `run_id`'s training task; the task id is the run id (so it can be revoked by it)."""
    app.send_task(TRAIN_TASK_NAME, args=[run_id], task_id=run_id)


def enqueue_advance(app: Celery, experiment_id: str) -> None:
    """Ask a worker to advance experiment `experiment_id` (worker.coordinator): queue its first runs."""
    app.send_task(ADVANCE_TASK_NAME, args=[experiment_id])


# Where kombu's Redis transport keeps messages: a list per queue (named after it), and a hash of the
# messages delivered to a worker but not yet acknowledged.
_UNACKED = "unacked"


def pending_run_ids(client: redis.Redis) -> set[str]:
    """Ids of the runs whose training task waits in the broker: in the queue, or delivered to a worker
    and not yet acknowledged. The reaper re-sends a queued run that is in neither (its message was
    lost); a message that cannot be read is skipped."""
    ids: set[str] = set()
    messages = list(client.lrange(TRAIN_QUEUE, 0, -1))
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
