"""Small real-MNIST data sets for the ffcore tests, loaded once per session."""

from __future__ import annotations

import pytest
import torch

from ffcore import RunConfig, load_dataset
from ffcore.data import Dataset, Split


def _head(split: Split, n: int) -> Split:
    return Split(split.images[:n].clone(), split.labels[:n].clone())


@pytest.fixture(scope="session")
def mnist(mnist_dir) -> Dataset:
    """The real MNIST with the 50k/10k split (pixel tensors on the CPU)."""
    # One thread: the suite shares the machine with servers and workers it starts, and PyTorch's
    # thread pool slows down badly when its threads are not all scheduled.
    torch.set_num_threads(1)
    return load_dataset(RunConfig(data_dir=mnist_dir))


@pytest.fixture(scope="session")
def mnist_slice(mnist) -> Dataset:
    """2,000 training, 500 validation and 1,000 test digits: enough for fast unit tests."""
    return Dataset(mnist.name, _head(mnist.train, 2000), _head(mnist.val, 500), _head(mnist.test, 1000))


@pytest.fixture(scope="session")
def synthetic() -> Dataset:
    """Random 'images' for tests that need shapes, not digits."""
    generator = torch.Generator().manual_seed(0)
    split = Split(
        torch.randn(400, 784, generator=generator), torch.randint(0, 10, (400,), generator=generator)
    )
    return Dataset("mnist", split, split, split)
