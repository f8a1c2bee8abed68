"""Liveness and readiness probes, and what the API asks of clients (GET /access): all open, key or not."""

from __future__ import annotations

import logging

import redis
from anyio import to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ApiKeyHeader, SettingsDep, StoreDep, WorkersDep, can_read, can_write, reads_protected
from api.schemas import AccessOut, ErrorOut, HealthOut, ReadyOut, WorkerOut

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])
# Only under /api/v1 (the probes are also at the root, for orchestrators).
access_router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="Is the API process alive")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ErrorOut, "description": "Redis is unreachable."}},
    summary="Can the API serve requests: Redis reachable, and the live workers",
)
async def readyz(store: StoreDep, workers: WorkersDep, settings: SettingsDep) -> ReadyOut | JSONResponse:
    """200 with the workers that sent a heartbeat within the lease TTL (each with its device) when Redis
    answers; 503 otherwise."""
    try:
        await to_thread.run_sync(store.ping)
        live = await to_thread.run_sync(workers.list, settings.lease_ttl_s)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        log.warning("not ready: Redis unreachable (%s)", error)
        return JSONResponse(
            status_code=503,
            content={"detail": f"Redis is unreachable: {error}", "redis": False, "workers": []},
        )
    return ReadyOut(redis=True, workers=[WorkerOut.model_validate(w) for w in live])


@access_router.get(
    "/access",
    response_model=AccessOut,
    summary="Which requests need a key, and what the X-API-Key sent allows",
)
def access(settings: SettingsDep, x_api_key: ApiKeyHeader = None) -> AccessOut:
    """Open to everyone, like the probes: a client (the dashboard) learns from it whether to ask its user
    for a key, and whether the key it was given reads only (FF_READ_KEY) or also changes things
    (FF_API_KEY). It says nothing about the keys themselves."""
    return AccessOut(
        writes_need_key=bool(settings.api_key),
        reads_need_key=reads_protected(settings),
        can_read=can_read(settings, x_api_key),
        can_write=can_write(settings, x_api_key),
    )
