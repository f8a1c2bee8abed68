"""Start the real API server (`python -m api`, uvicorn) in a subprocess for tests.

    with start_api(redis_url) as api:
        httpx.get(f"{api.base_url}/runs")

The server gets a free port on 127.0.0.1 and FF_* settings from the arguments; it is stopped (and
killed if it does not stop) when the block ends, also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningApi:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log_path: Path

    @property
    def base_url(self) -> str:
        """Where the routes live: {url}/api/v1."""
        return f"{self.url}/api/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def start_api(
    redis_url: str,
    *,
    api_key: str | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    startup_timeout_s: float = 60.0,
) -> Iterator[RunningApi]:
    """Run `python -m api` against `redis_url` until the block ends; `env` adds FF_* settings."""
    port = port or free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("FF_")}
    child_env.update({"FF_REDIS_URL": redis_url, "FF_API_HOST": "127.0.0.1", "FF_API_PORT": str(port)})
    if api_key is not None:
        child_env["FF_API_KEY"] = api_key
    child_env.update(env or {})
    log_file = tempfile.NamedTemporaryFile(prefix="ff-api-", suffix=".log", delete=False)  # noqa: SIM115
    log_path = Path(log_file.name)
    process = subprocess.Popen(
        [sys.executable, "-m", "api", "--log-level", "warning"],
        cwd=REPO,
        env=child_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    api = RunningApi(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait_until_healthy(api, startup_timeout_s)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        # pytest shows captured stderr only for failing tests: there the server's log helps most.
        sys.stderr.write(f"--- log of the API server ---\n{api.log()[-20000:]}\n")
        log_file.close()
        log_path.unlink(missing_ok=True)


def _wait_until_healthy(api: RunningApi, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if api.process.poll() is not None:
            raise RuntimeError(f"the API exited with code {api.process.returncode}:\n{api.log()[-3000:]}")
        try:
            if httpx.get(f"{api.base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the API did not become healthy within {timeout_s} s:\n{api.log()[-3000:]}")
