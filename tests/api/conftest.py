"""Fixtures of the API tests: the app on the real redis-server, seeded runs and small models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import torch
from fastapi.testclient import TestClient

from api import deps
from api.main import create_app
from ffcore.checkpoint import save_model
from ffcore.config import RunConfig
from ffcore.model import FFNetwork
from fflab.settings import Settings
from tests.support.api import RunningApi, start_api
from tests.support.store import TestStore

API = "/api/v1"


@dataclass
class RecordingCelery:
    """Stands in for the Celery app in unit tests: records what would go to the broker."""

    sent: list[tuple[str, list, str]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    def send_task(self, name: str, args: list, task_id: str) -> None:
        self.sent.append((name, args, task_id))

    @property
    def control(self) -> RecordingCelery:
        return self

    def revoke(self, task_id: str) -> None:
        self.revoked.append(task_id)


@pytest.fixture(scope="module")
def api_server(redis_server) -> Iterator[RunningApi]:
    """The real API server (`python -m api`) for a whole test module, on the session's redis-server.

    Starting it costs seconds (torch imports), so tests share it; `redis_url` still empties the
    database before each test.
    """
    with start_api(f"redis://{redis_server.host}:{redis_server.port}/0") as running:
        yield running


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, api_key=None, max_body_bytes=200_000)


@pytest.fixture
def celery() -> RecordingCelery:
    return RecordingCelery()


@pytest.fixture
def client(settings: Settings, celery: RecordingCelery) -> Iterator[TestClient]:
    app = create_app(settings)
    app.dependency_overrides[deps.get_celery] = lambda: celery
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def store(redis_url: str) -> TestStore:
    return TestStore.from_url(redis_url)


def tiny_model_bytes(hidden: tuple[int, ...] = (40, 30), seed: int = 0) -> bytes:
    """An untrained small network as ffcore saves models (safetensors)."""
    config = RunConfig.from_preset("quick", hidden=list(hidden), scan_layers=None, head_layers=None)
    model = FFNetwork(config)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():  # a head that is not all zeros, so that its probabilities differ
        model.head.weight.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return save_model(model, config)


@pytest.fixture
def finished_run(store: TestStore) -> str:
    """A succeeded run with a (tiny, untrained) model stored."""
    record = store.create_run(RunConfig.from_preset("quick"), preset="quick")
    store.save_model(record.id, tiny_model_bytes())
    store.set_status(record.id, "succeeded", step=2000, epoch=2, progress=1.0)
    return record.id
