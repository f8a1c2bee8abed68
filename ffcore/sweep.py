"""Run an ExperimentSpec locally: one Optuna trial per setting, its seeds trained one after another.

The sampler follows the spec's `search` (Grid, Random or TPE, seeded: a sweep is reproducible).
Listed values reach Optuna as categorical choices of their JSON text, so any value can be listed.
A setting's value for Optuna is the mean over its seeds of the objective's last validation error.

Pruning (the rule the service follows too): the first seed's validation error at each evaluation
is reported to Optuna's MedianPruner; when it says prune, that run stops, the setting's remaining
seeds are not run and the setting stays in the table marked 'pruned'. A setting drawn again is not
trained again: its trial takes the first outcome. A local sweep runs one run at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from pydantic import ValidationError

from ffcore.checkpoint import load_training_state, save_training_state, write_atomically
from ffcore.config import RunConfig
from ffcore.data import DataError, Dataset, load_dataset
from ffcore.device import resolve_device
from ffcore.experiment import (
    PRUNE_STARTUP_TRIALS,
    PRUNE_WARMUP_EPOCHS,
    ExperimentSpec,
    describe_spec_error,
    numeric_kind,
)
from ffcore.experiment_table import ExperimentTable, RunOutcome, SettingResult
from ffcore.run_folder import METRICS_FILE, STATE_FILE
from ffcore.train import Trainer

log = logging.getLogger(__name__)

SAMPLER_SEED = 0
TABLE_JSON = "table.json"
TABLE_CSV = "table.csv"
SPEC_FILE = "spec.json"
RUNS_DIR = "runs"  # one folder per run: runs/<setting index>-seed<seed>/
OUTCOME_FILE = "outcome.json"
SETTING_FILE = "setting.json"

RunEndCallback = Callable[[ExperimentTable, SettingResult, RunOutcome], None]


class ResumeMismatch(ValueError):
    """The sweep folder being resumed holds runs of other settings than this sweep draws."""


class _SettingFailed(Exception):
    """A run of the setting failed; the trial is marked failed and the sweep goes on."""


def grid_space(spec: ExperimentSpec) -> dict[str, list[str]]:
    """GridSampler's search space: each param's listed values as their JSON texts."""
    return {name: [_encode(v) for v in p.values or []] for name, p in spec.params.items()}


def make_sampler(spec: ExperimentSpec, seed: int = SAMPLER_SEED) -> optuna.samplers.BaseSampler:
    if spec.search == "grid":
        return optuna.samplers.GridSampler(grid_space(spec), seed=seed)
    if spec.search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(
    spec: ExperimentSpec, startup_trials: int = PRUNE_STARTUP_TRIALS, warmup_epochs: int = PRUNE_WARMUP_EPOCHS
) -> optuna.pruners.BasePruner:
    if not spec.prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)


def _encode(value: Any) -> str:
    return json.dumps(value)


def encode_setting(spec: ExperimentSpec, setting: dict[str, Any]) -> dict[str, Any]:
    """A setting (e.g. of start_with) as Optuna stores its params: listed values as their JSON text."""
    return {
        name: _encode(value)
        if spec.params[name].values is not None
        else (int(value) if numeric_kind(name) is int else float(value))
        for name, value in setting.items()
    }


def decode_params(spec: ExperimentSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's params as Optuna stored them, back as a setting (the inverse of `encode_setting`)."""
    return {
        name: json.loads(value) if spec.params[name].values is not None else value
        for name, value in params.items()
    }


def suggest_setting(spec: ExperimentSpec, trial: optuna.Trial) -> dict[str, Any]:
    """The trial's setting: a listed value (chosen among the values' JSON texts) or a range's value."""
    setting: dict[str, Any] = {}
    for name, param in spec.params.items():
        if param.values is not None:
            setting[name] = json.loads(trial.suggest_categorical(name, [_encode(v) for v in param.values]))
            continue
        assert param.low is not None and param.high is not None
        if numeric_kind(name) is int:
            step = int(param.step) if param.step is not None else 1
            setting[name] = trial.suggest_int(name, int(param.low), int(param.high), step=step, log=param.log)
        else:
            setting[name] = trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
    return setting


