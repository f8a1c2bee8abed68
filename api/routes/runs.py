"""Runs: submit, list, inspect, cancel and delete training runs."""

from __future__ import annotations

import logging
from typing import Annotated

from celery import Celery
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import ValidationError

from api.deps import (
    CeleryDep,
    ModelCacheDep,
    RunId,
    SettingsDep,
    StoreDep,
    require_api_key,
    run_not_found,
)
from api.errors import describe_validation_errors, unqueued
from api.schemas import (
    MAX_TAG_LENGTH,
    ErrorOut,
    RunCreate,
    RunList,
    RunRecord,
    RunRerun,
    RunStatus,
    RunUpdate,
)
from ffcore.config import RunConfig, RunRequestError, resolve_run_config
from fflab.limits import limit_problems
from fflab.queue import enqueue_run
from fflab.settings import Settings
from fflab.store.keys import FINISHED
from fflab.store.keys import RunRecord as StoredRun
from fflab.store.runs import RunStore

log = logging.getLogger(__name__)

router = APIRouter(prefix="/runs", tags=["runs"])

NOT_FOUND = {404: {"model": ErrorOut, "description": "No run with this id."}}


def get_run_or_404(store: RunStore, run_id: str) -> StoredRun:
    record = store.get_run(run_id)
    if record is None:
        raise run_not_found(run_id)
    return record


def _invalid(message: str) -> HTTPException:
    return HTTPException(status_code=422, detail=message)


def resolve_config(body: RunCreate, settings: Settings) -> tuple[RunConfig, str | None]:
    """The run configuration a request asks for, checked against the product limits."""
    try:
        config, preset = resolve_run_config(body.preset, body.overrides, body.config)
    except ValidationError as error:
        raise _invalid(describe_validation_errors(error.errors())) from error
    except RunRequestError as error:
        raise _invalid(str(error) if error.part else f"body: {error.message}") from error
    problems = limit_problems(config, settings)
    if problems:
        raise _invalid("; ".join(problems))
    return config, preset


@router.post(
    "",
    status_code=201,
    response_model=RunRecord,
    dependencies=[Depends(require_api_key)],
    responses={
        422: {"model": ErrorOut, "description": "The configuration is invalid or over a limit."},
        429: {"model": ErrorOut, "description": "FF_MAX_QUEUED runs are already queued."},
    },
    summary="Start a training run",
)
def create_run(body: RunCreate, store: StoreDep, celery: CeleryDep, settings: SettingsDep) -> RunRecord:
    """Queue a run: a preset plus overrides (`{"preset": "quick", "overrides": {"epochs": 3}}`) or a
    full configuration (`{"config": {...}}`), optionally with `tags` and a `note`. Limits: at most
    `max_layers` hidden layers of at most `max_units` units and `max_epochs` epochs (FF_MAX_* settings)."""
    config, preset = resolve_config(body, settings)
    check_queue_quota(store, settings)
    return queue_run(store, celery, config, preset, tags=body.tags, note=body.note)


def check_queue_quota(store: RunStore, settings: Settings) -> None:
    """429 when FF_MAX_QUEUED runs already wait in the queue."""
    waiting = store.count_runs("queued")
    if waiting >= settings.max_queued:
        raise HTTPException(
            status_code=429,
            detail=f"{waiting} runs are already queued, the most this server takes (FF_MAX_QUEUED); "
            "try again once some have started, or cancel some",
            headers={"Retry-After": "60"},
        )


def queue_run(
    store: RunStore,
    celery: Celery,
    config: RunConfig,
    preset: str | None,
    tags: list[str],
    note: str | None,
) -> RunRecord:
    """Create a queued run and send its task. A task that cannot be sent (the broker, the same Redis, is
    down or full) removes the run again and answers 503: nothing stored, so a retry makes no duplicate."""
    record = store.create_run(config, preset=preset, tags=tags, note=note)
    try:
        enqueue_run(celery, record.id, config.device)  # the queue of the device it asks for
    except Exception as error:
        log.exception("could not enqueue run %s", record.id)
        raise unqueued("run", error, undo=lambda: store.delete_run(record.id)) from error
    log.info("queued run %s (preset %s)", record.id, preset)
    return RunRecord.model_validate(record)


