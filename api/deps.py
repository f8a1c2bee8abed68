"""FastAPI dependencies: settings, the run and experiment stores, the worker registry, the Celery app,
the model cache and the key checks (FF_API_KEY for changes; FF_READ_KEY or FF_API_KEY for everything else
when reads are protected).

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


# The dependencies below do no I/O, so they are `async def`: FastAPI runs a plain `def` dependency in its
# thread pool, a thread round trip per request that cost more CPU than they do (profiled on /predict under
# bench/predict_load.py, issue 17).


async def checked_run_id(
    run_id: Annotated[str, Path(description="The run's id (12 hexadecimal digits).")],
) -> str:
    if not ID_PATTERN.fullmatch(run_id):
        raise run_not_found(run_id)
    return run_id


async def checked_experiment_id(
    experiment_id: Annotated[str, Path(description="The experiment's id (12 hexadecimal digits).")],
) -> str:
    if not ID_PATTERN.fullmatch(experiment_id):
        raise experiment_not_found(experiment_id)
    return experiment_id


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> RunStore:
    return request.app.state.store


async def get_experiments(request: Request) -> ExperimentStore:
    return request.app.state.experiments


async def get_workers(request: Request) -> WorkerRegistry:
    return request.app.state.workers


def get_celery(request: Request) -> Celery:
    """The Celery app that enqueues training tasks; created on first use (it opens broker connections)."""
    state = request.app.state
    if state.celery is None:
        state.celery = make_celery(state.settings)
    return state.celery


async def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


KEY_HEADER_HELP = (
    "The API key (FF_API_KEY): needed on requests that change something when the server has one. When the "
    "server also has a read key (FF_READ_KEY), every other request needs this key or the read key."
)
ApiKeyHeader = Annotated[str | None, Header(description=KEY_HEADER_HELP)]


def _matches(sent: str | None, key: str) -> bool:
    # compare_digest takes time independent of where the strings differ (no timing side channel).
    return sent is not None and secrets.compare_digest(sent.encode(), key.encode())


def _refused(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "X-API-Key"})


def reads_protected(settings: Settings) -> bool:
    """Reads need a key only when both keys are set (`python -m api` refuses a read key alone)."""
    return bool(settings.api_key and settings.read_key)


def can_write(settings: Settings, x_api_key: str | None) -> bool:
    return not settings.api_key or _matches(x_api_key, settings.api_key)


def can_read(settings: Settings, x_api_key: str | None) -> bool:
    if not reads_protected(settings):
        return True
    return any(_matches(x_api_key, key) for key in (settings.read_key, settings.api_key) if key)


async def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)], x_api_key: ApiKeyHeader = None
) -> None:
    """Refuse a changing request without X-API-Key equal to FF_API_KEY when the server has one; the read
    key does not do."""
    if not can_write(settings, x_api_key):
        raise _refused(
            "missing or wrong API key: requests that change something need the API key in the X-API-Key "
            "header (a read-only key does not do)"
        )


async def require_read_key(
    settings: Annotated[Settings, Depends(get_settings)], x_api_key: ApiKeyHeader = None
) -> None:
    """Refuse any request under /api/v1 but the probes without X-API-Key equal to FF_READ_KEY or FF_API_KEY,
    when the server has both keys; with FF_READ_KEY unset, reads are open."""
    if not can_read(settings, x_api_key):
        raise _refused(
            "missing or wrong API key: this server protects reads too; send the API key or the read-only "
            "key in the X-API-Key header"
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[RunStore, Depends(get_store)]
ExperimentsDep = Annotated[ExperimentStore, Depends(get_experiments)]
WorkersDep = Annotated[WorkerRegistry, Depends(get_workers)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
RunId = Annotated[str, Depends(checked_run_id)]
ExperimentId = Annotated[str, Depends(checked_experiment_id)]
