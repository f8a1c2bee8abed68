"""Fixtures for the worker's in-process tests: a real Redis store, a worker context, tiny data."""

from __future__ import annotations

import pytest
import torch

from fflab.settings import Settings
from tests.support.store import TestStore
from tests.support.tiny_data import TinyDatasets
from worker.context import WorkerContext


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
