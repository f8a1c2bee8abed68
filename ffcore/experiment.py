"""Experiments: one spec for seed groups and sweeps, and the table of their results.

An `ExperimentSpec` names a base configuration, the settings to vary (`params`), how to search them
(`grid`, `random` or `tpe`), the seeds every setting is trained with, and the validation error to
minimise. Each setting is trained once per seed; the `ExperimentTable` holds every run and, per
setting, the mean and standard deviation of its errors over its completed runs (ffcore.experiment_table).

This module imports pydantic and ffcore.config only (no torch, no optuna), so that the API can
validate specs cheaply; ffcore.sweep runs a spec locally, and the service fans its runs out over
its workers, both with the same pruning rule (see `ExperimentSpec.prune`).
"""

from __future__ import annotations

import itertools
import json
import math
import types
import typing
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from ffcore.config import PRESETS, RunConfig, RunRequestError, resolve_run_config

# The most settings one experiment may try, whoever runs it; callers can pass a tighter limit
# (`ExperimentSpec.model_validate(data, context={"max_trials": n})` or `check_limits(spec, n)`).
MAX_TRIALS = 1000
MAX_SEEDS = 100
# Settings of RunConfig an experiment may not vary: the seeds have their own field, and where the
# data lives and what trains it are up to whoever runs the experiment.
NOT_SEARCHABLE = {
    "seed": "use `seeds` to train every setting with several seeds",
    "data_dir": "the runner decides where the data lives",
    "device": "the runner decides where to train",
    "validation": "the objective is a validation error, so every run keeps validation='holdout'",
}
# The pruner's patience (Optuna's MedianPruner): no setting is pruned before this many settings have
# completed, nor before its first seed has been evaluated after this many epochs.
PRUNE_STARTUP_TRIALS = 3
PRUNE_WARMUP_EPOCHS = 2

Objective = Literal["val_error_scan", "val_error_softmax"]
ERRORS = ("val_error_scan", "val_error_softmax", "test_error_scan", "test_error_softmax")


def searchable_settings() -> list[str]:
    return [name for name in RunConfig.model_fields if name not in NOT_SEARCHABLE]


def numeric_kind(name: str) -> type | None:
    """int or float for a numeric RunConfig field (optional ones included), else None."""
    annotation = RunConfig.model_fields[name].annotation
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    kinds = [arg for arg in args if arg is not type(None)]
    if len(kinds) == 1 and kinds[0] in (int, float):
        return kinds[0]
    return None


