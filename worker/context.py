"""What a worker process knows about itself: its name, device, stores, and the run it trains.

`python -m worker` builds one `WorkerContext` at start-up and installs it with `set_context`; the
Celery task, the heartbeat and the reaper all read it from there.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from fflab.settings import Settings
from fflab.store.attempts import AttemptStore
from fflab.store.experiments import ExperimentStore
from fflab.store.workers import WorkerRegistry

if TYPE_CHECKING:
    from worker.coordinator import Coordinator

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    attempts: AttemptStore  # the run store, as the worker uses it
    registry: WorkerRegistry
    name: str  # unique among live workers: it owns leases
    device: str  # "cpu" or "cuda:N"
    enqueue: Callable[[str], None]  # sends a run's training task to the queue (again)
    experiments: ExperimentStore | None = None  # what the pruner of an experiment's run reads
    coordinator: Coordinator | None = None  # advances experiments (None: this worker does not)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    # Set by the heartbeat when renewing the current run's lease failed: stop training at once.
    lease_lost: threading.Event = field(default_factory=threading.Event)
    # Set on a warm shutdown (SIGTERM): hand the current run back to the queue.
    shutting_down: threading.Event = field(default_factory=threading.Event)
    _current_run_id: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def device_type(self) -> str:
        """What a run's config calls this device: 'cpu' or 'cuda' (the worker's GPU is the current one)."""
        return self.device.split(":", 1)[0]

    @property
    def current_run_id(self) -> str | None:
        return self._current_run_id

    def begin_run(self, run_id: str) -> None:
        with self._lock:
            self._current_run_id = run_id
            self.lease_lost.clear()

    def end_run(self) -> None:
        with self._lock:
            self._current_run_id = None

    def renew_current_lease(self) -> None:
        """The heartbeat's part: keep the current run's lease alive, or flag that it is gone."""
        with self._lock:
            run_id = self._current_run_id
            if run_id and not self.attempts.renew_lease(run_id, self.name, self.settings.lease_ttl_s):
                self.lease_lost.set()

    def advance_experiment(self, experiment_id: str) -> None:
        """Advance an experiment; a failure is logged, not raised: the heartbeat advances it again."""
        if self.coordinator is None:
            return
        try:
            self.coordinator.advance(experiment_id)
        except Exception:
            log.exception("experiment %s: advancing it failed; the heartbeat tries again", experiment_id)

    def advance_experiment_of(self, run_id: str) -> None:
        """Advance the experiment of run `run_id`, if it belongs to one."""
        try:
            record = self.attempts.load_run(run_id)
        except Exception:
            log.exception("run %s: could not read it to advance its experiment", run_id)
            return
        if record is not None and record.experiment is not None:
            self.advance_experiment(record.experiment)

    def info(self) -> dict[str, Any]:
        """What `WorkerRegistry.register` records (the API's /readyz lists it)."""
        return {
            "device": self.device,
            "threads": torch.get_num_threads() if self.device == "cpu" else None,
            "host": self.host,
            "pid": self.pid,
            "run_id": self._current_run_id,
            "started_at": self.started_at,
        }


_context: WorkerContext | None = None


def set_context(context: WorkerContext) -> None:
    global _context
    _context = context


def get_context() -> WorkerContext:
    if _context is None:
        raise RuntimeError("no worker context: start the worker with `python -m worker`")
    return _context
