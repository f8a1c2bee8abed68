"""Liveness and readiness probes."""

from __future__ import annotations

import logging

import redis
from anyio import to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import SettingsDep, StoreDep, WorkersDep
from api.schemas import ErrorOut, HealthOut, ReadyOut, WorkerOut

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


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
