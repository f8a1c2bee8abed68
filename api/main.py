"""The FF Lab REST API: `create_app(settings)` builds the FastAPI application.

Routes live in api/routes (one module per resource), all under /api/v1; the dependencies they use
(settings, run and experiment stores, worker registry, Celery app, model cache, key checks) come from
api/deps.py. Every route under /api/v1 but the probes and /access passes the read-key check.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
import redis.asyncio
import torch
from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff

from api.deps import require_read_key
from api.errors import BodySizeLimit, install_error_handlers
from api.inference import ModelCache
from api.routes import experiments, health, metrics, options, predict, receptive_fields, runs
from api.schemas import ErrorOut
from fflab.connections import client_options
from fflab.settings import Settings, get_settings
from fflab.store.experiments import ExperimentStore
from fflab.store.runs import RunStore
from fflab.store.workers import WorkerRegistry

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# Predictions run in one thread; one intra-op thread leaves the other core to the event loop (see
# bench/predict_load.py for the measurement behind this).
PREDICT_TORCH_THREADS = 1
# The prediction thread hands the GIL back and forth with the event loop around every tensor
# operation; with Python's default 5 ms switch interval the loop waits too long for it, and request
# latency grows. bench/predict_load.py measured p99 at 200 predictions/s dropping with 0.5 ms.
GIL_SWITCH_INTERVAL_S = 0.0005

DESCRIPTION = """\
Train, watch and probe networks taught by Hinton's Forward-Forward algorithm on MNIST.

Submit a run (a preset plus overrides, or a full configuration), follow its metrics by cursor or as
Server-Sent Events, and ask its model to read digits. Run experiments: seed groups and sweeps (grid,
random or Optuna's TPE, with pruning) fanned out over the workers, compared by mean ± standard
deviation over seeds.

Keys: when the server has an API key (FF_API_KEY), requests that change something (creating, editing,
rerunning, cancelling and deleting runs and experiments) need it in the `X-API-Key` header. Reading,
downloading models and predicting (a POST that changes nothing) stay open, unless the server also has
a read-only key (FF_READ_KEY): then every request under /api/v1 needs `X-API-Key` equal to the read-only
key or to the API key, and changes still need the API key itself. Without a right key the answer is 401.
The probes (/healthz, /readyz), `GET /api/v1/access` (which requests need a key, and what the key sent
allows) and these docs are always open.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application for `settings` (default: read from FF_* environment variables)."""
    settings = settings or get_settings()
    # Every client gets the service's socket timeouts and keepalive (fflab.connections).
    redis_options = client_options(settings)
    client = redis.Redis.from_url(settings.redis_url, **redis_options)
    store = RunStore(client, metrics_maxlen=settings.metrics_maxlen)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(PREDICT_TORCH_THREADS)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        # Asyncio clients belong to the server's loop. /predict's model lookups use one; the event
        # streams' blocking reads have their own pool, sized to the stream cap, so that open streams can
        # never take the connections other routes need. A stream's socket timeout must outlast its
        # blocking XREAD (api.routes.metrics.EVENTS_BLOCK_MS).
        # Unlike the blocking client, an asyncio one does not reconnect by itself when Redis closed an
        # idle connection (its `timeout`): without one retry, the next /predict would answer 503.
        retry_once = {
            "retry": AsyncRetry(ExponentialBackoff(cap=0.5, base=0.1), retries=1),
            "retry_on_error": [redis.ConnectionError],
        }
        app.state.async_redis = redis.asyncio.Redis.from_url(
            settings.redis_url, **redis_options, **retry_once
        )
        stream_timeout = max(redis_options["socket_timeout"], metrics.EVENTS_BLOCK_MS / 1000 + 5)
        app.state.stream_redis = redis.asyncio.Redis.from_url(
            settings.redis_url,
            **(redis_options | {"socket_timeout": stream_timeout} | retry_once),
            max_connections=settings.process_share(settings.max_streams),
        )
        try:
            yield
        finally:
            await app.state.stream_redis.aclose()
            await app.state.async_redis.aclose()
            app.state.model_cache.close()
            client.close()
            if app.state.celery is not None:
                app.state.celery.close()

    app = FastAPI(
        title="FF Lab API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.experiments = ExperimentStore(client)
    app.state.workers = WorkerRegistry(client)
    app.state.celery = None  # made on first use by api.deps.get_celery
    app.state.model_cache = ModelCache(store, size=settings.model_cache_size)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    app.openapi = lambda: _openapi_with_readable_errors(app)  # type: ignore[method-assign]

    # Every resource route needs the read key when reads are protected (a no-op otherwise); the ones that
    # change something also take require_api_key themselves.
    resources = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Depends(require_read_key)],
        responses={
            401: {
                "model": ErrorOut,
                "description": "X-API-Key is missing or wrong (only when the server has keys: FF_API_KEY "
                "for changes, FF_READ_KEY for everything else).",
            }
        },
    )
    for module in (runs, experiments, options, metrics, predict, receptive_fields):
        resources.include_router(module.router)
    app.include_router(resources)
    # The probes and /access stay open: orchestrators and clients ask them before they have a key.
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(health.access_router, prefix=API_PREFIX)
    # Probes also at the root, where orchestrators look for them by default.
    app.include_router(health.router, include_in_schema=False)
    return app


def _openapi_with_readable_errors(app: FastAPI) -> dict:
    """The OpenAPI document, with 422 responses described as they are sent: `{"detail": "field: message"}`.

    FastAPI documents its default validation-error body (a list of error objects); api.errors replaces
    that body with one readable string, so the document says so too.
    """
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    error_ref = {"$ref": "#/components/schemas/ErrorOut"}
    schema["components"]["schemas"].setdefault("ErrorOut", ErrorOut.model_json_schema())
    for operations in schema["paths"].values():
        for operation in operations.values():
            invalid = operation.get("responses", {}).get("422")
            if invalid is not None:
                invalid["content"] = {"application/json": {"schema": error_ref}}
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)
    app.openapi_schema = schema
    return schema
