"""Probe a trained model's first layer: its receptive fields as a PNG grid or as JSON.

The per-layer probes recorded at each evaluation (each layer's own label scan, goodness quantiles,
the linear probe) travel with the run's eval records: GET /runs/{id}/metrics?kind=eval.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request, Response

from api.deps import ModelCacheDep, RunId, StoreDep, run_not_found
from api.inference import LoadedModel, NoModelError, UnreadableModelError
from api.routes.runs import NOT_FOUND
from api.schemas import ErrorOut, ReceptiveFields
from ffcore.config import NUM_CLASSES
from ffcore.probes import fields_grid_png, receptive_fields

router = APIRouter(prefix="/runs", tags=["probes"])

NO_MODEL = {409: {"model": ErrorOut, "description": "The run has no model yet."}}
CountQuery = Annotated[
    int, Query(ge=1, le=1024, description="How many units, those with the largest weights first.")
]


async def _loaded_model(
    run_id: str, request: Request, store: StoreDep, model_cache: ModelCacheDep
) -> LoadedModel:
    found = await store.model_status_async(request.app.state.async_redis, run_id)
    if found is None:
        raise run_not_found(run_id)
    status, has_model, updated_at = found
    no_model = HTTPException(
        status_code=409,
        detail=f"run {run_id!r} has no model yet (status {status}); it stores one every epoch",
    )
    if not has_model:
        raise no_model
    try:
        return await model_cache.get(run_id, updated_at)
    except NoModelError as error:
        raise no_model from error
    except UnreadableModelError as error:
        raise HTTPException(
            status_code=409, detail=f"the stored model of run {run_id!r} cannot be loaded: {error}"
        ) from error


@router.get(
    "/{run_id}/receptive-fields.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "A grid of 28x28 fields."},
        **NOT_FOUND,
        **NO_MODEL,
    },
    summary="The first layer's receptive fields as a PNG grid",
)
async def receptive_fields_png(
    run_id: RunId,
    request: Request,
    store: StoreDep,
    model_cache: ModelCacheDep,
    count: CountQuery = 64,
    scale: Annotated[int, Query(ge=1, le=8, description="Screen pixels per weight.")] = 3,
) -> Response:
    """Each unit's 784 input weights as a 28x28 tile, units with the largest weights first; each tile
    scaled to its own largest weight, positive red, negative blue, zero white. The first ten pixels of
    a tile's top row are its weights on the label pixels."""
    loaded = await _loaded_model(run_id, request, store, model_cache)
    fields, _ = receptive_fields(loaded.batcher.model, count)
    return Response(content=fields_grid_png(fields, scale=scale), media_type="image/png")


@router.get(
    "/{run_id}/receptive-fields",
    response_model=ReceptiveFields,
    responses={**NOT_FOUND, **NO_MODEL},
    summary="The first layer's receptive fields as numbers",
)
async def receptive_fields_json(
    run_id: RunId, request: Request, store: StoreDep, model_cache: ModelCacheDep, count: CountQuery = 64
) -> ReceptiveFields:
    """The same fields as the PNG: for each unit (largest weights first) its index, its 28x28 input
    weights (rows of the image; the label pixels are the first ten of row 0) and, apart, its ten
    label weights."""
    loaded = await _loaded_model(run_id, request, store, model_cache)
    fields, units = receptive_fields(loaded.batcher.model, count)
    rounded = np.round(fields.astype(np.float64), 6)
    return ReceptiveFields(
        run_id=run_id,
        units=units.tolist(),
        weights=rounded.tolist(),
        label_weights=rounded[:, 0, :NUM_CLASSES].tolist(),
        model_step=loaded.step,
    )
