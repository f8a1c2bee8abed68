"""Picture uploads to POST /runs/{id}/predict on the real API server: PNG and JPEG only, a pixel cap
from the settings, and bounded memory when many decompression bombs arrive at once."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.support.api import RunningApi, start_api
from tests.support.decode_load import bomb_png, post_pictures_at_once, resident_kib

DEFAULT_MAX_PIXELS = 4_000_000  # fflab.settings.Settings.max_image_pixels
# Twenty bombs decoded at once as floats took about 2 GB more than the idle API (which is ~0.8 GB, nearly
# all of it PyTorch); two at a time in 8 bits they take ~0.1-0.2 GB (bench/results/decode_memory*.json).
PEAK_GROWTH_LIMIT_KIB = 300 * 1024


def a_seven(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Dark ink on light paper, as a photographed digit."""
    width, height = size
    paper = Image.new(mode, size, "white")
    stroke = [(width // 4, height // 5), (width * 3 // 4, height // 5), (width * 2 // 5, height * 4 // 5)]
    ImageDraw.Draw(paper).line(stroke, fill="black", width=max(2, min(size) // 15))
    return paper


def encoded(image: Image.Image, format_name: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name)
    return buffer.getvalue()


def predict_picture(api: RunningApi, run_id: str, data: bytes, name: str = "digit") -> httpx.Response:
    return httpx.post(
        f"{api.base_url}/runs/{run_id}/predict",
        files={"image": (name, data, "application/octet-stream")},
        timeout=60.0,
    )


@pytest.mark.parametrize("format_name", ["GIF", "BMP", "TIFF", "WEBP"])
def test_formats_other_than_png_and_jpeg_are_refused_by_name(
    api_server: RunningApi, finished_run: str, format_name: str
) -> None:
    picture = encoded(a_seven((120, 90)), format_name)

    response = predict_picture(api_server, finished_run, picture)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail == f"image: the file looks like {format_name}, which is not accepted; send PNG or JPEG"


@pytest.mark.parametrize("format_name", ["PNG", "JPEG"])
@pytest.mark.parametrize("kept_bytes", [20, 40, 200])
def test_a_damaged_png_or_jpeg_is_called_damaged_not_refused_by_format(
    api_server: RunningApi, finished_run: str, format_name: str, kept_bytes: int
) -> None:
    """Cut short in or after its header: it starts as PNG or JPEG, so its format is not what is wrong."""
    picture = encoded(a_seven((120, 90)), format_name)[:kept_bytes]

    response = predict_picture(api_server, finished_run, picture)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("image: the file ") and "damaged or truncated" in detail, detail
    assert "not accepted" not in detail


def test_png_and_jpeg_are_decoded(api_server: RunningApi, finished_run: str) -> None:
    for format_name in ("PNG", "JPEG"):
        response = predict_picture(api_server, finished_run, encoded(a_seven((1600, 1200)), format_name))

        assert response.status_code == 200, (format_name, response.text)
        seen = np.array(response.json()["image"])
        rows, cols = np.indices(seen.shape)
        assert abs((rows * seen).sum() / seen.sum() - 14) < 0.6  # centred by centre of mass
        assert seen.max() == pytest.approx(1.0, abs=0.05)


def test_a_picture_over_the_pixel_cap_is_refused_from_its_header(
    api_server: RunningApi, finished_run: str
) -> None:
    over = encoded(Image.new("1", (2001, 2000), 0), "PNG")  # 4,002,000 pixels in a few hundred bytes
    jpeg_over = encoded(Image.new("L", (4000, 1001), 255), "JPEG")

    for name, picture, size in [("png", over, "2001x2000"), ("jpeg", jpeg_over, "4000x1001")]:
        response = predict_picture(api_server, finished_run, picture)

        assert response.status_code == 422, (name, response.text)
        detail = response.json()["detail"]
        assert detail.startswith(f"image: {size} pixels is too large"), detail
        assert f"at most {DEFAULT_MAX_PIXELS:,} pixels" in detail and "FF_MAX_IMAGE_PIXELS" in detail


def test_the_pixel_cap_comes_from_ff_max_image_pixels(redis_url: str, finished_run: str) -> None:
    with start_api(redis_url, env={"FF_MAX_IMAGE_PIXELS": "40000"}) as api:
        at_cap = predict_picture(api, finished_run, encoded(a_seven((200, 200)), "PNG"))
        over_cap = predict_picture(api, finished_run, encoded(a_seven((201, 200)), "PNG"))

    assert at_cap.status_code == 200, at_cap.text
    assert over_cap.status_code == 422
    assert "201x200 pixels is too large (40,200 pixels); at most 40,000 pixels" in over_cap.json()["detail"]


def test_twenty_bombs_at_once_are_all_answered_within_bounded_memory(
    redis_url: str, finished_run: str
) -> None:
    bomb = bomb_png(DEFAULT_MAX_PIXELS)
    with Image.open(io.BytesIO(bomb)) as opened:  # the premise: a tiny file, just under the cap
        assert opened.mode == "RGBA"
        assert DEFAULT_MAX_PIXELS * 0.99 < opened.width * opened.height <= DEFAULT_MAX_PIXELS
    assert len(bomb) < 100_000
    with start_api(redis_url) as api:
        # One small picture first: the model, PyTorch's first forward pass and PIL are then loaded.
        assert post_pictures_at_once(api.base_url, finished_run, [bomb_png(10_000)])[0].status_code == 200
        before = resident_kib(api.process.pid)
        answers = post_pictures_at_once(api.base_url, finished_run, [bomb] * 20)
        after = resident_kib(api.process.pid)

    assert [answer.status_code for answer in answers] == [200] * 20, answers[0].text
    assert len({str(answer.json()["image"]) for answer in answers}) == 1  # the same picture, the same digit
    # The peak over the idle process: what decoding costs, whatever PyTorch's own footprint.
    assert after["VmHWM"] - before["VmRSS"] < PEAK_GROWTH_LIMIT_KIB, (before, after)
