"""An experiment's Optuna study, kept in the product's Redis as an Optuna journal (no new server).

Only the worker imports this module (it imports optuna): its coordinator asks the study for
settings and tells it their outcomes, and its training loop reports the first seed's validation
errors to the pruner. The sampler and the pruner are not stored by Optuna: both are rebuilt from
the experiment's spec on every load, as ffcore.sweep builds them for a local sweep.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator
from typing import Any

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalRedisBackend, JournalStorage

from ffcore.experiment import ExperimentSpec
from ffcore.sweep import SAMPLER_SEED, grid_space, make_pruner, make_sampler
from fflab.store.keys import optuna_prefix


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler stops its study once the grid is exhausted, which works only inside
    `study.optimize`; the coordinator asks and tells, and stops asking at the grid's size itself."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


class _JournalLogs(BaseJournalBackend):
    """Optuna's Redis journal backend without its snapshots: JournalStorage pickles snapshots into
    Redis and unpickles them when it loads, and FF Lab never unpickles what Redis holds. Replaying the
    log of a study of at most a thousand trials is cheap."""

    def __init__(self, url: str, prefix: str):
        with warnings.catch_warnings():  # "experimental": its interface is what this class pins down
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._backend = JournalRedisBackend(url, prefix=prefix)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        yield from self._backend.read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._backend.append_logs(logs)


def storage(redis_url: str, experiment_id: str) -> JournalStorage:
    return JournalStorage(_JournalLogs(redis_url, optuna_prefix(experiment_id)))


def load_study(
    redis_url: str, experiment_id: str, spec: ExperimentSpec, sampler_seed: int = 0
) -> optuna.Study:
    """The experiment's study (created on first use), with the spec's sampler and pruner.

    A sampler lives only as long as this Study object, and the coordinator loads the study afresh
    for each trial it asks: it passes a different `sampler_seed` each time (the number of trials so
    far), or a seeded random sampler would draw the same setting again and again. A grid keeps one
    seed: its sampler shuffles the grid with it and hands trial n the n-th point, so the order must
    stay the same from one load to the next.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=experiment_id,
        storage=storage(redis_url, experiment_id),
        sampler=(
            _AskTellGridSampler(grid_space(spec), seed=SAMPLER_SEED)
            if spec.search == "grid"
            else make_sampler(spec, seed=sampler_seed)
        ),
        pruner=make_pruner(spec),
        direction="minimize",
        load_if_exists=True,
    )


def trial_of(study: optuna.Study, number: int) -> optuna.Trial:
    """A live handle on trial `number` of `study`, for reporting to the pruner from another process."""
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.Trial(study, trial_id)
