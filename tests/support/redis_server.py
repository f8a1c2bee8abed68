"""A throwaway redis-server for benchmarks and scripts (the test suite uses pytest-redis)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tests.support.api import free_port


@contextmanager
def redis_server() -> Iterator[str]:
    """Start redis-server on a free local port without persistence; yield its URL once it answers."""
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server not found: install it (make system-deps)")
    port = free_port()
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
