"""Fixtures of the dashboard tests: the real API and worker on the real redis-server, one trained run,
the dashboard pointed at that API, and Fashion-MNIST for the pages that name garments."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from tests.dashboard.fake_api import FakeApi
from tests.support.api import RunningApi, post_run, start_api, wait_for_run_status
from tests.support.settings import TestSettings
from tests.support.worker import WorkerProcess, start_worker

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


@pytest.fixture(scope="module")
def stack(redis_server, mnist_dir) -> Iterator[ServiceStack]:
    """`python -m api` and `python -m worker` on a fresh database, with one finished tiny run."""
    url = f"redis://{redis_server.host}:{redis_server.port}/{STACK_DB}"
    redis.Redis.from_url(url).flushdb()
    with start_api(url) as api, start_worker(url, mnist_dir, metrics_every_steps=5) as worker:
        stack = ServiceStack(api=api, worker=worker, trained_run="")
        with stack.http() as http:
            stack.trained_run = post_run(http, TINY_RUN)
            run = wait_for_run_status(http, stack.trained_run, {"succeeded", "failed"}, TRAIN_TIMEOUT_S)
            assert run["status"] == "succeeded", run
        yield stack


@pytest.fixture
def point_dashboard_at(monkeypatch) -> Callable[[str], None]:
    """Make the dashboard's next AppTest talk to the API at `url` (settings, the shared connection pool and
    run options are cached)."""
    from dashboard.api_session import fetch_run_options, shared_client
    from dashboard.settings import get_settings

    def forget() -> None:
        get_settings.cache_clear()
        shared_client.clear()
        fetch_run_options.clear()

    def point(url: str) -> None:
        monkeypatch.setenv("FF_API_URL", url)
        forget()

    yield point
    forget()


@pytest.fixture
def fake_api(point_dashboard_at) -> Iterator[FakeApi]:
    """An in-memory API (tests/dashboard/fake_api.py) served on a free port, the dashboard pointed at it."""
    fake = FakeApi()
    with fake.serve() as url:
        point_dashboard_at(url)
        yield fake


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory) -> str:
    """A torchvision root holding MNIST/raw and FashionMNIST/raw, from FF_TEST_DATA_DIR (as mnist_dir)."""
    source = TestSettings().data_root
    root = tmp_path_factory.mktemp("fashion-datasets")
    for folder in ("MNIST", "FashionMNIST"):
        if not (source / folder / "raw").is_dir():
            pytest.fail(f"{folder} not found under {source}; set FF_TEST_DATA_DIR to a torchvision root")
        (root / folder).symlink_to((source / folder).resolve(), target_is_directory=True)
    return str(root)
