"""Fixtures of the dashboard tests: the real API and worker on the real redis-server, one trained run,
and the dashboard pointed at that API."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from tests.support.api import RunningApi, start_api
from tests.support.worker import WorkerProcess, start_worker, wait_for

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
# A database of its own on the session's redis-server: `redis_url` (other packages) flushes db 0.
STACK_DB = 3
# A small network that trains one epoch in seconds; the pages only show what the API answers.
TINY_RUN = {"preset": "quick", "overrides": {"hidden": [200, 200], "epochs": 1, "batch_size": 250}}
TRAIN_TIMEOUT_S = 420


@dataclass
class ServiceStack:
    api: RunningApi
    worker: WorkerProcess
    trained_run: str  # a succeeded run with a model

    @property
    def api_url(self) -> str:
        return self.api.url

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.api.base_url, timeout=30)


def submit(http: httpx.Client, body: dict) -> str:
    response = http.post("/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_for_status(http: httpx.Client, run_id: str, statuses: set[str], timeout_s: float) -> dict:
    def reached() -> dict | None:
        run = http.get(f"/runs/{run_id}").json()
        return run if run["status"] in statuses else None

    return wait_for(reached, timeout_s, f"run {run_id} to reach {sorted(statuses)}", interval_s=0.5)


@pytest.fixture(scope="module")
def stack(redis_server, mnist_dir) -> Iterator[ServiceStack]:
    """`python -m api` and `python -m worker` on a fresh database, with one finished tiny run."""
    url = f"redis://{redis_server.host}:{redis_server.port}/{STACK_DB}"
    redis.Redis.from_url(url).flushdb()
    with start_api(url) as api, start_worker(url, mnist_dir, metrics_every_steps=5) as worker:
        stack = ServiceStack(api=api, worker=worker, trained_run="")
        with stack.http() as http:
            stack.trained_run = submit(http, TINY_RUN)
            run = wait_for_status(http, stack.trained_run, {"succeeded", "failed"}, TRAIN_TIMEOUT_S)
            assert run["status"] == "succeeded", run
        yield stack


@pytest.fixture
def point_dashboard_at(monkeypatch) -> Callable[[str], None]:
    """Make the dashboard's next AppTest talk to the API at `url` (settings, client and run options are
    cached)."""
    from dashboard.api_session import fetch_run_options, get_client
    from dashboard.settings import get_settings

    def forget() -> None:
        get_settings.cache_clear()
        get_client.clear()
        fetch_run_options.clear()

    def point(url: str) -> None:
        monkeypatch.setenv("FF_API_URL", url)
        monkeypatch.delenv("FF_API_KEY", raising=False)
        forget()

    yield point
    forget()


def mnist_test_digits(mnist_dir: str, count: int) -> list[tuple[np.ndarray, int]]:
    """The first `count` MNIST test images (28x28 uint8, white ink on black) with their labels."""
    raw = Path(mnist_dir) / "MNIST" / "raw"
    images = np.frombuffer((raw / "t10k-images-idx3-ubyte").read_bytes(), np.uint8, offset=16)
    labels = np.frombuffer((raw / "t10k-labels-idx1-ubyte").read_bytes(), np.uint8, offset=8)
    return [(images[i * 784 : (i + 1) * 784].reshape(28, 28), int(labels[i])) for i in range(count)]


def png_bytes(pixels: np.ndarray, size: int = 28) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR).save(buffer, format="PNG")
    return buffer.getvalue()
