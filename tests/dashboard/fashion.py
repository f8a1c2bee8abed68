"""Fashion-MNIST test pictures for the tests that send garments (the fashion_dir fixture finds the data)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def fashion_test_images(fashion_dir: str, count: int) -> np.ndarray:
    """The first `count` Fashion-MNIST test images, uint8 (count, 28, 28): a light garment on black."""
    raw = Path(fashion_dir) / "FashionMNIST" / "raw"
    path = next(p for p in (raw / "t10k-images-idx3-ubyte", raw / "t10k-images-idx3-ubyte.gz") if p.is_file())
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
        data = file.read(16 + count * 784)
    return np.frombuffer(data, np.uint8, offset=16, count=count * 784).reshape(count, 28, 28)
