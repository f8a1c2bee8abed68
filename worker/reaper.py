"""The reaper: give runs whose worker died back to the queue.

A worker renews the lease of the run it trains every `heartbeat_interval_s`. When a worker dies
(SIGKILL, a lost machine), the lease expires after `lease_ttl_s` while the run still says
`running`; so it does when a worker gave up on Redis and Redis refused even its hand-back
(worker.training). Every worker's reaper looks for such runs, puts them back to `queued` and enqueues
them again (to the queue of the device they ask for: worker.routing); whichever worker takes the task
resumes the run from its last checkpoint. Each such loss counts against the attempt cap
(FF_MAX_ATTEMPTS, with the hand-backs of attempts that gave up on Redis: fflab.store.attempt_cap): the
failed attempt that reaches it ends the run failed instead, saying how its attempts ended (the run
may be what kills its workers). The check, the count and the status change happen in one Redis
script, so two reapers never requeue a run twice, and a run a worker has just claimed is never
touched.

The reaper also re-sends the task of a run that has been `queued` for a while with no message in the
broker (lost between a worker taking it and claiming the run, or in a Redis crash's last second); a
run waiting in the GPU queue for a GPU worker has its message there and is left alone. It also,
with FF_RETENTION_DAYS, deletes finished runs and experiments past it (worker.retention).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fflab.queue import pending_run_ids
from fflab.store.attempt_cap import DEFAULT_MAX_ATTEMPTS
from fflab.store.attempts import AttemptStore
from worker.retention import Expired, Retention

log = logging.getLogger(__name__)


class Reaper:
    def __init__(
        self,
        attempts: AttemptStore,
        enqueue: Callable[[str], None],
        worker_name: str,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retention: Retention | None = None,
    ):
        self.attempts = attempts
        self.enqueue = enqueue
        self.worker_name = worker_name
        self.max_attempts = max_attempts
        self.retention = retention  # None: nothing expires (FF_RETENTION_DAYS unset)

    def expire_old(self) -> Expired | None:
        """Delete the finished runs and experiments past the retention, when it is this worker's turn
        (see worker.retention); None when nothing expires or it was not its turn."""
        return self.retention.maybe_expire() if self.retention is not None else None

    def resend_lost(self, min_age_s: float) -> list[str]:
        """Send again the tasks of runs queued for over `min_age_s` whose message is not in the broker
        (a worker killed between taking it and claiming the run, Redis losing its last writes). A
        duplicate is harmless: claiming a run is idempotent."""
        waiting = self.attempts.queued_run_ids(older_than_s=min_age_s)
        if not waiting:
            return []
        pending = pending_run_ids(self.attempts.redis)  # all queues: a cuda run may wait long
        lost = [run_id for run_id in waiting if run_id not in pending]
        for run_id in lost:
            self.enqueue(run_id)
            log.warning("run %s was queued with no task in the broker; its task is sent again", run_id)
        return lost

    def sweep(self) -> list[str]:
        """Requeue every orphaned running run; returns their ids."""
        requeued = []
        for run_id in self.attempts.running_run_ids():
            if self.attempts.lease_owner(run_id) is not None:
                continue  # cheap pre-check; the script below decides
            reason = f"lease expired (worker lost), found by {self.worker_name}"
            outcome = self.attempts.requeue_if_orphaned(run_id, reason, self.max_attempts)
            if outcome == "queued":
                self.enqueue(run_id)
                log.warning("run %s lost its worker; requeued to resume from its checkpoint", run_id)
                requeued.append(run_id)
            elif outcome == "failed":
                log.error(
                    "run %s lost its worker; its %d failed attempts reach FF_MAX_ATTEMPTS: it ends failed",
                    run_id, self.max_attempts,
                )  # fmt: skip
        return requeued
