"""FastAPI dependencies: settings, the run and experiment stores, the worker registry, the Celery app,
the model cache and the API key check.

Everything a route needs comes from here, built once per app in `api.main.create_app`'s lifespan and
kept on `app.state`. Tests swap any of them with `app.dependency_overrides`.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, HTTPException, Path, Request

from api.inference import ModelCache
from fflab.queue import make_celery
from fflab.settings import Settings
from fflab.store.experiments import ExperimentStore
from fflab.store.runs import RunStore
from fflab.store.workers import WorkerRegistry

# Run and experiment ids are 12 hexadecimal digits (fflab.store.keys.RUN_ID_LENGTH). Anything else
# names nothing: it is answered 404 before it can reach a Redis key (`x:metrics` would name a stream).
ID_PATTERN = re.compile(r"[0-9a-f]{12}")


def run_not_found(run_id: str) -> HTTPException:
    """The 404 of every route that names a run that does not exist."""
    return HTTPException(status_code=404, detail=f"run {run_id[:100]!r} not found")


def experiment_not_found(experiment_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"experiment {experiment_id[:100]!r} not found")


def checked_run_id(run_id: Annotated[str, Path(description="The run's id (12 hexadecimal digits).")]) -> str:
    if not ID_PATTERN.fullmatch(run_id):
        raise run_not_found(run_id)
    return run_id


def checked_experiment_id(
    experiment_id: Annotated[str, Path(description="The experiment's id (12 hexadecimal digits).")],
) -> str:
    if not ID_PATTERN.fullmatch(experiment_id):
        raise experiment_not_found(experiment_id)
    return experiment_id


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> RunStore:
    return request.app.state.store


def get_experiments(request: Request) -> ExperimentStore:
    return request.app.state.experiments


def get_workers(request: Request) -> WorkerRegistry:
    return request.app.state.workers


def get_celery(request: Request) -> Celery:
    """The Celery app that enqueues training tasks; created on first use (it opens broker connections)."""
    state = request.app.state
    if state.celery is None:
        state.celery = make_celery(state.settings)
    return state.celery


def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    x_api_key: Annotated[
        str | None,
        Header(description="The API key; needed on requests that change something when FF_API_KEY is set."),
    ] = None,
) -> None:
    """Refuse a changing request without the right X-API-Key when the server has a key configured."""
    if not settings.api_key:  # unset (or set empty): the API is open
        return
    # compare_digest takes time independent of where the strings differ (no timing side channel).
    if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), settings.api_key.encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong API key: send it in the X-API-Key header",
            headers={"WWW-Authenticate": "X-API-Key"},
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[RunStore, Depends(get_store)]
ExperimentsDep = Annotated[ExperimentStore, Depends(get_experiments)]
WorkersDep = Annotated[WorkerRegistry, Depends(get_workers)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
RunId = Annotated[str, Depends(checked_run_id)]
ExperimentId = Annotated[str, Depends(checked_experiment_id)]
