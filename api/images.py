"""Decoding uploaded digit pictures for POST /runs/{id}/predict, with bounded memory.

A few kilobytes of PNG can declare millions of pixels, and decoded as floats each pixel costs tens of
bytes; so an upload is decoded only when it is PNG or JPEG and its header declares at most
FF_MAX_IMAGE_PIXELS pixels, it is shrunk in 8 bits before any float conversion
(`ffcore.images.ink_levels`), and at most FF_MAX_CONCURRENT_DECODES pictures are decoded at once
(the others wait for a slot, holding only their compressed bytes).
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, HTTPException
from PIL import Image, UnidentifiedImageError

from ffcore.images import EmptyImageError, ink_levels, preprocess_picture
from fflab.settings import Settings

ACCEPTED_FORMATS = ["PNG", "JPEG"]
SEND_PNG_OR_JPEG = "send PNG or JPEG"
# Enough bytes for every PIL plugin's signature check (PIL itself reads 16).
SIGNATURE_BYTES = 16


def decode_limiter(app: FastAPI, slots: int) -> CapacityLimiter:
    """The app's limiter of concurrent decodes (`slots` threads), created on first use: anyio makes a
    limiter for the event loop it runs in, and the app's loop runs only once it serves."""
    limiter = getattr(app.state, "decode_limiter", None)
    if limiter is None:  # no await between the check and the assignment: no two limiters
        limiter = app.state.decode_limiter = CapacityLimiter(slots)
    return limiter


async def decode_uploaded_digit(
    app: FastAPI, settings: Settings, file: BinaryIO, dataset: str = "mnist"
) -> np.ndarray:
    """The uploaded picture as the model's data set would have it (28x28 in [0, 1]; see
    ffcore.images.preprocess_picture), decoded in a worker thread once one of the app's decode slots
    is free; HTTPException 422 with the reason when it is unusable."""
    limiter = decode_limiter(app, settings.process_share(settings.max_concurrent_decodes))
    return await to_thread.run_sync(
        decode_digit_picture, file, settings.max_image_pixels, dataset, limiter=limiter
    )


def decode_digit_picture(file: BinaryIO, max_pixels: int, dataset: str = "mnist") -> np.ndarray:
    """A PNG or JPEG file of at most `max_pixels` pixels as a preprocessed 28x28 image (a digit, or a
    garment for dataset 'fashion-mnist'); 422 otherwise."""
    file.seek(0)
    try:
        image = Image.open(file, formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError as error:
        raise _unaccepted_format(file) from error
    except Image.DecompressionBombError as error:  # a header beyond even PIL's own limit
        raise HTTPException(
            status_code=422, detail=f"image: too large ({error}); {_the_cap(max_pixels)}"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise _damaged(error) from error
    with image:
        width, height = image.size  # from the header: nothing is decoded yet
        if width * height > max_pixels:
            raise HTTPException(
                status_code=422,
                detail=f"image: {width}x{height} pixels is too large ({width * height:,} pixels); "
                f"{_the_cap(max_pixels)}",
            )
        try:
            levels = ink_levels(image)  # decoded, shrunk in 8 bits
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise _damaged(error) from error
    try:
        return preprocess_picture(levels, dataset)
    except EmptyImageError as error:
        raise HTTPException(status_code=422, detail="image: the image has no ink") from error


def _the_cap(max_pixels: int) -> str:
    return f"at most {max_pixels:,} pixels (width x height; the server's FF_MAX_IMAGE_PIXELS sets this)"


def _damaged(error: Exception) -> HTTPException:
    return HTTPException(status_code=422, detail=f"image: the file is damaged or truncated ({error})")


def _unaccepted_format(file: BinaryIO) -> HTTPException:
    recognised = _format_by_signature(file)
    if recognised is None:
        detail = f"image: not a readable image file ({SEND_PNG_OR_JPEG})"
    elif recognised in ACCEPTED_FORMATS:  # its signature is right, its header is not (PIL refused to open it)
        detail = (
            f"image: the file starts as a {recognised} file but is damaged or truncated; {SEND_PNG_OR_JPEG}"
        )
    else:
        detail = f"image: the file looks like {recognised}, which is not accepted; {SEND_PNG_OR_JPEG}"
    return HTTPException(status_code=422, detail=detail)


def _format_by_signature(file: BinaryIO) -> str | None:
    """The format PIL recognises from the file's first bytes, without parsing any header of it (each
    plugin's signature check only); None when no plugin claims it."""
    file.seek(0)
    prefix = file.read(SIGNATURE_BYTES)
    Image.init()  # registers every plugin, so that every signature is known
    for format_id in Image.ID:
        accept = Image.OPEN[format_id][1]
        try:
            if accept is not None and accept(prefix):
                return format_id
        except Exception:  # noqa: BLE001 - some checks fail on short prefixes (struct.error): not theirs
            continue
    return None
