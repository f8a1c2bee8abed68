"""MNIST and Fashion-MNIST as tensors on the training device.

Images are flattened to 784 pixel values in [0, 1], not standardised: the reference PyTorch port
and Hinton's Matlab code both feed raw intensities, so that a one-hot label pixel (1) is as bright
as the brightest ink and the blank background is 0. Labels are int64. The whole data set lives on
the device, so a training step slices tensors instead of running a DataLoader; `shift_images` and
`flip_images` augment a batch there (restyling is `ffcore.augment`'s).
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ffcore.config import IMAGE_SIZE, NUM_PIXELS, RunConfig

log = logging.getLogger(__name__)

VALIDATION_SIZE = 10_000  # the last 10k training images, as in the references' 50k/10k split

# torchvision's folder names under a data root.
_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 2051, 2049


class DataError(RuntimeError):
    """The data directory is missing, incomplete or corrupt; the message says how to fix it."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, NUM_PIXELS) float32 pixel values in [0, 1]
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split | None  # None when training on all 60k
    test: Split

    def to(self, device: torch.device) -> Dataset:
        def move(split: Split | None) -> Split | None:
            if split is None:
                return None
            return Split(split.images.to(device), split.labels.to(device))

        return Dataset(self.name, move(self.train), move(self.val), move(self.test))

    def split(self, name: str) -> Split:
        """The split called `name`: 'train', 'val' or 'test'."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; choose train, val or test")
        if name == "val" and self.val is None:
            raise ValueError("no validation split: the run trains on all 60k images (validation='none')")
        return getattr(self, name)


def default_data_dir() -> Path:
    return Path.home() / ".cache" / "fflab" / "datasets"


def _read_idx(path: Path, magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read {path}: {error}") from error
    header = 16 if magic == _IDX_IMAGES_MAGIC else 8
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"{path} is not an IDX file of the expected kind (corrupt or wrong file)")
    count = int.from_bytes(raw[4:8], "big")
    shape = (count, IMAGE_SIZE, IMAGE_SIZE) if magic == _IDX_IMAGES_MAGIC else (count,)
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path} has {len(raw)} bytes, expected {expected} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, dataset: str, name: str) -> Path:
    """Look where torchvision keeps the files, then in the folder itself; raw or gzipped."""
    for folder in (root / _FOLDERS[dataset] / "raw", root):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(
        f"{dataset}: {name} not found under {root} (looked in {root / _FOLDERS[dataset] / 'raw'} "
        f"and {root}); point the data directory at a torchvision root holding "
        f"{_FOLDERS[dataset]}/raw, or leave it unset to download"
    )


def _download(root: Path, dataset: str) -> None:
    import torchvision

    cls = torchvision.datasets.MNIST if dataset == "mnist" else torchvision.datasets.FashionMNIST
    log.info("downloading %s into %s", dataset, root)
    try:
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception as error:  # network errors come in many types
        raise DataError(
            f"could not download {dataset} into {root}: {error}; without internet, pass a "
            f"data directory that holds {_FOLDERS[dataset]}/raw"
        ) from error


def load_arrays(dataset: str, data_dir: str | Path | None) -> dict[str, np.ndarray]:
    """The four raw uint8 arrays of a data set; downloads only when `data_dir` is None."""
    if dataset not in _FOLDERS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(_FOLDERS)}")
    if data_dir is None:
        root = default_data_dir()
        if not (root / _FOLDERS[dataset] / "raw" / _FILES["test_labels"]).is_file():
            _download(root, dataset)
    else:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"data directory {root} does not exist")
    arrays = {}
    for key, name in _FILES.items():
        magic = _IDX_IMAGES_MAGIC if key.endswith("images") else _IDX_LABELS_MAGIC
        arrays[key] = _read_idx(_find(root, dataset, name), magic)
    for part in ("train", "test"):
        if len(arrays[f"{part}_images"]) != len(arrays[f"{part}_labels"]):
            raise DataError(f"{dataset}: {part} images and labels differ in count (corrupt files)")
        if arrays[f"{part}_labels"].max() > 9:
            raise DataError(f"{dataset}: {part} labels outside 0..9 (corrupt files)")
    return arrays


def load_dataset(config: RunConfig, device: torch.device | str = "cpu") -> Dataset:
    """Load the configured data set, split it as configured, and put it on `device`."""
    arrays = load_arrays(config.dataset, config.data_dir)

    def to_split(images: np.ndarray, labels: np.ndarray) -> Split:
        pixels = torch.from_numpy(images.reshape(len(images), NUM_PIXELS).astype(np.float32) / 255.0)
        return Split(pixels, torch.from_numpy(labels.astype(np.int64)))

    train_images, train_labels = arrays["train_images"], arrays["train_labels"]
    test = to_split(arrays["test_images"], arrays["test_labels"])
    if config.validation == "holdout":
        cut = len(train_images) - VALIDATION_SIZE
        train = to_split(train_images[:cut], train_labels[:cut])
        val = to_split(train_images[cut:], train_labels[cut:])
    else:
        train, val = to_split(train_images, train_labels), None
    return Dataset(config.dataset, train, val, test).to(torch.device(device))


def shift_images(
    images: torch.Tensor, max_shift: int, background: float, rng: torch.Generator
) -> torch.Tensor:
    """Augmentation: shift each image (N, NUM_PIXELS) by up to `max_shift` pixels in x and y, at random."""
    n, size = len(images), IMAGE_SIZE
    padded = F.pad(images.view(n, size, size), (max_shift,) * 4, value=background)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=rng, device=images.device)
    grid = torch.arange(size, device=images.device)
    rows, cols = grid + dy, grid + dx  # (n, size) each
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].reshape(n, size * size)


def flip_images(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Augmentation: mirror each image (N, NUM_PIXELS) left to right with probability 1/2, at random."""
    n, size = len(images), IMAGE_SIZE
    mirrored = torch.rand((n, 1), generator=rng, device=images.device) < 0.5
    return torch.where(mirrored, images.view(n, size, size).flip(2).reshape(n, size * size), images)
