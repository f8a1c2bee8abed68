"""Probe a trained model: predict a digit, download the model."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from api.deps import ModelCacheDep, RunId, SettingsDep, StoreDep, run_not_found
from api.errors import describe_validation_errors
from api.images import decode_uploaded_digit
from api.inference import NoModelError, SharedReads, UnreadableModelError
from api.routes.runs import NOT_FOUND, get_run_or_404
from api.schemas import ErrorOut, PredictionOut, PredictRequest
from ffcore.images import EmptyImageError, preprocess_picture
from fflab.settings import Settings
from fflab.store.runs import RunStore

log = logging.getLogger(__name__)

router = APIRouter(prefix="/runs", tags=["predict"])

NO_MODEL = {409: {"model": ErrorOut, "description": "The run has no model yet."}}

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "A digit picture, PNG or JPEG (other formats are refused 422), "
                            "of at most FF_MAX_IMAGE_PIXELS pixels (width x height; default 4,000,000): "
                            "dark ink on light paper, light ink on dark, or strokes on a transparent "
                            "background.",
                        }
                    },
                }
            },
        },
    }
}


def _no_model(run_id: str, status: str) -> HTTPException:
    return HTTPException(
        status_code=409,
        detail=f"run {run_id!r} has no model yet (status {status}); a run stores its model at "
        "the end of every epoch",
    )


def model_status_reads(request: Request) -> SharedReads[tuple[str, bool, float | None] | None]:
    """The app's shared reads of runs' (status, has_model, updated_at), through its asyncio Redis client;
    made anew for each event loop the app serves in (a test client starts one per session)."""
    state = request.app.state
    reads = getattr(state, "model_status_reads", None)
    loop = asyncio.get_running_loop()
    if reads is None or reads.loop is not loop:  # no await in between: no two of them
        store: RunStore = state.store
        reads = state.model_status_reads = SharedReads(
            lambda run_id: store.model_status_async(state.async_redis, run_id), loop
        )
    return reads


async def read_digit(request: Request, settings: Settings, dataset: str = "mnist") -> np.ndarray:
    """The request's image as a float32 (28, 28) array, from JSON pixels or an uploaded picture (PNG or
    JPEG of at most `settings.max_image_pixels` pixels, decoded in one of the app's decode slots),
    preprocessed as `dataset` prepared its images."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = PredictRequest.model_validate_json(await request.body())
        except ValidationError as error:
            raise HTTPException(status_code=422, detail=describe_validation_errors(error.errors())) from error
        pixels = np.asarray(body.image, dtype=np.float32)
        if not body.preprocess:
            return pixels
        try:
            return preprocess_picture(pixels, dataset)
        except EmptyImageError as error:
            raise HTTPException(status_code=422, detail="image: the image has no ink") from error
    if content_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=4) as form:
            upload = form.get("image")
            if not isinstance(upload, UploadFile):
                raise HTTPException(
                    status_code=422, detail="image: send the picture as a multipart file field named 'image'"
                )
            if upload.size == 0:
                raise HTTPException(status_code=422, detail="image: the uploaded file is empty")
            # Decoded from the form's spooled file (on disk beyond 1 MB) while it waits for a slot.
            return await decode_uploaded_digit(request.app, settings, upload.file, dataset)
    raise HTTPException(
        status_code=415,
        detail='send the digit as application/json ({"image": 28 rows of 28 values in [0, 1]}) or as '
        "multipart/form-data with a PNG or JPEG file in the field 'image'",
    )


@router.post(
    "/{run_id}/predict",
    response_model=PredictionOut,
    openapi_extra=_PREDICT_BODY,
    responses={
        **NOT_FOUND,
        **NO_MODEL,
        413: {"model": ErrorOut, "description": "The body is too large."},
        415: {"model": ErrorOut, "description": "Neither JSON nor multipart."},
        422: {
            "model": ErrorOut,
            "description": "The image is invalid, unreadable, blank, not PNG or JPEG, or too large.",
        },
    },
    summary="Predict a digit with a run's model",
)
async def predict_digit(
    run_id: RunId, request: Request, settings: SettingsDep, model_cache: ModelCacheDep
) -> PredictionOut:
    """Send 28x28 pixel values (JSON, used as given unless `preprocess` is true) or a PNG or JPEG picture
    of up to FF_MAX_IMAGE_PIXELS pixels (multipart, always preprocessed as the model's data set was:
    for MNIST the ink fitted into 20x20 and centred by centre of mass, for Fashion-MNIST the product
    trimmed, fitted into 28x28 and centred).
    Answers the label scan's prediction, the goodness of every layer under every label, the softmax
    head's probabilities and the 28x28 image the model saw. A running run answers with its latest
    checkpoint (saved at epoch ends, at most FF_CHECKPOINT_INTERVAL_S apart)."""
    found = await model_status_reads(request).get(run_id)
    if found is None:
        raise run_not_found(run_id)
    status, has_model, updated_at = found
    if not has_model:
        raise _no_model(run_id, status)
    try:  # first the model: its data set says how to prepare the picture
        loaded = await model_cache.get(run_id, updated_at)
    except NoModelError as error:
        raise _no_model(run_id, status) from error
    except UnreadableModelError as error:
        log.error("run %s: stored model unreadable: %s", run_id, error)
        raise HTTPException(
            status_code=409, detail=f"the stored model of run {run_id!r} cannot be loaded: {error}"
        ) from error
    image = await read_digit(request, settings, loaded.config.dataset)
    result = await loaded.batcher.predict(image)
    config = loaded.config
    return PredictionOut(
        run_id=run_id,
        scan_label=result.scan_label,
        scan_scores=result.scan_scores.tolist(),
        scan_layers=config.scan_layer_indices,
        goodness=result.goodness.tolist(),
        thresholds=[config.layer_threshold(width) for width in config.hidden],
        head_label=result.head_label,
        head_probs=result.head_probs.tolist(),
        image=np.round(image, 4).tolist(),
        model_step=loaded.step,
        dataset=config.dataset,
        classes=list(config.class_names),
        scan_class=config.class_names[result.scan_label],
        head_class=config.class_names[result.head_label],
    )


@router.get(
    "/{run_id}/model",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The model as safetensors."},
        **NOT_FOUND,
        **NO_MODEL,
    },
    summary="Download a run's model (safetensors)",
)
def download_model(run_id: RunId, store: StoreDep) -> Response:
    """The trained network as a safetensors file (its configuration is in the metadata); load it with
    `ffcore.load_model` or `python -m ffcore predict`."""
    record = get_run_or_404(store, run_id)
    data = store.load_model(run_id)
    if data is None:
        raise _no_model(run_id, record.status)
    return Response(
        content=data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="ff-{run_id}.safetensors"'},
    )
