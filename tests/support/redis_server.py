"""A throwaway redis-server for benchmarks and scripts (the test suite uses pytest-redis)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tests.support.ports import free_port
from tests.support.processes import launch
from tests.support.waiting import wait_for


@contextmanager
def redis_server() -> Iterator[str]:
    """Start redis-server on a free local port without persistence; yield its URL once it answers."""
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server not found: install it (make system-deps)")
    port = free_port()
    args = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    url = f"redis://127.0.0.1:{port}/0"
    with launch(args) as process:
        client = redis.Redis.from_url(url)

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {process.returncode}")
            return client.ping()

        wait_for(answers, 10, f"redis-server on port {port} to answer", 0.05, ignore=(redis.ConnectionError,))
        yield url
