"""Keys: FF_API_KEY guards every request that changes something; FF_READ_KEY (beside it) guards the rest.

Without FF_READ_KEY reading and predicting stay open. With it, every route under /api/v1 but the probes
and /access needs X-API-Key equal to the read-only key or to the API key, and changes still need the API
key itself. The route walks go through the app's OpenAPI document, so a new route is checked by itself.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api import deps
from api.__main__ import read_key_without_api_key
from api.main import create_app
from ffcore.experiment import ExperimentSpec
from fflab.settings import Settings
from tests.support.api import API
from tests.support.fakes import RecordingCelery
from tests.support.ports import free_port
from tests.support.processes import environment_without
from tests.support.store import TestStore

KEY = "s3cret-key"
READ_KEY = "read-only-key"
WRONG_KEYS = [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"X-API-Key": KEY + "x"}]
# Routes that take POST but change nothing: a prediction reads a model.
OPEN_POSTS = {("POST", "/api/v1/runs/{run_id}/predict")}
# Open to everyone whatever the keys: the probes, and what a client asks before it has a key.
OPEN_ROUTES = {("GET", f"/api/v1/{name}") for name in ("healthz", "readyz", "access")}


def app_client(settings: Settings, celery: RecordingCelery) -> TestClient:
    app = create_app(settings)
    app.dependency_overrides[deps.get_celery] = lambda: celery
    return TestClient(app)


@pytest.fixture
def keyed_client(redis_url: str, celery: RecordingCelery) -> Iterator[TestClient]:
    """Changes need KEY; reads are open."""
    with app_client(Settings(redis_url=redis_url, api_key=KEY), celery) as client:
        yield client


@pytest.fixture
def read_keyed_client(redis_url: str, celery: RecordingCelery) -> Iterator[TestClient]:
    """Changes need KEY; everything else KEY or READ_KEY."""
    with app_client(Settings(redis_url=redis_url, api_key=KEY, read_key=READ_KEY), celery) as client:
        yield client


@pytest.fixture
def experiment_id(store: TestStore) -> str:
    return store.experiments.create(ExperimentSpec.model_validate({"params": {"lr": {"values": [1e-3]}}})).id


def a_digit() -> list[list[float]]:
    pixels = [[0.0] * 28 for _ in range(28)]
    pixels[10][10:18] = [1.0] * 8
    return pixels


def operations(client: TestClient) -> list[tuple[str, str]]:
    """(METHOD, path template) of every operation the app's OpenAPI document lists."""
    return [
        (method.upper(), template)
        for template, methods in client.app.openapi()["paths"].items()
        for method in sorted(methods)
    ]


def changes_something(method: str, template: str) -> bool:
    return method in ("POST", "PUT", "PATCH", "DELETE") and (method, template) not in OPEN_POSTS


# --- FF_API_KEY alone: changes need it, reads are open ----------------------------------------------


@pytest.mark.parametrize("headers", WRONG_KEYS)
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
    assert (
        keyed_client.post(f"{API}/runs/{finished_run}/predict", json={"image": a_digit()}).status_code == 200
    )


def test_without_a_configured_key_nothing_is_asked(client: TestClient) -> None:
    assert client.post(f"{API}/runs", json={"preset": "quick"}).status_code == 201


def test_every_route_that_changes_something_needs_the_key(
    keyed_client: TestClient, store: TestStore, finished_run: str, experiment_id: str
) -> None:
    """A new write route without the key check fails here by itself."""
    ids = {"run_id": finished_run, "experiment_id": experiment_id}
    checked = []
    for method, template in operations(keyed_client):
        if changes_something(method, template):
            response = keyed_client.request(method, template.format(**ids), json={})
            assert response.status_code == 401, (method, template, response.text)
            checked.append((method, template))
    assert ("POST", "/api/v1/experiments") in checked and ("DELETE", "/api/v1/runs/{run_id}") in checked
    assert len(checked) >= 8
    assert store.get_run(finished_run).status == "succeeded" and store.experiments.get(experiment_id)


# --- FF_READ_KEY beside it: every request needs a key -----------------------------------------------


@pytest.mark.parametrize("headers", WRONG_KEYS[:2] + [{"X-API-Key": READ_KEY + "x"}])
def test_with_a_read_key_reads_without_a_right_key_get_401(
    read_keyed_client: TestClient, finished_run: str, headers: dict
) -> None:
    reads = [
        read_keyed_client.get(f"{API}/runs", headers=headers),
        read_keyed_client.get(f"{API}/runs/{finished_run}", headers=headers),
        read_keyed_client.get(f"{API}/runs/{finished_run}/metrics", headers=headers),
        read_keyed_client.get(f"{API}/runs/{finished_run}/model", headers=headers),
        read_keyed_client.get(f"{API}/run-options", headers=headers),
        read_keyed_client.post(
            f"{API}/runs/{finished_run}/predict", json={"image": a_digit()}, headers=headers
        ),
    ]
    for response in reads:
        assert response.status_code == 401, response.request.url
        assert "protects reads" in response.json()["detail"] and "X-API-Key" in response.json()["detail"]
        assert response.headers["WWW-Authenticate"] == "X-API-Key"


@pytest.mark.parametrize("key", [READ_KEY, KEY])
def test_with_a_read_key_reads_and_predictions_take_either_key(
    read_keyed_client: TestClient, finished_run: str, key: str
) -> None:
    headers = {"X-API-Key": key}
    listed = read_keyed_client.get(f"{API}/runs", headers=headers)
    assert listed.status_code == 200 and [run["id"] for run in listed.json()["runs"]] == [finished_run]
    assert read_keyed_client.get(f"{API}/runs/{finished_run}/model", headers=headers).content[:8]
    predicted = read_keyed_client.post(
        f"{API}/runs/{finished_run}/predict", json={"image": a_digit()}, headers=headers
    )
    assert predicted.status_code == 200 and len(predicted.json()["head_probs"]) == 10


