"""Experiments: submit seed groups and sweeps, follow them, export their tables, cancel and delete them.

The API records an experiment and asks a worker to start it; from then on the workers' coordinator
(worker.coordinator) queues its runs and ends it. Its runs are ordinary runs (GET /runs?experiment=).
"""

from __future__ import annotations

import itertools
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import ValidationError

from api.deps import (
    CeleryDep,
    ExperimentId,
    ExperimentsDep,
    ModelCacheDep,
    SettingsDep,
    StoreDep,
    experiment_not_found,
    require_api_key,
)
from api.errors import unqueued
from api.routes.runs import check_queue_quota
from api.schemas import (
    ErrorOut,
    Experiment,
    ExperimentCreate,
    ExperimentList,
    ExperimentProgress,
    ExperimentStatus,
    ExperimentSummary,
)
from ffcore.experiment import ExperimentSpec, check_limits
from fflab.limits import LIMITED_FIELDS, limit_problems, limited_combinations
from fflab.queue import enqueue_advance
from fflab.settings import Settings
from fflab.store.experiments import ExperimentLocked, ExperimentStore, counts
from fflab.store.keys import FINISHED, ExperimentRecord
from fflab.store.runs import RunStore

log = logging.getLogger(__name__)

router = APIRouter(prefix="/experiments", tags=["experiments"])

NOT_FOUND = {404: {"model": ErrorOut, "description": "No experiment with this id."}}
# Each combination costs a RunConfig and a size estimate (a fraction of a millisecond): a bound on the
# time a submission takes.
MAX_COMBINATIONS_CHECKED = 1_000


def get_or_404(experiments: ExperimentStore, experiment_id: str) -> ExperimentRecord:
    record = experiments.get(experiment_id)
    if record is None:
        raise experiment_not_found(experiment_id)
    return record


def check_server_limits(spec: ExperimentSpec, settings: Settings) -> None:
    """422 unless every run the spec can make is one POST /runs would take, and the search is small
    enough (FF_MAX_TRIALS). Checked: the base; each listed value and each end of each range alone on
    top of it; every setting of a grid; and for a random or tpe search, which may draw any values
    together, every combination of the values (range ends) of the settings the limits depend on."""
    try:
        check_limits(spec, settings.max_trials)
    except ValueError as error:
        raise HTTPException(status_code=422, detail=f"{error} (FF_MAX_TRIALS)") from None
    base_problems = limit_problems(spec.base_config(), settings)
    candidates: list[tuple[str, dict]] = []
    choices = {
        name: param.values if param.values is not None else [param.low, param.high]
        for name, param in spec.params.items()
    }
    for name, values in choices.items():
        candidates += [(f"params.{name}", {name: value}) for value in values]
    if spec.search == "grid":
        candidates += [("params", setting) for setting in spec.grid()]
    else:
        combinations = list(itertools.islice(limited_combinations(choices), MAX_COMBINATIONS_CHECKED + 1))
        if len(combinations) > MAX_COMBINATIONS_CHECKED:
            varied = ", ".join(name for name in choices if name in LIMITED_FIELDS)
            raise HTTPException(
                status_code=422,
                detail=f"params: the values of {varied} make more than {MAX_COMBINATIONS_CHECKED:,} "
                "combinations to check against the server's limits; list fewer values",
            )
        candidates += [("params", setting) for setting in combinations]
    problems = [f"base: {p}" for p in base_problems]
    for where, setting in candidates:
        try:
            config = spec.run_config(setting, spec.seeds[0])
        except (ValidationError, ValueError):
            continue  # a random draw RunConfig refuses fails as a setting (see ExperimentSpec)
        # What the base is refused for is said once, for the base.
        problems += [
            f"{where}: {setting}: {p}" for p in limit_problems(config, settings) if p not in base_problems
        ]
    if problems:
        raise HTTPException(status_code=422, detail="; ".join(dict.fromkeys(problems)))


