"""MNIST test digits for tests that send real digits: read straight from the IDX files, or as PNG files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def mnist_test_images(mnist_dir: str, count: int) -> np.ndarray:
    """The first `count` MNIST test images, uint8 (count, 28, 28), white ink on black."""
    raw = (Path(mnist_dir) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()
    return np.frombuffer(raw, np.uint8, offset=16, count=count * 784).reshape(count, 28, 28)


def mnist_test_labels(mnist_dir: str, count: int) -> np.ndarray:
    """The labels of the first `count` MNIST test images, uint8 (count,)."""
    raw = (Path(mnist_dir) / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()
    return np.frombuffer(raw, np.uint8, offset=8, count=count)


def png_bytes(pixels: np.ndarray, size: int = 28) -> bytes:
    """A uint8 picture as a PNG file, resized (bilinear) to size x size."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR).save(buffer, format="PNG")
    return buffer.getvalue()
