"""The Celery app the API and the worker share."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fflab.settings import Settings
from worker.celery_app import TRAIN_QUEUE, TRAIN_TASK_NAME, make_celery
from worker.context import get_context


def test_importing_the_app_does_not_import_torch():
    # The API enqueues through this module; it must not pay for (or need) torch and ffcore's trainer.
    code = (
        "import sys; from worker.celery_app import make_celery, TRAIN_TASK_NAME; make_celery(); "
        "print(sorted(m for m in ('torch', 'ffcore.train', 'worker.tasks') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_app_takes_one_long_task_at_a_time_and_acks_early(redis_url):
    app = make_celery(Settings(redis_url=redis_url))
    conf = app.conf
    assert conf.broker_url == redis_url and conf.task_default_queue == TRAIN_QUEUE
    assert conf.task_acks_late is False  # no redelivery of a long run after the visibility timeout
    assert (conf.worker_prefetch_multiplier, conf.worker_concurrency, conf.worker_disable_prefetch) == (
        1,
        1,
        True,
    )
    assert TRAIN_TASK_NAME == "fflab.train_run"


def test_the_task_outside_python_m_worker_says_how_to_start_it():
    with pytest.raises(RuntimeError, match="python -m worker"):
        get_context()
