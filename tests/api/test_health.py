"""Liveness and readiness: Redis reachable or not, live workers listed with their device."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from fflab.settings import Settings
from tests.support import api as support_api
from tests.support.api import API, start_api
from tests.support.ports import free_port
from tests.support.processes import environment_without
from tests.support.store import TestStore


def test_healthz_answers_ok(client: TestClient) -> None:
    assert client.get(f"{API}/healthz").json() == {"status": "ok"}
    assert client.get("/healthz").status_code == 200


def test_readyz_lists_live_workers_with_their_device(client: TestClient, store: TestStore) -> None:
    store.workers.register("gpu-box-0", {"device": "cuda:0", "host": "gpu-box", "pid": 12, "run_id": None})
    store.workers.register("stale", {"device": "cpu", "host": "old", "pid": 1, "run_id": None})
    store.redis.hset("ff:workers", "stale", '{"name": "stale", "device": "cpu", "seen_at": 0}')

    response = client.get(f"{API}/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["redis"] is True
    assert [(w["name"], w["device"]) for w in body["workers"]] == [("gpu-box-0", "cuda:0")]


def test_readyz_is_503_with_a_message_when_redis_is_unreachable() -> None:
    # A port nothing listens on: connections are refused at once.
    app = create_app(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    with TestClient(app) as client:
        response = client.get(f"{API}/readyz")
        assert response.status_code == 503
        assert "Redis is unreachable" in response.json()["detail"]
        assert client.get(f"{API}/healthz").status_code == 200
        # Any other route answers 503 too, not 500.
        runs = client.get(f"{API}/runs")
        assert runs.status_code == 503
        assert "unreachable" in runs.json()["detail"]


def test_the_api_refuses_to_listen_openly_without_a_key(redis_url: str) -> None:
    env = environment_without("FF_") | {"FF_REDIS_URL": redis_url}
    command = [sys.executable, "-m", "api", "--host", "0.0.0.0", "--port", str(free_port())]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: refusing to start listening on 0.0.0.0 without FF_API_KEY")
    published = env | {"FF_PUBLISHED_HOST": "192.168.1.5", "FF_API_HOST": "0.0.0.0"}
    refused = subprocess.run(command[:3], env=published, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "published on 192.168.1.5 without FF_API_KEY" in refused.stderr


@pytest.mark.parametrize("env", [{"FF_API_KEY": "k"}, {"FF_INSECURE_OPEN_WITHOUT_KEY": "true"}])
def test_the_api_listens_openly_with_a_key_or_when_told_to(redis_url: str, env: dict) -> None:
    with start_api(redis_url, env=env | {"FF_API_HOST": "0.0.0.0"}) as api:
        assert httpx.get(f"{api.base_url}/healthz", timeout=5).status_code == 200


def test_a_server_whose_free_port_is_taken_before_it_binds_is_started_on_another(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:  # takes the first port start_api is given, as a race would
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, free_port()])
        monkeypatch.setattr(support_api, "free_port", lambda: next(ports))
        with start_api(redis_url) as api:
            assert api.url != f"http://127.0.0.1:{taken}"
            assert httpx.get(f"{api.base_url}/healthz", timeout=5).status_code == 200
        # a port the caller chose is not changed: its server's failure is the caller's to see
        with (
            pytest.raises(support_api.PortTakenError, match="address already in use"),
            start_api(redis_url, port=taken),
        ):
            pass
