"""The worker's background thread: renew the current run's lease, refresh the worker's
registration, run the reaper, advance the running experiments and (with FF_RETENTION_DAYS) expire
old runs, every `heartbeat_interval_s`.

It runs beside the training loop (Celery's solo pool trains in the main thread); torch releases
the GIL in its kernels, so the beat keeps time while a run trains.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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
        self.background: dict[str, threading.Thread] = {}  # the slow jobs the beat starts, by name

    def beat(self) -> None:
        context = self.context
        context.renew_current_lease()
        context.registry.register(context.name, context.info())
        # A killed worker never deregisters; forget it once it is long gone.
        context.registry.prune(max_age_s=10 * context.settings.lease_ttl_s)
        self.reaper.sweep()
        # A queued run's task can be lost; a run may wait this long for a worker before it is re-sent.
        self.reaper.resend_lost(min_age_s=context.settings.lease_ttl_s)
        # Slow jobs run in threads of their own, one at a time each: they must not delay the lease.
        # Experiments move on when their runs end; this catches the ends whose worker died first (a pass
        # can be slow: Optuna replays a long study).
        if context.coordinator is not None:
            self._in_background("fflab-coordinator", context.coordinator.advance_all)
        # Finished runs and experiments past FF_RETENTION_DAYS go (one pass among all workers in minutes).
        if self.reaper.retention is not None:
            self._in_background("fflab-retention", self.reaper.expire_old)

    def _in_background(self, name: str, job: Callable[[], object]) -> None:
        """Start `job` in a thread named `name`, unless the last one still runs."""
        running = self.background.get(name)
        if running is None or not running.is_alive():
            self.background[name] = threading.Thread(target=self._logged(name, job), name=name, daemon=True)
            self.background[name].start()

    @staticmethod
    def _logged(name: str, job: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except Exception as error:  # the next beat starts it again
                problem = passing_problem(error)
                if problem is None:
                    log.exception("%s failed", name)
                else:
                    log.warning("%s: Redis %s (%s); trying again at a later beat", name, problem, error)

        return run

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
