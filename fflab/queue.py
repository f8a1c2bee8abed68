"""The training queue: the Celery app on the Redis broker and the one way a run is enqueued.

The API enqueues and revokes runs, the worker consumes them (and enqueues again from its reaper
and its shutdown hand-back). This module stays light: no torch, no ffcore, so the API does not
pay for them; the task itself lives in `worker.tasks`, which only the worker process imports.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

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
    app.conf.update(
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