def run_sweep(
    spec: ExperimentSpec,
    *,
    data_dir: str | None = None,
    device: str | None = "auto",
    dataset: Dataset | None = None,
    on_run_end: RunEndCallback | None = None,
    prune_startup_trials: int = PRUNE_STARTUP_TRIALS,
    prune_warmup_epochs: int = PRUNE_WARMUP_EPOCHS,
    sampler_seed: int = SAMPLER_SEED,
    out: Path | None = None,
) -> ExperimentTable:
    """Run `spec` here, one run at a time, and return its table.

    `data_dir` and `device` replace the base configuration's (None keeps it); `dataset` (already
    loaded) replaces loading the data (tests). Without it, each (dataset, validation) pair is loaded
    once and shared by the runs. `on_run_end(table, setting, run)` is called after each run. The pruner's
    patience and the sampler's seed can be changed for tests; a pruned setting's runs after the
    first seed are not run.

    With `out`, each run keeps its metrics, state and outcome in `out/runs/<setting>-seed<seed>/`;
    a sweep started again on the same `out` takes the runs that finished, continues the one that was
    interrupted from its last epoch, and (its samplers being seeded) tries the same settings.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    updates: dict[str, Any] = {}
    if device is not None:
        updates["device"] = device
    if data_dir is not None:
        updates["data_dir"] = data_dir
    torch_device = resolve_device(updates.get("device", spec.base_config().device))
    datasets: dict[tuple[str, str], Dataset] = {}
    table = ExperimentTable(spec=spec)
    by_key: dict[str, SettingResult] = {}

    def data_for(config: RunConfig) -> Dataset:
        if dataset is not None:
            return dataset
        key = (config.dataset, config.validation)
        if key not in datasets:
            datasets[key] = load_dataset(config, torch_device)
        return datasets[key]

    def objective(trial: optuna.Trial) -> float:
        setting = suggest_setting(spec, trial)
        key = json.dumps(setting, sort_keys=True)
        if key in by_key:  # drawn again: take the first outcome
            return _outcome(by_key[key], spec)
        result = SettingResult(trial=trial.number, params=setting, status="succeeded")
        by_key[key] = result
        table.settings.append(result)
        log.info("trial %d: %s", trial.number, setting)
        index = len(table.settings) - 1
        for i, seed in enumerate(spec.seeds):
            folder = None if out is None else out / RUNS_DIR / f"{index:03d}-seed{seed}"
            run = _train(spec, setting, seed, updates, data_for, trial if i == 0 else None, folder)
            result.runs.append(run)
            if on_run_end is not None:
                on_run_end(table, result, run)
            if run.status != "succeeded" or (i == 0 and trial.should_prune() and spec.prune):
                result.status = "failed" if run.status == "failed" else "pruned"
                break
        if result.status == "succeeded":
            stat = result.stats[spec.objective]
            log.info("trial %d: %s %s ± %s", trial.number, spec.objective, _fmt(stat.mean), _fmt(stat.std))
        else:
            log.info("trial %d: %s", trial.number, result.status)
        return _outcome(result, spec)

    study = optuna.create_study(
        direction="minimize",
        sampler=make_sampler(spec, sampler_seed),
        pruner=make_pruner(spec, prune_startup_trials, prune_warmup_epochs),
    )
    for setting in spec.start_with:
        study.enqueue_trial(encode_setting(spec, setting))
    study.optimize(objective, n_trials=spec.planned_trials(), catch=(_SettingFailed,))
    return table


def _outcome(result: SettingResult, spec: ExperimentSpec) -> float:
    """The trial's value, or the exception that marks it pruned or failed."""
    if result.status == "pruned":
        raise optuna.TrialPruned()
    if result.status == "failed":
        raise _SettingFailed(next(r.error for r in result.runs if r.status == "failed"))
    mean = result.stats[spec.objective].mean
    return 0.0 if mean is None else mean  # a seed group on all 60k: no validation error to rank by


