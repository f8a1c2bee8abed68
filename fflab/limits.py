"""The server's limits on a run's configuration (FF_MAX_* settings), for the API and the worker alike.

The API refuses a run, or an experiment that could make one, over these limits; the worker's
experiment coordinator fails a drawn setting over them instead of training it, in case the limits
changed since the experiment was submitted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from ffcore.checkpoint import training_state_bytes
from ffcore.config import RunConfig
from fflab.settings import Settings

# The RunConfig fields limit_problems reads, itself or through training_state_bytes: an experiment's
# values of these are checked together, since only their combination can be over a limit.
LIMITED_FIELDS = ("data_dir", "hidden", "head_layers", "optimizer", "momentum", "epochs")


def limit_problems(config: RunConfig, settings: Settings) -> list[str]:
    """What in `config` this server does not allow (FF_MAX_* limits, a data_dir); empty when nothing.

    A network's training state is checkpointed to Redis as one value after every epoch; one larger
    than Redis takes could never be saved, and its run would fail (or be retried) at its first epoch
    end, so it is refused before it trains."""
    if config.data_dir is not None:
        # A client must not point the worker at paths on its machine; the worker's FF_DATA_DIR decides.
        return ["data_dir: set by the server (FF_DATA_DIR); leave it out"]
    problems = []
    if len(config.hidden) > settings.max_layers:
        problems.append(f"hidden: at most {settings.max_layers} layers allowed, got {len(config.hidden)}")
    if max(config.hidden) > settings.max_units:
        problems.append(
            f"hidden: at most {settings.max_units} units per layer allowed, got {max(config.hidden)}"
        )
    if config.epochs > settings.max_epochs:
        problems.append(f"epochs: at most {settings.max_epochs} allowed, got {config.epochs}")
    if not problems:  # the size of a network within the other limits
        state_mb = training_state_bytes(config) / 1e6
        if state_mb > settings.max_state_mb:
            problems.append(
                f"hidden: this network's training state (weights and {config.optimizer} buffers) would be "
                f"{state_mb:,.0f} MB, more than the {settings.max_state_mb} MB a run may checkpoint "
                "(FF_MAX_STATE_MB); use fewer or narrower layers"
            )
    return problems


def limited_combinations(choices: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of the values in `choices` (setting -> candidate values) of the settings in
    LIMITED_FIELDS, each as {setting: value}; nothing when fewer than two of them vary (each value
    alone is checked on its own)."""
    limited = {name: values for name, values in choices.items() if name in LIMITED_FIELDS}
    if len(limited) < 2:
        return
    names = list(limited)
    for values in itertools.product(*(limited[name] for name in names)):
        yield dict(zip(names, values, strict=True))
