"""Retention: delete finished runs and experiments older than FF_RETENTION_DAYS, with all their data.

When FF_RETENTION_DAYS is set, the workers' reaper (worked from worker.heartbeat) deletes:

- each run that ended (succeeded, failed or cancelled) more than that many days ago, with everything
  stored for it (RunStore.delete_run, as DELETE /runs/{id}: its record, metrics, model, training
  state, checkpoint and index entry), unless it belongs to an experiment that still exists: such a
  run makes part of its experiment's results table and goes with it;
- each experiment that ended that long ago, with its Optuna study and all its runs (as DELETE
  /experiments/{id}, under the experiment's lock), once every one of its runs has ended.

A run still queued or running is never deleted, nor are the runs of a running experiment. It is cheap:
one pass every RETENTION_EVERY_S (5 minutes) among all the workers (a key with that TTL says a pass
is recent), which reads only the runs and experiments created before the cutoff (anything that ended
before it was created before it). It is safe with several workers: deleting what another worker has
just deleted does nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from fflab.store.experiments import ExperimentLocked, ExperimentStore
from fflab.store.keys import FINISHED
from fflab.store.runs import RunStore

log = logging.getLogger(__name__)

DAY_S = 86_400.0
RETENTION_EVERY_S = 300.0


@dataclass
class Expired:
    """What one pass deleted."""

    runs: list[str] = field(default_factory=list)  # standalone runs and the experiments' runs
    experiments: list[str] = field(default_factory=list)


class Retention:
    def __init__(
        self,
        runs: RunStore,
        experiments: ExperimentStore,
        max_age_days: float,
        every_s: float = RETENTION_EVERY_S,
    ):
        self.runs = runs
        self.experiments = experiments
        self.max_age_s = max_age_days * DAY_S
        self.every_s = every_s

    def maybe_expire(self) -> Expired | None:
        """A pass, if no worker made one within `every_s`; None when it was not this worker's turn."""
        if not self.runs.take_retention_turn(self.every_s):
            return None
        return self.expire(time.time())

    def expire(self, now: float) -> Expired:
        """Delete what ended more than the retention before `now`; returns what this call deleted."""
        cutoff = now - self.max_age_s
        expired = Expired()
        experiments = self.experiments.created_before(cutoff)
        runs = self.runs.created_before(cutoff)
        tagged: dict[str, list[str]] = {}
        for run in runs:
            if run.experiment is not None:
                tagged.setdefault(run.experiment, []).append(run.id)
        for experiment_id in (i for i, ended_at in experiments.items() if ended_at and ended_at < cutoff):
            run_ids = self._delete_experiment(experiment_id, tagged.get(experiment_id, []))
            if run_ids is not None:
                expired.experiments.append(experiment_id)
                expired.runs.extend(run_ids)
        for run in runs:
            if run.ended_at is None or run.ended_at >= cutoff or run.experiment in experiments:
                continue  # still going, recent, or part of an experiment (it goes with its experiment)
            if self.runs.delete_run(run.id):
                expired.runs.append(run.id)
        if expired.runs or expired.experiments:
            log.info(
                "retention: deleted %d runs and %d experiments that ended over %g days ago",
                len(expired.runs), len(expired.experiments), self.max_age_s / DAY_S,
            )  # fmt: skip
        return expired

    def _delete_experiment(self, experiment_id: str, tagged: list[str]) -> list[str] | None:
        """Delete an ended experiment with its runs (those its coordinator recorded, and `tagged`: those
        it made without recording them), as DELETE /experiments/{id} does. The ids of the runs this
        call deleted; None when it deleted nothing (gone already, locked, runs still stopping)."""
        try:
            with self.experiments.lock(experiment_id, ttl_s=60):
                if self.experiments.get(experiment_id) is None:
                    return None  # another worker deleted it first
                run_ids = list(dict.fromkeys([*self.experiments.run_ids(experiment_id).values(), *tagged]))
                if any(status not in (None, *FINISHED) for status in self.runs.statuses(run_ids)):
                    log.warning(
                        "retention: experiment %s ended but not all its runs have; kept", experiment_id
                    )
                    return None
                self.experiments.delete(experiment_id)
                return [run_id for run_id in run_ids if self.runs.delete_run(run_id)]
        except ExperimentLocked:
            return None  # being advanced or deleted elsewhere: a later pass sees to it
