"""The training queue the API and the worker share (fflab.queue)."""

from __future__ import annotations

import subprocess
import sys

from fflab.queue import TRAIN_QUEUE, TRAIN_TASK_NAME, enqueue_run, make_celery
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
    assert conf.task_acks_late is False  # no redelivery of a long run after the visibility timeout
    assert (conf.worker_prefetch_multiplier, conf.worker_concurrency, conf.worker_disable_prefetch) == (
        1,
        1,
        True,
    )
    assert TRAIN_TASK_NAME == "fflab.train_run"


def test_a_run_is_enqueued_under_its_own_id():
    sent = []

    class Recorder:
        def send_task(self, name, args, task_id):
            sent.append((name, args, task_id))

    enqueue_run(Recorder(), "abc")
    assert sent == [(TRAIN_TASK_NAME, ["abc"], "abc")]


def test_the_api_never_imports_the_worker_package():
    api_sources = "\n".join(path.read_text() for path in (REPO / "api").rglob("*.py"))
    assert "from worker" not in api_sources and "import worker" not in api_sources
