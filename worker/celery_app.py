"""The Celery application: Redis broker, one training task, no prefetching.

The API imports `make_celery` and `TRAIN_TASK_NAME` from here to enqueue and revoke runs, so this
module must stay light: no torch, no ffcore (the task lives in `worker.tasks`, which only the
worker process imports).
"""

from __future__ import annotations

from celery import Celery

from fflab.settings import Settings, get_settings

TRAIN_TASK_NAME = "fflab.train_run"
TRAIN_QUEUE = "fflab.train"


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app on `settings.redis_url`, configured for long training tasks.

    Enqueue a run with `app.send_task(TRAIN_TASK_NAME, args=[run_id], task_id=run_id)`.
    """
    settings = settings or get_settings()
    app = Celery("fflab", broker=settings.redis_url, include=["worker.tasks"])
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