def _all_run_ids(experiments: ExperimentStore, store: RunStore, experiment_id: str) -> list[str]:
    """Its runs: those its coordinator recorded, and any it made without recording them (it died
    between sending a run's task and recording it)."""
    recorded = list(experiments.run_ids(experiment_id).values())
    made = [r.id for r in store.list_runs(experiment=experiment_id, limit=100_000)[0]]
    return list(dict.fromkeys(recorded + made))


def summary_fields(experiments: ExperimentStore, record: ExperimentRecord) -> dict:
    table = experiments.table(record)
    spec = record.spec
    best = table.best_setting
    progress = ExperimentProgress(
        settings_planned=spec.planned_trials(),
        settings_started=len(table.settings),
        settings_finished=sum(s.status != "running" for s in table.settings),
        **counts(table),
    )
    return {
        **record.model_dump(exclude={"spec"}),
        "search": spec.search,
        "objective": spec.objective,
        "params": list(spec.params),
        "seeds": spec.seeds,
        "progress": progress,
        "best": table.best,
        "best_params": best.params if best else None,
        "best_objective": best.stats[spec.objective] if best else None,
        "spec": spec,
        "table": table,
    }


def full(experiments: ExperimentStore, record: ExperimentRecord) -> Experiment:
    return Experiment.model_validate(summary_fields(experiments, record))


@router.post(
    "",
    status_code=201,
    response_model=Experiment,
    dependencies=[Depends(require_api_key)],
    responses={
        422: {"model": ErrorOut, "description": "The spec is invalid or over a limit."},
        429: {"model": ErrorOut, "description": "FF_MAX_QUEUED runs are already queued."},
    },
    summary="Start an experiment",
)
def create_experiment(
    body: ExperimentCreate,
    experiments: ExperimentsDep,
    store: StoreDep,
    celery: CeleryDep,
    settings: SettingsDep,
) -> Experiment:
    """Train each setting of `params` once per seed, across the workers, at most `max_parallel` runs at
    once; rank the settings by the mean over their seeds of the `objective` (a validation error). The
    base is a preset with overrides or a full config, as in POST /runs, within the same server limits;
    a search may try at most FF_MAX_TRIALS settings. See ffcore/experiment.py for every field. Its runs
    share the queue's bound: it is refused (429) while FF_MAX_QUEUED runs wait, and a running experiment
    queues its next runs only while there is room."""
    spec = ExperimentSpec.model_validate(body.model_dump(exclude={"name"}))
    check_server_limits(spec, settings)
    check_queue_quota(store, settings)
    record = experiments.create(spec, name=body.name)
    try:
        enqueue_advance(celery, record.id)
    except Exception as error:  # removed again, as an unqueued run is (api.errors.unqueued)
        log.exception("could not start experiment %s", record.id)
        raise unqueued("experiment", error, undo=lambda: experiments.delete(record.id)) from error
    log.info("experiment %s: %s search over %s", record.id, spec.search, ", ".join(spec.params))
    return full(experiments, record)


