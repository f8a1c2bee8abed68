"""The Celery tasks of the worker (imported by the worker process only): train one run, advance one
experiment."""

from __future__ import annotations

from celery import shared_task

from fflab.queue import ADVANCE_TASK_NAME, TRAIN_TASK_NAME
from worker.context import get_context
from worker.training import train_run


@shared_task(name=TRAIN_TASK_NAME, ignore_result=True)
def train(run_id: str) -> str:
    """Train (or resume) run `run_id`; a run leased elsewhere, finished or cancelled is skipped. When
    the run belongs to an experiment, the experiment moves on at once (its next runs are queued)."""
    context = get_context()
    outcome = train_run(context, run_id)
    context.advance_experiment_of(run_id)
    return outcome


@shared_task(name=ADVANCE_TASK_NAME, ignore_result=True)
def advance_experiment(experiment_id: str) -> None:
    """Queue an experiment's next runs, tell its study what ended (see worker.coordinator)."""
    get_context().advance_experiment(experiment_id)