def _train(
    spec: ExperimentSpec,
    setting: dict[str, Any],
    seed: int,
    updates: dict[str, Any],
    data_for: Callable[[RunConfig], Dataset],
    trial: optuna.Trial | None,
    folder: Path | None = None,
) -> RunOutcome:
    """Train one run; with `trial`, report its validation errors to the pruner and stop when told.

    With `folder`, the run keeps its metrics, its resumable state (every epoch) and its outcome
    there: a finished run is read back instead of trained again, an interrupted one continues from
    its state, and the records it had logged are replayed to the pruner first.
    """
    latest: dict[str, float] = {}
    prune = False
    metrics_file = None

    def on_metrics(record: dict[str, Any], replay: bool = False) -> None:
        nonlocal prune
        if metrics_file is not None and not replay:
            metrics_file.write(json.dumps(record) + "\n")
        if record["kind"] != "eval" or record["split"] != "val":
            return
        latest["val_error_scan"] = record["error_scan"]
        latest["val_error_softmax"] = record["error_softmax"]
        if trial is not None and spec.prune:
            trial.report(latest[spec.objective], step=record["epoch"])
            prune = trial.should_prune()

    def replay(records: list[dict[str, Any]]) -> None:
        for record in records:
            on_metrics(record, replay=True)

    try:
        config = spec.run_config(setting, seed, **updates)
        if folder is not None:
            _check_folder_setting(folder, setting)
        if folder is not None and (folder / OUTCOME_FILE).is_file():
            replay(_read_records(folder / METRICS_FILE))
            return RunOutcome.model_validate_json((folder / OUTCOME_FILE).read_text())
        if folder is not None and (folder / STATE_FILE).is_file():
            state = (folder / STATE_FILE).read_bytes()  # --device may differ from the state's: fine
            trainer = load_training_state(state, data_for(config), device=config.device)
            if trainer.config != config:
                raise ValueError(f"{folder / STATE_FILE} holds another configuration than this run's")
            records = [r for r in _read_records(folder / METRICS_FILE) if r.get("step", 0) <= trainer.step]
            log.info("setting %s, seed %d: resuming at epoch %d", setting, seed, trainer.epoch)
            replay(records)
            _write_records(folder / METRICS_FILE, records)
        else:
            trainer = Trainer(config, dataset=data_for(config))
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                _write_records(folder / METRICS_FILE, [])
        if folder is not None:
            metrics_file = open(folder / METRICS_FILE, "a")  # noqa: SIM115 (closed below)

        def save_state(t: Trainer) -> None:
            if metrics_file is not None and folder is not None:
                metrics_file.flush()
                write_atomically(folder / STATE_FILE, save_training_state(t))

        try:
            result = trainer.fit(on_metrics=on_metrics, on_epoch_end=save_state, should_stop=lambda: prune)
        finally:
            if metrics_file is not None:
                metrics_file.close()
    except (DataError, ResumeMismatch):  # no data, or the wrong folder: the caller says so
        raise
    except Exception as error:  # one bad run must not end the sweep; the table says what happened
        log.exception("setting %s, seed %d failed", setting, seed)
        outcome = RunOutcome(seed=seed, status="failed", error=f"{type(error).__name__}: {error}")
    else:
        outcome = RunOutcome(
            seed=seed,
            status="pruned" if result.stopped else "succeeded",
            test_error_scan=result.test_error_scan,
            test_error_softmax=result.test_error_softmax,
            epochs=result.epochs,
            **latest,
        )
    if folder is not None and outcome.status != "failed":  # a failed run is tried again on resume
        write_atomically(folder / OUTCOME_FILE, (outcome.model_dump_json(indent=2) + "\n").encode())
        (folder / STATE_FILE).unlink(missing_ok=True)  # finished: its outcome and metrics are what stays
    return outcome


