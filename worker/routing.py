"""Which queue a worker sends a run's task to, and which runs it must pass on rather than train.

A worker (re)sends tasks from its reaper, its shutdown hand-back and its experiment coordinator, all
by run id: `run_enqueuer` reads the run's config to pick the queue of the device it asks for (see
fflab.queue). A run that reaches a worker whose queues would not carry it (a `cuda` run sent to the
shared queue before queues per device existed, or by a caller that did not say its device) is passed
on to its own queue, where it waits for a GPU worker, instead of failing on this one.
"""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from fflab.queue import enqueue_run, run_queue, worker_queues
from fflab.store.attempts import AttemptStore
from fflab.store.keys import RunRecord

# A run in these statuses may still be trained (a running one whose worker died is claimed again).
_TRAINABLE = ("queued", "running")


def run_enqueuer(app: Celery, attempts: AttemptStore) -> Callable[[str], None]:
    """The worker's `enqueue(run_id)`: send the run's task to the queue of the device its config asks
    for; a run that is gone goes to the shared queue (the worker that takes it finds it missing)."""

    def enqueue(run_id: str) -> None:
        record = attempts.load_run(run_id)
        enqueue_run(app, run_id, record.config.device if record is not None else "auto")

    return enqueue


def belongs_elsewhere(record: RunRecord | None, device_type: str) -> bool:
    """Whether a worker training on `device_type` must pass run `record` on to another queue: it can
    still be trained, and the queue of the device it asks for is not one this worker consumes."""
    return (
        record is not None
        and record.status in _TRAINABLE
        and run_queue(record.config.device) not in worker_queues(device_type)
    )
