"""Decompression-bomb uploads for the API's picture decoding, sent many at once, and the memory a
process holds (Linux /proc), for tests and bench/decode_memory.py.

    bomb = bomb_png(max_pixels=4_000_000)            # a few kB of PNG, ~4 MP of RGBA when decoded
    answers = post_pictures_at_once(api.base_url, run_id, [bomb] * 20)
    resident_kib(api.process.pid)["VmHWM"]           # the process's peak resident memory
"""

from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image, ImageDraw


def bomb_png(max_pixels: int) -> bytes:
    """A small PNG that decodes to just under `max_pixels` RGBA pixels: a transparent canvas (compresses
    to almost nothing) with one thick stroke of ink, so that it reads as a digit (a 1)."""
    side = math.isqrt(max_pixels)
    width, height = side - 1, side  # (side - 1) * side < side * side <= max_pixels
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).line(
        [(width // 2, height // 8), (width // 2, height * 7 // 8)],
        fill=(0, 0, 0, 255),
        width=max(2, side // 20),
    )
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def post_pictures_at_once(
    base_url: str, run_id: str, pictures: list[bytes], timeout_s: float = 300.0
) -> list[httpx.Response]:
    """POST each picture to /runs/{run_id}/predict, all at the same time (a connection and a thread
    each); the answers in the pictures' order."""

    def post(picture: bytes) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=timeout_s) as http:
            return http.post(f"/runs/{run_id}/predict", files={"image": ("bomb.png", picture, "image/png")})

    with ThreadPoolExecutor(max_workers=len(pictures)) as pool:
        return list(pool.map(post, pictures))


def resident_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident memory now) and VmHWM (its peak so far) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])  # "  123456 kB"
    return fields
