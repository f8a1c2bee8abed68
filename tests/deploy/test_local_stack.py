"""The local stack without Docker: `make up` (honcho + Procfile + scripts/run-redis.sh)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis
from honcho.environ import parse_procfile

from tests.support.paths import REPO, VENV_BIN
from tests.support.ports import free_port, port_open
from tests.support.processes import Process, environment_without, launch
from tests.support.stack import start_stack
from tests.support.waiting import wait_for

PROCESSES = ("redis", "worker", "api", "dashboard")


def script_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    env = environment_without("FF_")
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "FF_REDIS_URL": redis_url,
            "FF_REDIS_DATA_DIR": str(tmp_path / "redis"),
        }
    )
    return env


def test_procfile_has_the_four_processes_and_make_up_runs_it_with_the_venv():
    procfile = parse_procfile((REPO / "Procfile").read_text())
    assert tuple(procfile.processes) == PROCESSES
    for name in ("worker", "api", "dashboard"):
        assert f"python -u -m {name}" in procfile.processes[name]

    recipe = subprocess.run(
        ["make", "-n", "-o", "venv", "up"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    # The same command start_stack runs: honcho from the venv, the venv's bin first on PATH.
    assert "honcho start" in recipe
    assert f'PATH="{REPO / ".venv" / "bin"}:$PATH"' in recipe


def start_run_redis(url: str, tmp_path: Path) -> Process:
    """scripts/run-redis.sh as honcho starts it: in a session of its own; output in tmp_path/run-redis.log."""
    script = str(REPO / "scripts" / "run-redis.sh")
    return launch([script], env=script_env(url, tmp_path), log_path=tmp_path / "run-redis.log")


def wait_for_port(port: int, process: Process, timeout_s: float = 30) -> None:
    def listening() -> bool:
        assert process.poll() is None, process.log()
        return port_open(port)

    wait_for(listening, timeout_s, lambda: f"redis-server to listen on port {port}:\n{process.log()}")


def wait_until_closed(port: int, timeout_s: float) -> float:
    """Seconds until nothing listens on the port any more."""
    start = time.monotonic()
    wait_for(lambda: not port_open(port), timeout_s, f"port {port} to close", interval_s=0.05)
    return time.monotonic() - start


@pytest.mark.timeout(60)
def test_run_redis_starts_a_persistent_noeviction_server_that_outlives_its_clients(tmp_path):
    port = free_port()
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    process = start_run_redis(url, tmp_path)
    try:
        wait_for_port(port, process)
        client = redis.Redis.from_url(url, retry_on_timeout=False)
        time.sleep(0.2)
        assert client.ping()
        config = client.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["dir"] == str(tmp_path / "redis")
        # The password in the URL protects the server.
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()

        # Ctrl-C (honcho's SIGTERM to the process group): Redis waits for its last client...
        client.set("run", "handed back")
        process.send(signal.SIGTERM)
        time.sleep(1.0)
        assert client.get("run") == b"handed back"
        client.close()
        # ... and stops soon after it let go.
        assert wait_until_closed(port, timeout_s=3) < 2
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert (tmp_path / "redis" / "appendonlydir").is_dir()


@pytest.mark.timeout(60)
def test_redis_server_dies_with_run_redis_even_on_sigkill(tmp_path):
    port = free_port()
    process = start_run_redis(f"redis://127.0.0.1:{port}/0", tmp_path)
    try:
        wait_for_port(port, process)
    finally:
        process.kill()  # SIGKILL to the group: what honcho does 5 s after Ctrl-C to stragglers
    wait_until_closed(port, timeout_s=5)


@pytest.mark.timeout(60)
def test_run_redis_uses_a_server_that_already_answers_and_stays_alive(redis_url, tmp_path):
    before = redis.Redis.from_url(redis_url).info("server")["process_id"]
    process = start_run_redis(redis_url, tmp_path)
    try:

        def decided() -> bool:
            assert process.poll() is None, process.log()
            return "already answers" in process.log()

        wait_for(decided, 30, lambda: f"run-redis.sh to find the server:\n{process.log()}")
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=2)  # it must not exit: honcho would stop the stack
        assert not (tmp_path / "redis").exists()  # no second server was started
    finally:
        process.stop()
    assert redis.Redis.from_url(redis_url).info("server")["process_id"] == before


@pytest.mark.timeout(60)
def test_waiting_for_redis_fails_with_a_message_on_a_wrong_password_or_no_server(redis_server, tmp_path):
    probe = [str(VENV_BIN / "python"), str(REPO / "scripts" / "local_redis.py"), "wait", "--timeout", "1"]
    nothing = subprocess.run(
        probe, env=script_env(f"redis://127.0.0.1:{free_port()}/0", tmp_path), capture_output=True, text=True
    )
    assert nothing.returncode == 1
    assert "no Redis server answered" in nothing.stderr

    server_url = f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(server_url)
    client.config_set("requirepass", "right")
    try:
        wrong = subprocess.run(
            probe,
            env=script_env(f"redis://:wrong@127.0.0.1:{redis_server.port}/0", tmp_path),
            capture_output=True,
            text=True,
        )
        right = subprocess.run(
            probe,
            env=script_env(f"redis://:right@127.0.0.1:{redis_server.port}/0", tmp_path),
            capture_output=True,
            text=True,
        )
    finally:
        redis.Redis(port=redis_server.port, password="right").config_set("requirepass", "")
    assert wrong.returncode == 1
    assert "refuses" in wrong.stderr and "wrong" not in wrong.stderr  # the password is not logged
    assert right.returncode == 0, right.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_honcho_starts_the_stack_and_ctrl_c_stops_every_process(tmp_path):
    with start_stack(tmp_path) as stack:
        ready = httpx.get(f"{stack.api_url}/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["redis"] is True
        assert len(ready.json()["workers"]) == 1

        processes = stack.processes()
        command_lines = "\n".join(processes.values())
        for expected in ("redis-server", "-m worker", "-m api", "-m dashboard"):
            assert expected in command_lines, command_lines
        redis_port = int(stack.redis_url.rsplit(":", 1)[1].split("/")[0])
        redis.Redis(port=redis_port).set("deploy-test", "persisted")

        assert stack.interrupt() is not None
        # honcho returns once its children are gone; give the kernel a moment to reap grandchildren.
        wait_for(lambda: not stack.survivors(), 10, lambda: f"none left: {stack.survivors()}", interval_s=0.2)
        assert stack.survivors() == {}
        for port in (redis_port, stack.api_port, stack.dashboard_port):
            assert not port_open(port), port

        # Redis stayed up until the worker had deregistered (it hands its run back the same way).
        with launch(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--dir", str(tmp_path / "redis")],
        ):  # fmt: skip
            client = redis.Redis(port=redis_port)
            wait_for(lambda: port_open(redis_port), 10, "the restarted redis-server")
            assert client.get("deploy-test") == b"persisted"  # the append-only file was kept...
            assert client.hlen("ff:workers") == 0, client.hgetall("ff:workers")  # ...after the worker left

        log = stack.log()
        for name in PROCESSES:  # every process's output reached the log with its name as prefix
            assert f" {name}.1 " in log, name
        assert "SIGINT received" in log
