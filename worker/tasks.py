"""The Celery task that trains one run (imported by the worker process only)."""

from __future__ import annotations

from celery import shared_task

from fflab.queue import TRAIN_TASK_NAME
from worker.context import get_context
from worker.training import train_run


@shared_task(name=TRAIN_TASK_NAME, ignore_result=True)
def train(run_id: str) -> str:
    """Train (or resume) run `run_id`; a run leased elsewhere, finished or cancelled is skipped."""
    return train_run(get_context(), run_id)
