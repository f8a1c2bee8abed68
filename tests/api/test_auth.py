"""FF_API_KEY: requests that change something need the key in X-API-Key; reading stays open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api import deps
from api.main import create_app
from ffcore.experiment import ExperimentSpec
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


# Routes that take POST but change nothing: a prediction reads a model.
OPEN_POSTS = {("POST", "/api/v1/runs/{run_id}/predict")}


def test_every_route_that_changes_something_needs_the_key(
    keyed_client: TestClient, store: TestStore, finished_run: str
) -> None:
    """Walks the app's routes (as its OpenAPI document lists them): a new write route without the key
    check fails here by itself."""
    spec = ExperimentSpec.model_validate({"params": {"lr": {"values": [1e-3]}}})
    experiment = store.experiments.create(spec)
    ids = {"run_id": finished_run, "experiment_id": experiment.id}
    checked = []
    for template, operations in keyed_client.app.openapi()["paths"].items():
        for method in sorted(m.upper() for m in operations if m in ("post", "put", "patch", "delete")):
            if (method, template) in OPEN_POSTS:
                continue
            response = keyed_client.request(method, template.format(**ids), json={})
            assert response.status_code == 401, (method, template, response.text)
            checked.append((method, template))
    assert ("POST", "/api/v1/experiments") in checked and ("DELETE", "/api/v1/runs/{run_id}") in checked
    assert len(checked) >= 8
    assert store.get_run(finished_run).status == "succeeded" and store.experiments.get(experiment.id)
