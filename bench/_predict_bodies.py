"""The bodies bench.predict_load sends to POST /runs/{id}/predict, the answers it expects, and the
check of every answer against the one for the very image its request sent (batched concurrent
requests must never swap answers). Not a benchmark itself (the leading underscore keeps it out of
the README's list of them).

Each distinct body's answer is computed here, once, with the model the bench stored (the same
safetensors, through ffcore) and, for uploaded pictures, the API's own decoding and preprocessing
(api.images.decode_digit_picture). The bench's model is untrained, so its labels may all be equal
and could not reveal a swap: the check compares per-image vectors, the goodness of every layer
under every label, the scan scores, the head's probabilities and the 28x28 image the model saw,
each within a small float tolerance (the server computes in batches of other sizes, whose float32
sums may differ in the last bits). `check_separable` makes sure no two bodies' expected goodness
lies within that tolerance of each other, so a swap between any two cannot go unseen.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from api.images import decode_digit_picture
from ffcore.checkpoint import load_model
from ffcore.model import predict
from tests.support.mnist import mnist_test_images
from tests.support.settings import TestSettings

CANVAS_SIZE = 280  # the dashboard's drawing canvas (dashboard.views.draw.CANVAS_SIZE)
BOUNDARY = "predictloadboundary"

# The fields compared, as PredictionOut names them. Labels are left out: they follow from the scores,
# and an untrained model's near-ties may break either way under float noise.
FIELDS = ("goodness", "scan_scores", "head_probs", "image")
RTOL = 1e-4
ATOL = 1e-5
# The API's FF_MAX_IMAGE_PIXELS only refuses pictures; the bench's canvases are far below any cap.
NO_PIXEL_CAP = 10**9


def digit_images(count: int) -> np.ndarray:
    """`count` digits, float (count, 28, 28) in [0, 1]: MNIST test images if present, else random strokes."""
    data_dir = TestSettings().data_root  # FF_TEST_DATA_DIR, else ../shared/datasets
    if (data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
        return mnist_test_images(str(data_dir), count) / 255.0
    rng = np.random.default_rng(0)
    return (rng.random((count, 28, 28)) > 0.85).astype(np.float64)


def digit_payloads(count: int) -> list[bytes]:
    """JSON bodies of `count` digits (see digit_images)."""
    return [json.dumps({"image": np.round(image, 3).tolist()}).encode() for image in digit_images(count)]


def canvas_png(image: np.ndarray) -> bytes:
    """A 28x28 digit as the drawing canvas would send it: 280x280 RGBA, white ink whose opacity is the ink."""
    ink = Image.fromarray(np.round(image * 255).astype(np.uint8)).resize(
        (CANVAS_SIZE, CANVAS_SIZE), Image.Resampling.BILINEAR
    )
    canvas = Image.new("RGBA", ink.size, (255, 255, 255, 0))
    canvas.putalpha(ink)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def png_payloads(count: int) -> list[bytes]:
    """multipart/form-data bodies (boundary BOUNDARY) uploading `count` canvas PNGs in the field 'image'."""
    bodies = []
    for image in digit_images(count):
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="canvas.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        )
        bodies.append(head.encode() + canvas_png(image) + f"\r\n--{BOUNDARY}--\r\n".encode())
    return bodies


CONTENT_TYPES = {"json": "application/json", "png": f"multipart/form-data; boundary={BOUNDARY}"}


def sent_image(kind: str, body: bytes, dataset: str) -> np.ndarray:
    """The float32 28x28 image the API makes of `body`: JSON pixels as given (the bench sends no
    `preprocess`), or the PNG in a multipart body decoded and preprocessed as the API does."""
    if kind == "json":
        return np.asarray(json.loads(body)["image"], dtype=np.float32)
    # The part's headers end at the first blank line; the closing boundary follows the file's last byte.
    png = body[body.index(b"\r\n\r\n") + 4 : body.rindex(b"\r\n--")]
    return decode_digit_picture(io.BytesIO(png), NO_PIXEL_CAP, dataset)


def expected_answers(model_bytes: bytes, kind: str, bodies: list[bytes]) -> dict[str, np.ndarray]:
    """Per field in FIELDS, an array whose row i is the answer to bodies[i], computed with the stored
    model (`model_bytes`, as the server loads it) in one batch."""
    model, config = load_model(model_bytes)
    images = np.stack([sent_image(kind, body, config.dataset) for body in bodies])
    result = predict(model, images)
    return {
        "goodness": result.goodness,
        "scan_scores": result.scan_scores,
        "head_probs": result.head_probs,
        "image": np.round(images, 4),  # as the API rounds the image it answers with
    }


def is_expected_answer(answer: bytes, expected: dict[str, np.ndarray], index: int) -> bool:
    """Whether the response body `answer` is the answer to body `index`, field by field."""
    try:
        fields = json.loads(answer)
        found = {name: np.asarray(fields[name], dtype=np.float64) for name in FIELDS}
    except (ValueError, KeyError, TypeError):
        return False
    return all(
        found[name].shape == expected[name][index].shape
        and np.allclose(found[name], expected[name][index], rtol=RTOL, atol=ATOL)
        for name in FIELDS
    )


def count_wrong_answers(answers: list[tuple[int, bytes]], expected: dict[str, np.ndarray]) -> int:
    """How many of `answers`, (index of the body sent, response body), are not that body's answer."""
    return sum(not is_expected_answer(answer, expected, index) for index, answer in answers)


def check_separable(bodies: list[bytes], expected: dict[str, np.ndarray]) -> None:
    """Raise ValueError when two different bodies' expected goodness agree within the tolerance: the
    check could not tell their answers apart. (Equal bodies have equal answers; swapping them is harmless.)"""
    goodness = expected["goodness"].reshape(len(bodies), -1).astype(np.float64)
    for i in range(len(bodies) - 1):
        others = goodness[i + 1 :]
        close = np.isclose(goodness[i], others, rtol=RTOL, atol=ATOL).all(axis=1)
        for j in np.flatnonzero(close) + i + 1:
            if bodies[i] != bodies[j]:
                raise ValueError(
                    f"bodies {i} and {j} have answers within the tolerance: a swap would go unseen"
                )