def _check_folder_setting(folder: Path, setting: dict[str, Any]) -> None:
    """Record the run's setting in its folder, or check that the folder holds this setting's run: a
    resumed sweep whose sampler draws differently (a run that failed before succeeded this time, and
    TPE moved on) must not credit one setting's results to another."""
    path = folder / SETTING_FILE
    if path.is_file():
        found = json.loads(path.read_text())
        if json.dumps(found, sort_keys=True) != json.dumps(setting, sort_keys=True):
            raise ResumeMismatch(
                f"{folder} holds a run of {found}, but the resumed sweep draws {setting} there: it no "
                "longer follows the interrupted one; start it afresh with another --out"
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(setting, sort_keys=True) + "\n")


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_records(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# --- the command line ---------------------------------------------------------------------------


def load_spec(path: str) -> ExperimentSpec:
    """Read and validate a spec file; ValueError with one readable line when it is not valid."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from None
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as error:
        raise ValueError(f"{path}: invalid experiment spec: {describe_spec_error(error)}") from None


def prepare_out(spec: ExperimentSpec, out: Path, resume: bool) -> None:
    """Make `out` ready for `spec`; ValueError when it holds another sweep, or this one without `resume`."""
    saved = out / SPEC_FILE
    if saved.is_file():
        if not resume:
            raise ValueError(
                f"{out} already holds a sweep; pass --resume to continue it, or choose another --out"
            )
        try:
            previous = ExperimentSpec.model_validate_json(saved.read_text())
        except ValidationError:
            raise ValueError(f"{saved} is not a valid spec; choose another --out") from None
        if previous != spec:
            raise ValueError(f"{out} holds a sweep of another spec ({saved}); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(spec.model_dump_json(indent=2) + "\n")


def cmd_sweep(spec: ExperimentSpec, args: Any) -> int:
    """The `sweep` command's work, once ffcore.cli has read the spec (`load_spec`) and readied --out
    (`prepare_out`)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    trials, seeds = spec.planned_trials(), len(spec.seeds)
    log.info("sweep: %s search, up to %d settings x %d seeds", spec.search, trials, seeds)

    def write(table: ExperimentTable, *_: Any) -> None:  # after every run: a stopped sweep keeps its results
        (out / TABLE_JSON).write_text(table.to_json() + "\n")
        (out / TABLE_CSV).write_text(table.to_csv())

    table = run_sweep(spec, data_dir=args.data_dir, device=args.device, on_run_end=write, out=out)
    write(table)
    best = table.best_setting
    counts = {s: sum(r.status == s for r in table.settings) for s in ("succeeded", "pruned", "failed")}
    summary: dict[str, Any] = {"settings": len(table.settings), **counts, "out": str(out)}
    if best is not None:
        stat = best.stats[spec.objective]
        summary |= {"best": best.params, spec.objective: stat.mean, f"{spec.objective}_std": stat.std}
        print(f"best {best.params}: {spec.objective} {stat.mean:.4f} ± {_fmt(stat.std)} over {stat.n} seeds")
    # A seed group trained on all 60k has no validation error: its test errors are its result.
    group = table.settings[0] if spec.is_seed_group() and table.settings else None
    chosen = best or (group if group is not None and group.status == "succeeded" else None)
    if chosen is None:
        print("no setting had all its seeds succeed")
    else:
        for name in ("test_error_scan", "test_error_softmax"):
            stat = chosen.stats[name]
            if stat.mean is not None:
                summary |= {name: stat.mean, f"{name}_std": stat.std}
                print(f"{name} {stat.mean:.4f} ± {_fmt(stat.std)} over {stat.n} seeds")
    print(json.dumps(summary))
    return 0