@router.get("", response_model=RunList, summary="List runs, newest first")
def list_runs(
    store: StoreDep,
    status: Annotated[RunStatus | None, Query(description="Only runs with this status.")] = None,
    tag: Annotated[
        str | None, Query(max_length=MAX_TAG_LENGTH, description="Only runs with this tag.")
    ] = None,
    experiment: Annotated[
        str | None, Query(max_length=MAX_TAG_LENGTH, description="Only the runs of this experiment.")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Runs to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Most runs to return.")] = 50,
) -> RunList:
    runs, total = store.list_runs(status=status, tag=tag, experiment=experiment, offset=offset, limit=limit)
    return RunList(runs=[RunRecord.model_validate(r) for r in runs], total=total, offset=offset, limit=limit)


@router.get("/{run_id}", response_model=RunRecord, responses=NOT_FOUND, summary="One run")
def get_run(run_id: RunId, store: StoreDep) -> RunRecord:
    return RunRecord.model_validate(get_run_or_404(store, run_id))


@router.patch(
    "/{run_id}",
    response_model=RunRecord,
    dependencies=[Depends(require_api_key)],
    responses={**NOT_FOUND, 422: {"model": ErrorOut, "description": "A tag or the note is invalid."}},
    summary="Edit a run's tags and note",
)
def update_run(run_id: RunId, body: RunUpdate, store: StoreDep) -> RunRecord:
    """Change the `tags` (the whole list; `[]` removes them) and/or the `note` (`null` or `""` removes
    it) of a run in any status; fields left out stay as they are."""
    record = store.edit_run(
        run_id, tags=body.tags, note=body.note, clear_note="note" in body.model_fields_set and not body.note
    )
    if record is None:
        raise run_not_found(run_id)
    log.info("updated run %s: %s", run_id, ", ".join(sorted(body.model_fields_set)) or "nothing")
    return RunRecord.model_validate(record)


@router.post(
    "/{run_id}/rerun",
    status_code=201,
    response_model=RunRecord,
    dependencies=[Depends(require_api_key)],
    responses={
        **NOT_FOUND,
        422: {"model": ErrorOut, "description": "A tag or the note is invalid."},
        429: {"model": ErrorOut, "description": "FF_MAX_QUEUED runs are already queued."},
    },
    summary="Run a run again",
)
def rerun_run(
    run_id: RunId, store: StoreDep, celery: CeleryDep, settings: SettingsDep, body: RunRerun | None = None
) -> RunRecord:
    """Queue a new run with the same configuration and preset as run `run_id` (in any status). It
    gets the same tags and the note "rerun of {id}" unless the body gives `tags` or `note`."""
    original = get_run_or_404(store, run_id)
    check_queue_quota(store, settings)
    body = body or RunRerun()
    tags = body.tags if body.tags is not None else original.tags
    note = body.note if "note" in body.model_fields_set else f"rerun of {run_id}"
    return queue_run(store, celery, original.config, original.preset, tags=tags, note=note)


@router.post(
    "/{run_id}/cancel",
    response_model=RunRecord,
    dependencies=[Depends(require_api_key)],
    responses={**NOT_FOUND, 409: {"model": ErrorOut, "description": "The run already finished."}},
    summary="Cancel a queued or running run",
)
def cancel_run(run_id: RunId, store: StoreDep, celery: CeleryDep) -> RunRecord:
    """A queued run is cancelled at once and never starts. A running run stops within seconds: its
    status stays `running` until the worker has stopped it, then becomes `cancelled`. Cancelling a
    cancelled run changes nothing."""
    before = store.cancel_run(run_id)
    if before is None:
        raise run_not_found(run_id)
    if before in ("succeeded", "failed"):
        raise HTTPException(status_code=409, detail=f"run {run_id!r} already {before}; nothing to cancel")
    if before == "queued":
        # The worker would skip it anyway (its status is cancelled); revoking spares it the message.
        try:
            celery.control.revoke(run_id)
        except Exception:
            log.warning("could not revoke the task of run %s; the worker will skip it", run_id, exc_info=True)
    log.info("cancel requested for run %s (was %s)", run_id, before)
    return RunRecord.model_validate(get_run_or_404(store, run_id))


@router.delete(
    "/{run_id}",
    status_code=204,
    response_class=Response,
    dependencies=[Depends(require_api_key)],
    responses={**NOT_FOUND, 409: {"model": ErrorOut, "description": "The run is queued or running."}},
    summary="Delete a finished run and all its data",
)
def delete_run(run_id: RunId, store: StoreDep, model_cache: ModelCacheDep) -> Response:
    """Removes the run record, its metrics, model and training state. Only finished runs (succeeded,
    failed, cancelled) can be deleted: cancel a queued or running run first."""
    record = get_run_or_404(store, run_id)
    if record.status not in FINISHED:
        raise HTTPException(
            status_code=409,
            detail=f"run {run_id!r} is {record.status}; cancel it first (POST /api/v1/runs/{run_id}/cancel)",
        )
    store.delete_run(run_id)
    model_cache.invalidate(run_id)
    log.info("deleted run %s", run_id)
    return Response(status_code=204)
