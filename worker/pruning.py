"""The pruner's side of an experiment's run: report the first seed's validation errors to the
experiment's Optuna study, and stop the run when its pruner says the setting is hopeless.

Only the first seed of a setting reports (ffcore.sweep's rule, and the service's): its remaining
seeds are queued once it has succeeded (worker.coordinator), so a pruned setting trains one run.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna

from fflab.store.experiments import ExperimentStore
from fflab.store.keys import RunRecord
from fflab.study import load_study, trial_of

log = logging.getLogger(__name__)


class PruningReporter:
    """The Trainer's metrics go through `observe`; `pruned_at` is the epoch at which to stop."""

    def __init__(self, trial: optuna.Trial, objective: str):
        self.trial = trial
        self.objective = objective
        self.pruned_at: int | None = None

    @classmethod
    def for_run(cls, experiments: ExperimentStore, redis_url: str, run: RunRecord) -> PruningReporter | None:
        """The reporter of a run that its experiment prunes; None for every other run."""
        if run.experiment is None or run.setting is None:
            return None
        experiment = experiments.get(run.experiment)
        if experiment is None or not experiment.spec.prune or experiment.status != "running":
            return None
        spec = experiment.spec
        if run.config.seed != spec.seeds[0]:
            return None
        first_draw = next((e for e in experiments.trials(run.experiment) if e.setting == run.setting), None)
        if first_draw is None:
            return None
        study = load_study(redis_url, run.experiment, spec)
        return cls(trial_of(study, first_draw.number), spec.objective)

    def observe(self, record: dict[str, Any]) -> None:
        if record.get("kind") != "eval" or record.get("split") != "val" or self.pruned_at is not None:
            return
        objective = "error_scan" if self.objective == "val_error_scan" else "error_softmax"
        epoch = record["epoch"]
        self.trial.report(record[objective], step=epoch)  # a resumed run's repeats are ignored by Optuna
        if self.trial.should_prune():
            self.pruned_at = epoch
            value = record[objective]
            log.info("trial %d pruned at epoch %d (%s %.4f)", self.trial.number, epoch, objective, value)

    @property
    def pruned(self) -> bool:
        return self.pruned_at is not None