@router.get("", response_model=ExperimentList, summary="List experiments, newest first")
def list_experiments(
    experiments: ExperimentsDep,
    status: Annotated[ExperimentStatus | None, Query(description="Only those with this status.")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ExperimentList:
    records, total = experiments.list(status=status, offset=offset, limit=limit)
    items = [ExperimentSummary.model_validate(summary_fields(experiments, r)) for r in records]
    return ExperimentList(experiments=items, total=total, offset=offset, limit=limit)


@router.get("/{experiment_id}", response_model=Experiment, responses=NOT_FOUND, summary="One experiment")
def get_experiment(experiment_id: ExperimentId, experiments: ExperimentsDep) -> Experiment:
    """Its status, progress and results table: per setting its runs, and the mean and standard deviation
    over its succeeded runs of the validation and test errors of both heads; the best setting."""
    return full(experiments, get_or_404(experiments, experiment_id))


@router.get(
    "/{experiment_id}/table.csv",
    response_class=Response,
    responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}, "description": "One row per setting."}},
    summary="An experiment's results table as CSV",
)
def get_table_csv(experiment_id: ExperimentId, experiments: ExperimentsDep) -> Response:
    """Columns: trial, status, one per param (JSON-encoded values), runs, succeeded, then the mean and
    standard deviation of each error (val/test, scan/softmax) over the succeeded runs; empty when
    unknown. The same numbers as the JSON table."""
    record = get_or_404(experiments, experiment_id)
    return Response(
        content=experiments.table(record).to_csv(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="experiment-{experiment_id}.csv"'},
    )


@router.post(
    "/{experiment_id}/cancel",
    response_model=Experiment,
    dependencies=[Depends(require_api_key)],
    responses={**NOT_FOUND, 409: {"model": ErrorOut, "description": "The experiment already ended."}},
    summary="Cancel an experiment and its queued and running runs",
)
def cancel_experiment(
    experiment_id: ExperimentId, experiments: ExperimentsDep, store: StoreDep, celery: CeleryDep
) -> Experiment:
    """No new run starts; queued runs are cancelled at once, running ones stop within seconds. Runs that
    ended keep their results. Cancelling a cancelled experiment changes nothing."""
    before = experiments.finish(experiment_id, "cancelled")
    if before is None:
        raise experiment_not_found(experiment_id)
    if before in ("succeeded", "failed"):
        raise HTTPException(status_code=409, detail=f"experiment {experiment_id!r} already {before}")
    for run_id in _all_run_ids(experiments, store, experiment_id):
        if store.cancel_run(run_id) == "queued":
            try:
                celery.control.revoke(run_id)
            except Exception:  # the worker skips a cancelled run anyway
                log.warning("could not revoke the task of run %s", run_id, exc_info=True)
    log.info("experiment %s cancelled (was %s)", experiment_id, before)
    return full(experiments, get_or_404(experiments, experiment_id))


@router.delete(
    "/{experiment_id}",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(require_api_key)],
    responses={
        **NOT_FOUND,
        409: {"model": ErrorOut, "description": "The experiment or one of its runs has not ended."},
    },
    summary="Delete an ended experiment, its runs and their data",
)
def delete_experiment(
    experiment_id: ExperimentId, experiments: ExperimentsDep, store: StoreDep, model_cache: ModelCacheDep
) -> Response:
    """Removes the experiment, its Optuna study and all its runs. A running experiment must be cancelled
    first, and its runs must have stopped."""
    record = get_or_404(experiments, experiment_id)
    if record.status == "running":
        raise HTTPException(
            status_code=409,
            detail=f"experiment {experiment_id!r} is running; cancel it first "
            f"(POST /api/v1/experiments/{experiment_id}/cancel)",
        )
    busy = HTTPException(
        status_code=409, detail=f"experiment {experiment_id!r} is being advanced; try again in a few seconds"
    )
    try:
        # Under the coordinator's lock: a pass that started before the cancel must not write after this.
        with experiments.lock(experiment_id, ttl_s=60):
            run_ids = _all_run_ids(experiments, store, experiment_id)
            runs = [store.get_run(i) for i in run_ids]
            unfinished = [r.id for r in runs if r is not None and r.status not in FINISHED]
            if unfinished:
                raise HTTPException(
                    status_code=409,
                    detail=f"{len(unfinished)} of its runs are still stopping ({', '.join(unfinished[:5])}); "
                    "try again in a few seconds",
                )
            experiments.delete(experiment_id)
            for run_id in run_ids:
                store.delete_run(run_id)
                model_cache.invalidate(run_id)
    except ExperimentLocked:
        raise busy from None
    log.info("deleted experiment %s and its %d runs", experiment_id, len(run_ids))
    return Response(status_code=204)