class BaseSpec(BaseModel):
    """The configuration every setting starts from: a preset with overrides, or a full `config`
    (not both), as in POST /runs."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field(
        None, description=f"A preset name: {', '.join(PRESETS)}. Leave out when giving `config`."
    )
    overrides: dict[str, Any] | None = Field(
        None, description='Settings of RunConfig to change on top of the preset, e.g. {"epochs": 3}.'
    )
    config: RunConfig | None = Field(None, description="A full run configuration.")

    @model_validator(mode="after")
    def _check(self) -> BaseSpec:
        self.resolve()
        return self

    def resolve(self) -> RunConfig:
        try:
            return resolve_run_config(self.preset, self.overrides, self.config)[0]
        except ValidationError as error:
            raise ValueError(f"base.overrides: {describe_spec_error(error)}") from None
        except RunRequestError as error:
            raise ValueError(f"base.{error}" if error.part else f"base: {error.message}") from None


class ParamSpec(BaseModel):
    """One setting to vary: listed `values`, or a range `low`..`high` (random and tpe only)."""

    model_config = ConfigDict(extra="forbid")

    values: list[Any] | None = Field(None, min_length=1, description="The values to try.")
    low: float | None = Field(
        None, allow_inf_nan=False, description="Smallest value of a range (numeric settings only)."
    )
    high: float | None = Field(None, allow_inf_nan=False, description="Largest value of a range.")
    log: bool = Field(False, description="Sample the range on a log scale (low must be > 0).")
    step: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Sample the range in steps of this size."
    )

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.values is not None:
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("give either `values` or a range (`low`, `high`, `log`, `step`), not both")
            if len({json.dumps(v, sort_keys=True) for v in self.values}) != len(self.values):
                raise ValueError(f"values: each value may appear once, got {self.values}")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give `values` (a list) or a range with both `low` and `high`")
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError("a range takes `log` or `step`, not both")
        return self

    @property
    def is_range(self) -> bool:
        return self.values is None


class ExperimentSpec(BaseModel):
    """Seed groups and sweeps: every setting of `params`, trained once per seed.

    Every listed value and both ends of every range are checked against RunConfig on top of the
    base, and so is every setting of a grid; a random or tpe combination that RunConfig refuses
    (e.g. widths and scan_layers that do not fit) fails as a setting when it is drawn.
    """

    model_config = ConfigDict(extra="forbid")

    base: BaseSpec = Field(
        default_factory=BaseSpec, description="The configuration every setting starts from."
    )
    search: Literal["grid", "random", "tpe"] = Field(
        "grid",
        description="'grid': every combination of the listed values; 'random' and 'tpe' (Optuna's "
        "Tree-structured Parzen Estimator): `max_trials` settings drawn from the values and ranges.",
    )
    params: dict[str, ParamSpec] = Field(description="Setting name -> its values or range.")
    seeds: list[int] = Field(
        [0, 1, 2],
        min_length=1,
        max_length=MAX_SEEDS,
        description="Every setting is trained once per seed.",
    )
    objective: Objective = Field(
        "val_error_scan", description="The validation error whose mean over the seeds ranks the settings."
    )
    max_trials: int | None = Field(
        None,
        ge=1,
        description="Most settings to try: required for random and tpe; a grid may not be larger.",
    )
    max_parallel: int = Field(
        1,
        ge=1,
        le=64,
        description="Most runs at once in the service (a local sweep runs one at a time).",
    )
    prune: bool = Field(
        True,
        description="Stop hopeless settings early (Optuna's MedianPruner): the first seed's validation "
        "error at each evaluation is compared with the completed settings' at the same epoch; a pruned "
        "setting's remaining seeds are not run.",
    )
    start_with: list[dict[str, Any]] = Field(
        [],
        description="random and tpe: settings to try first (e.g. a known good one), each giving a value "
        "for every param; they count towards max_trials.",
    )

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> ExperimentSpec:
        base = self.base.resolve()
        if not self.params:
            raise ValueError("params: name at least one setting to vary (for a seed group, list one value)")
        if base.validation == "none" and not self.is_seed_group():
            raise ValueError(
                f"base: validation='none' leaves no validation set, but the objective {self.objective} "
                "is a validation error that chooses between settings; keep validation='holdout' (only a "
                "seed group, one listed value per param, may train on all 60k)"
            )
        allowed = searchable_settings()
        for name, param in self.params.items():
            if name in NOT_SEARCHABLE:
                raise ValueError(f"params.{name}: may not be varied ({NOT_SEARCHABLE[name]})")
            if name not in RunConfig.model_fields:
                raise ValueError(f"params: unknown setting {name!r}; allowed are {', '.join(allowed)}")
            self._check_param(base, name, param)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: each seed may appear once, got {self.seeds}")
        bad_seeds = [s for s in self.seeds if not 0 <= s < 2**63]
        if bad_seeds:
            raise ValueError(f"seeds: each seed must be between 0 and 2**63-1, got {bad_seeds}")
        if self.search == "grid":
            ranges = [name for name, param in self.params.items() if param.is_range]
            if ranges:
                raise ValueError(
                    f"params.{ranges[0]}: grid search takes listed values only; give `values`, "
                    "or use search 'random' or 'tpe' for a range"
                )
            if self.start_with:
                raise ValueError("start_with: grid search tries every setting; use it with random or tpe")
            if self.max_trials is not None and self.grid_size() > self.max_trials:
                raise ValueError(
                    f"max_trials: the grid has {self.grid_size()} settings, more than {self.max_trials}"
                )
            # Before the grid is built: a few values of a few params make billions of settings.
            check_limits(self, max_trials=(info.context or {}).get("max_trials", MAX_TRIALS))
            for setting in self.grid():
                self._check_setting(base, setting, "params")
        else:
            if self.max_trials is None:
                raise ValueError(f"max_trials: {self.search} search needs the most settings to try")
            if len(self.start_with) > self.max_trials:
                raise ValueError(
                    f"start_with: {len(self.start_with)} settings, more than max_trials={self.max_trials}"
                )
            for i, setting in enumerate(self.start_with):
                self._check_start(base, i, setting)
        limit = (info.context or {}).get("max_trials", MAX_TRIALS)
        check_limits(self, max_trials=limit)
        return self

    def _check_param(self, base: RunConfig, name: str, param: ParamSpec) -> None:
        if not param.is_range:
            seen: dict[str, Any] = {}  # each value as RunConfig reads it (1, 1.0, "1" and true: epochs 1)
            for value in param.values or []:
                read = getattr(self._check_setting(base, {name: value}, f"params.{name}"), name)
                first = seen.setdefault(_json(read), value)
                if first is not value:
                    raise ValueError(
                        f"params.{name}: {first!r} and {value!r} are the same {name} ({read!r}); "
                        "list each value once"
                    )
            return
        kind = numeric_kind(name)
        if kind is None:
            raise ValueError(f"params.{name}: a range needs a numeric setting; list the `values` to try")
        if kind is int:
            bad = [v for v in (param.low, param.high, param.step) if v is not None and v != int(v)]
            if bad:
                raise ValueError(f"params.{name}: an integer setting's range needs whole numbers, got {bad}")
        for end in (param.low, param.high):
            self._check_setting(base, {name: kind(end)}, f"params.{name}")

    @staticmethod
    def _check_setting(base: RunConfig, setting: dict[str, Any], where: str) -> RunConfig:
        try:
            return RunConfig.model_validate({**base.model_dump(), **setting})
        except ValidationError as error:
            raise ValueError(f"{where}: {setting} is not allowed: {describe_spec_error(error)}") from None

    def _check_start(self, base: RunConfig, i: int, setting: dict[str, Any]) -> None:
        where = f"start_with[{i}]"
        if set(setting) != set(self.params):
            names = ", ".join(self.params)
            raise ValueError(f"{where}: give a value for each of {names}, got {list(setting)}")
        for name, value in setting.items():
            param = self.params[name]
            if not param.is_range and _json(value) not in {_json(v) for v in param.values or []}:
                raise ValueError(f"{where}.{name}: {value!r} is not one of the listed values {param.values}")
            if param.is_range and not (  # (a bool is an int to Python, not a number of a range)
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and param.low <= value <= param.high  # type: ignore[operator]
            ):
                raise ValueError(f"{where}.{name}: {value!r} is outside {param.low}..{param.high}")
            if param.is_range and numeric_kind(name) is int and value != int(value):
                raise ValueError(f"{where}.{name}: {name} takes whole numbers, got {value!r}")
        self._check_setting(base, setting, where)

    # --- what to run --------------------------------------------------------------------------

    def grid_size(self) -> int:
        """How many settings the listed values make (ranges count as one)."""
        return math.prod(len(p.values) if p.values is not None else 1 for p in self.params.values())

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the listed values, in the order of `params` (grid search only)."""
        if any(p.is_range for p in self.params.values()):
            raise ValueError("only listed values make a grid")
        names = list(self.params)
        combos = itertools.product(*(self.params[name].values or [] for name in names))
        return [dict(zip(names, combo, strict=True)) for combo in combos]

    def is_seed_group(self) -> bool:
        """One setting trained with several seeds: nothing to choose, so no validation set is needed."""
        params = self.params.values()
        return self.search == "grid" and all(p.values is not None and len(p.values) == 1 for p in params)

    def planned_trials(self) -> int:
        """The most settings this experiment tries."""
        if self.search == "grid":
            return self.grid_size() if self.max_trials is None else min(self.grid_size(), self.max_trials)
        assert self.max_trials is not None
        return self.max_trials

    def base_config(self) -> RunConfig:
        return self.base.resolve()

    def run_config(self, setting: dict[str, Any], seed: int, **updates: Any) -> RunConfig:
        """The configuration of `setting` trained with `seed`; `updates` (e.g. data_dir, device) last."""
        unknown = set(setting) - set(self.params)
        if unknown:
            raise ValueError(f"setting names {sorted(unknown)} are not params of this experiment")
        return RunConfig.model_validate(
            {**self.base_config().model_dump(), **setting, "seed": seed, **updates}
        )


def check_limits(spec: ExperimentSpec, max_trials: int = MAX_TRIALS) -> None:
    """Refuse a spec that would try more settings than `max_trials` (never more than MAX_TRIALS)."""
    limit = min(max_trials, MAX_TRIALS)
    if spec.max_trials is not None and spec.max_trials > limit:
        raise ValueError(f"max_trials: at most {limit} settings allowed, got {spec.max_trials}")
    if spec.search == "grid" and spec.grid_size() > limit:
        raise ValueError(f"params: the grid has {spec.grid_size()} settings; at most {limit} allowed")


def describe_spec_error(error: ValidationError) -> str:
    """One readable line for a refused spec: 'where: what is wrong', problems joined by '; '."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "value_error":  # our own messages name their field already
            message = str(item["ctx"]["error"])
            lines.append(f"{where}: {message}" if where and not message.startswith(where) else message)
        else:
            lines.append(f"{where or 'config'}: {item['msg']}")
    return "; ".join(lines)


def _json(value: Any) -> str:
    """A value as JSON text: how listed values are told apart (1, 1.0 and true are three values)."""
    return json.dumps(value, sort_keys=True)
