"""FF_API_KEY: requests that change something need the key in X-API-Key; reading stays open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api import deps
from api.main import create_app
from fflab.settings import Settings
from tests.support.api import API
from tests.support.fakes import RecordingCelery
from tests.support.store import TestStore

KEY = "s3cret-key"


@pytest.fixture
def keyed_client(redis_url: str, celery: RecordingCelery) -> Iterator[TestClient]:
    app = create_app(Settings(redis_url=redis_url, api_key=KEY))
    app.dependency_overrides[deps.get_celery] = lambda: celery
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"X-API-Key": KEY + "x"}])
def test_changing_requests_without_the_right_key_get_401_and_change_nothing(
    keyed_client: TestClient, store: TestStore, finished_run: str, headers: dict
) -> None:
    create = keyed_client.post(f"{API}/runs", json={"preset": "quick"}, headers=headers)
    cancel = keyed_client.post(f"{API}/runs/{finished_run}/cancel", headers=headers)
    delete = keyed_client.delete(f"{API}/runs/{finished_run}", headers=headers)
    edit = keyed_client.patch(f"{API}/runs/{finished_run}", json={"note": "x"}, headers=headers)
    rerun = keyed_client.post(f"{API}/runs/{finished_run}/rerun", headers=headers)

    for response in (create, cancel, delete, edit, rerun):
        assert response.status_code == 401
        assert "X-API-Key" in response.json()["detail"]
    assert store.list_runs()[1] == 1 and store.get_run(finished_run).note is None


def test_the_right_key_is_accepted(keyed_client: TestClient, finished_run: str) -> None:
    headers = {"X-API-Key": KEY}
    assert keyed_client.post(f"{API}/runs", json={"preset": "quick"}, headers=headers).status_code == 201
    edit = keyed_client.patch(f"{API}/runs/{finished_run}", json={"note": "x"}, headers=headers)
    assert edit.status_code == 200 and edit.json()["note"] == "x"
    assert keyed_client.post(f"{API}/runs/{finished_run}/rerun", headers=headers).status_code == 201
    assert keyed_client.delete(f"{API}/runs/{finished_run}", headers=headers).status_code == 204


def test_reading_and_predicting_need_no_key(keyed_client: TestClient, finished_run: str) -> None:
    assert keyed_client.get(f"{API}/runs").status_code == 200
    assert keyed_client.get(f"{API}/runs/{finished_run}/metrics").status_code == 200
    assert keyed_client.get(f"{API}/readyz").status_code == 200
    pixels = [[0.0] * 28 for _ in range(28)]
    pixels[10][10:18] = [1.0] * 8
    assert keyed_client.post(f"{API}/runs/{finished_run}/predict", json={"image": pixels}).status_code == 200


def test_without_a_configured_key_nothing_is_asked(client: TestClient) -> None:
    assert client.post(f"{API}/runs", json={"preset": "quick"}).status_code == 201
