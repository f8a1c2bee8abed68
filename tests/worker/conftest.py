"""Fixtures for the worker's tests: a real Redis store, a worker context, tiny data, and a
redis-server of the test's own that it may stop or fill up."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import torch

from fflab.settings import Settings
from tests.support.ports import free_port
from tests.support.processes import Process, launch
from tests.support.store import TestStore
from tests.support.tiny_data import TinyDatasets
from tests.support.waiting import wait_for
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


@dataclass
class OwnRedis:
    """A redis-server that one test owns: it may stop it (SIGSTOP) or cap its memory."""

    url: str
    process: Process

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop_answering(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as on a stalled or frozen host."""
        self.process.send(signal.SIGSTOP, group=False)

    def answer_again(self) -> None:
        self.process.send(signal.SIGCONT, group=False)

    def fill_up(self) -> None:
        """Cap its memory at half what it uses now, evicting nothing: every write is refused ("OOM
        command not allowed") until `make_room`, however much the buffers of the calls around it
        allocate or free (hundreds of KB for a checkpoint)."""
        client = self.client()
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", client.info("memory")["used_memory"] // 2)

    def make_room(self) -> None:
        self.client().config_set("maxmemory", 0)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    """A redis-server of this test's own (not the session's, which other tests share), without
    persistence; stopped when the test ends, also if it left the server stopped."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server not found: install it (make system-deps)")
    port = free_port()
    args = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with launch(args, log_path=tmp_path / "redis.log") as process:
        server = OwnRedis(f"redis://127.0.0.1:{port}/0", process)
        answering = server.client().ping
        wait_for(answering, 10, f"redis-server on port {port}", 0.05, ignore=(redis.ConnectionError,))
        try:
            yield server
        finally:
            server.answer_again()
