"""The real API server (`python -m api`, uvicorn) for tests and benchmarks, and runs driven through it.

    with start_api(redis_url) as api:
        httpx.get(f"{api.base_url}/runs")

The server gets a free port on 127.0.0.1 and FF_* settings from the arguments; it is stopped (and
killed if it does not stop) when the block ends, also when the test fails.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from tests.support.ports import free_port
from tests.support.processes import Process, environment_without, launched_with_log
from tests.support.waiting import wait_for

API = "/api/v1"  # where the routes live (api.main.API_PREFIX), as a client writes it


@dataclass
class RunningApi:
    url: str  # http://127.0.0.1:PORT
    process: Process

    @property
    def base_url(self) -> str:
        """Where the routes live: {url}/api/v1."""
        return f"{self.url}{API}"

    def log(self) -> str:
        return self.process.log()


# free_port's port is free when it is picked, not when the server binds it: another test process's
# server may pick and take it in between (free_port keeps clear of the ports outgoing connections get,
# so that is rare). A server that finds its port taken is started again on another one.
BIND_ATTEMPTS = 3


class PortTakenError(RuntimeError):
    """The API server exited because its port was taken before it could bind it."""


@contextlib.contextmanager
def start_api(
    redis_url: str,
    *,
    api_key: str | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    startup_timeout_s: float = 60.0,
) -> Iterator[RunningApi]:
    """Run `python -m api` against `redis_url` until the block ends; `env` adds FF_* settings. Without
    `port`, on a free port (another one if it is taken before the server binds it)."""
    for attempt in range(1, BIND_ATTEMPTS + 1):
        try:
            with _started_api(redis_url, api_key, port or free_port(), env, startup_timeout_s) as api:
                yield api
                return
        except PortTakenError:
            if port is not None or attempt == BIND_ATTEMPTS:
                raise


@contextlib.contextmanager
def _started_api(
    redis_url: str, api_key: str | None, port: int, env: dict[str, str] | None, startup_timeout_s: float
) -> Iterator[RunningApi]:
    child_env = environment_without("FF_")
    child_env.update({"FF_REDIS_URL": redis_url, "FF_API_HOST": "127.0.0.1", "FF_API_PORT": str(port)})
    if api_key is not None:
        child_env["FF_API_KEY"] = api_key
    child_env.update(env or {})
    args = [sys.executable, "-m", "api", "--log-level", "warning"]
    with launched_with_log(args, name="the API server", env=child_env) as process:
        api = RunningApi(url=f"http://127.0.0.1:{port}", process=process)

        def healthy() -> bool:
            if process.poll() is not None:
                log = api.log()[-3000:]
                taken = "address already in use" in log
                error = PortTakenError if taken else RuntimeError
                raise error(f"the API exited with code {process.returncode}:\n{log}")
            return httpx.get(f"{api.base_url}/healthz", timeout=1.0).status_code == 200

        wait_for(
            healthy,
            startup_timeout_s,
            lambda: f"the API to become healthy; its log:\n{api.log()[-3000:]}",
            ignore=(httpx.TransportError,),
        )
        yield api


def post_run(http: httpx.Client, body: dict) -> str:
    """POST /runs with `body` on an API client (base_url: the API's base_url); the new run's id."""
    response = http.post("/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_for_run_status(http: httpx.Client, run_id: str, statuses: set[str], timeout_s: float) -> dict:
    """GET /runs/{id} until its status is one of `statuses`; that answer."""

    def reached() -> dict | None:
        run = http.get(f"/runs/{run_id}").json()
        return run if run["status"] in statuses else None

    return wait_for(reached, timeout_s, f"run {run_id} to reach {sorted(statuses)}", interval_s=0.5)
