"""The FF Lab REST API: `create_app(settings)` builds the FastAPI application.

Routes live in api/routes (one module per resource), all under /api/v1; the dependencies they use
(settings, run store, Celery app, model cache, API key check) come from api/deps.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
import redis.asyncio
import torch
from fastapi import APIRouter, FastAPI

from api.errors import BodySizeLimit, install_error_handlers
from api.inference import ModelCache
from api.routes import health, metrics, predict, runs
from fflab.settings import Settings, get_settings
from fflab.store import RunStore

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# Predictions run in one thread; one intra-op thread leaves the other core to the event loop (see
# bench/predict_load.py for the measurement behind this).
PREDICT_TORCH_THREADS = 1

DESCRIPTION = """\
Train, watch and probe networks taught by Hinton's Forward-Forward algorithm on MNIST.

Submit a run (a preset plus overrides, or a full configuration), follow its metrics by cursor or as
Server-Sent Events, and ask its model to read digits. When the server has an API key configured
(FF_API_KEY), requests that change something need it in the `X-API-Key` header.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application for `settings` (default: read from FF_* environment variables)."""
    settings = settings or get_settings()
    store = RunStore(
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=30),
        metrics_maxlen=settings.metrics_maxlen,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(PREDICT_TORCH_THREADS)
        # The asyncio client serves the event streams' blocking reads; it belongs to the server's loop.
        # Its socket timeout must outlast a blocking XREAD (api.routes.metrics.EVENTS_BLOCK_MS).
        app.state.async_redis = redis.asyncio.Redis.from_url(
            settings.redis_url, socket_connect_timeout=5, socket_timeout=30
        )
        try:
            yield
        finally:
            await app.state.async_redis.aclose()
            app.state.model_cache.close()
            store.redis.close()
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
    app.state.celery = None  # made on first use by api.deps.get_celery
    app.state.model_cache = ModelCache(store, size=settings.model_cache_size)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    api = APIRouter(prefix=API_PREFIX)
    for module in (runs, metrics, predict, health):
        api.include_router(module.router)
    app.include_router(api)
    # Probes also at the root, where orchestrators look for them by default.
    app.include_router(health.router, include_in_schema=False)
    return app
