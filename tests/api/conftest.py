"""Fixtures of the API tests: the app on the real redis-server, seeded runs and small models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api import deps
from api.main import create_app
from ffcore.config import RunConfig
from fflab.settings import Settings
from tests.support.api import RunningApi, start_api
from tests.support.fakes import RecordingCelery, tiny_model_bytes
from tests.support.store import TestStore


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


@pytest.fixture
def finished_run(store: TestStore) -> str:
    """A succeeded run with a (tiny, untrained) model stored."""
    record = store.create_run(RunConfig.from_preset("quick"), preset="quick")
    store.save_model(record.id, tiny_model_bytes())
    store.set_status(record.id, "succeeded", step=2000, epoch=2, progress=1.0)
    return record.id