def test_the_read_key_changes_nothing_and_the_api_key_does(
    read_keyed_client: TestClient, store: TestStore, finished_run: str
) -> None:
    read = {"X-API-Key": READ_KEY}
    refused = [
        read_keyed_client.post(f"{API}/runs", json={"preset": "quick"}, headers=read),
        read_keyed_client.patch(f"{API}/runs/{finished_run}", json={"note": "x"}, headers=read),
        read_keyed_client.post(f"{API}/runs/{finished_run}/rerun", headers=read),
        read_keyed_client.delete(f"{API}/runs/{finished_run}", headers=read),
    ]
    for response in refused:
        assert response.status_code == 401
        assert "a read-only key does not do" in response.json()["detail"]
    assert store.list_runs()[1] == 1 and store.get_run(finished_run).note is None

    write = {"X-API-Key": KEY}
    assert read_keyed_client.post(f"{API}/runs", json={"preset": "quick"}, headers=write).status_code == 201
    assert read_keyed_client.delete(f"{API}/runs/{finished_run}", headers=write).status_code == 204
    assert store.get_run(finished_run) is None


def test_with_a_read_key_the_probes_access_and_the_docs_stay_open(read_keyed_client: TestClient) -> None:
    for path in ("/healthz", "/readyz", f"{API}/healthz", f"{API}/readyz", f"{API}/access"):
        assert read_keyed_client.get(path).status_code == 200, path
    assert "swagger" in read_keyed_client.get("/docs").text.lower()
    document = read_keyed_client.get("/openapi.json")
    assert document.status_code == 200 and "FF_READ_KEY" in document.json()["info"]["description"]


def test_every_route_but_the_probes_needs_a_key_when_reads_are_protected(
    read_keyed_client: TestClient, store: TestStore, finished_run: str, experiment_id: str
) -> None:
    """Every operation of the OpenAPI document, reads and changes: without a right key 401; with the read
    key, 401 for changes only (the key check comes before anything else looks at the request)."""
    ids = {"run_id": finished_run, "experiment_id": experiment_id}
    read_only = {"X-API-Key": READ_KEY}
    reads = []
    for method, template in operations(read_keyed_client):
        if (method, template) in OPEN_ROUTES:
            continue
        path = template.format(**ids)
        for headers in ({}, {"X-API-Key": "wrong"}):
            response = read_keyed_client.request(method, path, json={}, headers=headers)
            assert response.status_code == 401, (method, template, headers, response.text)
        with_read_key = read_keyed_client.request(method, path, json={}, headers=read_only)
        if changes_something(method, template):
            assert with_read_key.status_code == 401, (method, template, with_read_key.text)
        else:
            assert with_read_key.status_code != 401, (method, template, with_read_key.text)
            reads.append((method, template))
    assert {("GET", "/api/v1/runs"), ("GET", "/api/v1/runs/{run_id}/model")} <= set(reads)
    assert ("POST", "/api/v1/runs/{run_id}/predict") in reads and len(reads) >= 10
    assert store.get_run(finished_run).status == "succeeded" and store.experiments.get(experiment_id)


# --- GET /access: what a client learns before it has a key ------------------------------------------


@pytest.mark.parametrize(
    ("keys", "sent", "expected"),
    [
        ({}, None, (False, False, True, True)),
        ({"api_key": KEY}, None, (True, False, True, False)),
        ({"api_key": KEY}, KEY, (True, False, True, True)),
        ({"api_key": KEY, "read_key": READ_KEY}, None, (True, True, False, False)),
        ({"api_key": KEY, "read_key": READ_KEY}, "wrong", (True, True, False, False)),
        ({"api_key": KEY, "read_key": READ_KEY}, READ_KEY, (True, True, True, False)),
        ({"api_key": KEY, "read_key": READ_KEY}, KEY, (True, True, True, True)),
    ],
)
def test_access_says_which_requests_need_a_key_and_what_the_sent_key_allows(
    redis_url: str, celery: RecordingCelery, keys: dict, sent: str | None, expected: tuple
) -> None:
    with app_client(Settings(redis_url=redis_url, **keys), celery) as client:
        answer = client.get(f"{API}/access", headers={"X-API-Key": sent} if sent else {})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["writes_need_key"], body["reads_need_key"], body["can_read"], body["can_write"]) == expected
    assert KEY not in answer.text and READ_KEY not in answer.text


# --- start-up: a read key needs an API key beside it, and a different one ---------------------------


def test_a_read_key_alone_or_equal_to_the_api_key_is_refused() -> None:
    assert read_key_without_api_key(Settings(api_key=KEY, read_key=READ_KEY)) is None
    assert read_key_without_api_key(Settings(api_key=KEY)) is None
    alone = read_key_without_api_key(Settings(read_key=READ_KEY))
    assert alone is not None and "without FF_API_KEY" in alone
    same = read_key_without_api_key(Settings(api_key=KEY, read_key=KEY))
    assert same is not None and "equal to FF_API_KEY" in same


def test_python_m_api_refuses_to_start_with_a_read_key_and_no_api_key(redis_url: str) -> None:
    env = environment_without("FF_") | {"FF_REDIS_URL": redis_url, "FF_READ_KEY": READ_KEY}
    command = [sys.executable, "-m", "api", "--port", str(free_port())]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith("error: refusing to start with FF_READ_KEY but without FF_API_KEY")
