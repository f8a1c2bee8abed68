"""The worker's background thread: renew the current run's lease, refresh the worker's
registration, run the reaper and advance the running experiments, every `heartbeat_interval_s`.

It runs beside the training loop (Celery's solo pool trains in the main thread); torch releases
the GIL in its kernels, so the beat keeps time while a run trains.
"""

from __future__ import annotations

import logging
import threading

from worker.context import WorkerContext
from worker.reaper import Reaper
from worker.redis_waits import passing_problem

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, context: WorkerContext, reaper: Reaper):
        super().__init__(name="fflab-heartbeat", daemon=True)
        self.context = context
        self.reaper = reaper
        self._stopped = threading.Event()
        self._coordinating: threading.Thread | None = None

    def beat(self) -> None:
        context = self.context
        context.renew_current_lease()
        context.registry.register(context.name, context.info())
        # A killed worker never deregisters; forget it once it is long gone.
        context.registry.prune(max_age_s=10 * context.settings.lease_ttl_s)
        self.reaper.sweep()
        # A queued run's task can be lost; a run may wait this long for a worker before it is re-sent.
        self.reaper.resend_lost(min_age_s=context.settings.lease_ttl_s)
        # Experiments move on when their runs end; this catches the ends whose worker died first. In a
        # thread of its own: a slow pass (Optuna replaying a long study) must not delay the lease.
        if context.coordinator is not None and not (self._coordinating and self._coordinating.is_alive()):
            self._coordinating = threading.Thread(
                target=context.coordinator.advance_all, name="fflab-coordinator", daemon=True
            )
            self._coordinating.start()

    def run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as error:  # keep beating: the next one may work
                problem = passing_problem(error)
                if problem is None:
                    log.exception("heartbeat failed")
                else:  # Redis away for a moment: what, not a traceback
                    log.warning("heartbeat: Redis %s (%s); beating on", problem, error)
            if self._stopped.wait(self.context.settings.heartbeat_interval_s):
                return

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)
