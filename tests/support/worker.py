"""Start real `python -m worker` processes for tests, and submit runs to them without the API.

    with start_worker(redis_url, mnist_dir) as worker:
        run_id = submit_run(redis_url, RunConfig.from_preset("quick", epochs=1))
        record = wait_for_status(TestStore.from_url(redis_url), run_id, {"succeeded"}, timeout_s=120)

The worker is stopped (SIGTERM, then SIGKILL) when the block ends, also when the test fails.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ffcore.config import RunConfig
from fflab.queue import enqueue_run, make_celery
from fflab.settings import Settings
from fflab.store.keys import RunRecord
from tests.support.processes import Process, launched_with_log
from tests.support.store import TestStore
from tests.support.waiting import wait_for

STOP_TIMEOUT_S = 20  # a warm shutdown hands the current run back first


@dataclass
class WorkerProcess:
    name: str
    process: Process

    def log(self) -> str:
        return self.process.log()

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-whatever, as on a lost machine."""
        self.process.kill()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (a warm shutdown), then SIGKILL after `timeout_s`; the exit status."""
        return self.process.stop(timeout_s)


def wait_for_status(store: TestStore, run_id: str, statuses: set[str], timeout_s: float) -> RunRecord:
    def reached() -> RunRecord | None:
        record = store.get_run(run_id)
        return record if record is not None and record.status in statuses else None

    return wait_for(
        reached,
        timeout_s,
        lambda: f"run {run_id} to reach {sorted(statuses)}; it is {store.get_run(run_id)!r}",
    )


def submit_run(redis_url: str, config: RunConfig, preset: str | None = None) -> str:
    """Create a queued run and enqueue its training task, as the API does; returns the run id."""
    run_id = TestStore.from_url(redis_url).runs.create_run(config, preset=preset).id
    enqueue_run(make_celery(Settings(redis_url=redis_url)), run_id, config.device)
    return run_id


@contextmanager
def start_worker(
    redis_url: str,
    data_dir: str,
    *,
    name: str | None = None,
    device: str = "cpu",
    lease_ttl_s: float | None = None,
    heartbeat_interval_s: float | None = None,
    metrics_every_steps: int | None = None,
    checkpoint_interval_s: float | None = None,
    torch_threads: int | None = 1,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 90,
) -> Iterator[WorkerProcess]:
    """Run `python -m worker` against `redis_url` until the block ends; yields once it is registered.

    `torch_threads` (default 1; None: PyTorch's default) keeps a test worker from spinning threads
    on a small shared CI machine; the FF_* keyword arguments set the worker's settings.
    """
    name = name or f"test-worker-{uuid.uuid4().hex[:6]}"
    child_env = os.environ | {"FF_REDIS_URL": redis_url, "FF_DATA_DIR": data_dir, "PYTHONUNBUFFERED": "1"}
    for var, value in (
        ("FF_LEASE_TTL_S", lease_ttl_s),
        ("FF_HEARTBEAT_INTERVAL_S", heartbeat_interval_s),
        ("FF_METRICS_EVERY_STEPS", metrics_every_steps),
        ("FF_CHECKPOINT_INTERVAL_S", checkpoint_interval_s),
    ):
        if value is not None:
            child_env[var] = str(value)
    if torch_threads is not None:
        child_env["FF_WORKER_THREADS"] = str(torch_threads)
    child_env |= env or {}
    args = [sys.executable, "-m", "worker", "--name", name, "--device", device]
    with launched_with_log(
        args, name=f"worker {name}", env=child_env, stop_timeout_s=STOP_TIMEOUT_S
    ) as process:
        worker = WorkerProcess(name, process)
        workers = TestStore.from_url(redis_url).workers

        def registered() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"worker {name} exited with {process.returncode}:\n{worker.log()[-3000:]}")
            return any(w["name"] == name for w in workers.list(max_age_s=60))

        wait_for(
            registered,
            ready_timeout_s,
            lambda: f"worker {name} to register; its log:\n{worker.log()[-3000:]}",
            interval_s=0.2,
        )
        yield worker
