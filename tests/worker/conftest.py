"""Fixtures for the worker's in-process tests: a real Redis store, a worker context, tiny data."""

from __future__ import annotations

import pytest
import torch

from ffcore import Dataset, RunConfig
from ffcore.data import Split
from fflab.settings import Settings
from tests.support.store import TestStore
from worker.context import WorkerContext
from worker.training import DatasetCache


class TinyDatasets(DatasetCache):
    """Random 784-pixel images instead of MNIST: the worker's logic, not learning, is under test."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)

        def split(n: int) -> Split:
            return Split(
                torch.randn(n, 784, generator=generator), torch.randint(0, 10, (n,), generator=generator)
            )

        self.dataset = Dataset("mnist", split(400), split(100), split(100))
        self.requests: list[tuple[RunConfig, torch.device]] = []

    def get(self, config: RunConfig, device: torch.device) -> Dataset:
        self.requests.append((config, device))
        return self.dataset


def tiny_config(**overrides) -> RunConfig:
    """8 steps per epoch on TinyDatasets."""
    return RunConfig.from_preset("quick", **{"hidden": [16, 16], "batch_size": 50, "epochs": 3} | overrides)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors on a shared 2-core box: a second thread only spins (tests run ~5x faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def settings(redis_url, mnist_dir) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=mnist_dir,
        metrics_every_steps=2,
        lease_ttl_s=60,
        heartbeat_interval_s=0.2,
    )


@pytest.fixture
def store(settings) -> TestStore:
    return TestStore.from_url(settings.redis_url, settings.metrics_maxlen)


@pytest.fixture
def enqueued() -> list[str]:
    return []


@pytest.fixture
def make_context(settings, store, enqueued):
    def make(name: str = "w1") -> WorkerContext:
        return WorkerContext(
            settings=settings,
            attempts=store.attempts,
            registry=store.workers,
            name=name,
            device="cpu",
            enqueue=enqueued.append,
        )

    return make


@pytest.fixture
def datasets() -> TinyDatasets:
    return TinyDatasets()
