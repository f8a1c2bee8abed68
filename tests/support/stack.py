"""Start the whole local stack the way `make up` does (honcho + the Procfile) for tests.

    with start_stack(tmp_path) as stack:
        httpx.get(f"{stack.api_url}/readyz")      # stack.dashboard_url, stack.redis_url too
        stack.interrupt()                          # Ctrl-C, as a user would (optional)

Every process gets free ports on 127.0.0.1 and FF_* settings from the arguments; a developer's
.env file is ignored. The block's end sends SIGINT to honcho and kills whatever survives, also when
the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.api import API
from tests.support.paths import VENV_BIN
from tests.support.ports import free_port
from tests.support.processes import Process, environment_without, launch
from tests.support.waiting import wait_for

# --- processes, read from /proc (no extra dependency) ---------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (in parentheses) may contain spaces: split after its closing one.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def descendants(root_pid: int) -> dict[int, int]:
    """Every live descendant of `root_pid`: pid -> start time (to tell a reused pid apart)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            state, parent, start = stat
            if state != "Z":
                children.setdefault(parent, []).append(int(entry.name))
                starts[int(entry.name)] = start
    found: dict[int, int] = {}
    pending = [root_pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found[child] = starts[child]
            pending.append(child)
    return found


def alive(pid: int, start_time: int) -> bool:
    """True while that process (not a later one with the same pid) runs and is not a zombie."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and stat[2] == start_time


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --- the stack -------------------------------------------------------------------------------------


@dataclass
class RunningStack:
    api_url: str  # http://127.0.0.1:PORT/api/v1
    dashboard_url: str  # http://127.0.0.1:PORT
    redis_url: str
    api_port: int
    dashboard_port: int
    honcho: Process
    seen: dict[int, int] = field(default_factory=dict)  # every process the stack ran: pid -> start

    def log(self) -> str:
        return self.honcho.log()

    def processes(self) -> dict[int, str]:
        """The stack's live processes (honcho's descendants): pid -> command line."""
        current = descendants(self.honcho.pid)
        self.seen.update(current)
        return {pid: command_line(pid) for pid in current}

    def interrupt(self, timeout_s: float = 30.0) -> int:
        """Ctrl-C: SIGINT to honcho, then wait for it to stop everything; honcho's exit code."""
        self.processes()
        self.honcho.send(signal.SIGINT, group=False)
        return self.honcho.wait(timeout=timeout_s)

    def survivors(self) -> dict[int, str]:
        """Processes the stack ran that are still alive."""
        return {pid: command_line(pid) for pid, start in self.seen.items() if alive(pid, start)}


@contextlib.contextmanager
def start_stack(
    work_dir: Path | None = None,
    *,
    redis_url: str | None = None,
    data_dir: str | None = None,
    env: dict[str, str] | None = None,
    wait_for_worker: bool = True,
    startup_timeout_s: float = 150.0,
) -> Iterator[RunningStack]:
    """Run `honcho start` in the repository until the block ends.

    redis_url: use that server (the stack's `redis` process then only stays alive); None: the stack
    starts its own redis-server on a free port, with its files under `work_dir`. data_dir: FF_DATA_DIR
    for the worker. env: more FF_* settings (or OMP_NUM_THREADS, 1 unless given). Returns once the
    API answers /healthz, /readyz lists a worker (unless wait_for_worker is False) and the dashboard
    answers its health check.
    """
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="ff-stack-"))
    api_port, dashboard_port = free_port(), free_port()
    redis_url = redis_url or f"redis://127.0.0.1:{free_port()}/0"
    child_env = environment_without("FF_")
    child_env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            # One PyTorch (OpenMP) thread per process: on a busy 2-core CI machine the worker's and the
            # API's spinning threads otherwise slow training several times over. `env` may override it.
            "OMP_NUM_THREADS": "1",
            "FF_REDIS_URL": redis_url,
            "FF_REDIS_DATA_DIR": str(work_dir / "redis"),
            "FF_API_HOST": "127.0.0.1",
            "FF_API_PORT": str(api_port),
            "FF_DASHBOARD_HOST": "127.0.0.1",
            "FF_DASHBOARD_PORT": str(dashboard_port),
        }
    )
    if data_dir is not None:
        child_env["FF_DATA_DIR"] = data_dir
    child_env.update(env or {})
    honcho = launch(
        # -e /dev/null: a developer's .env must not change what the test runs.
        [str(VENV_BIN / "honcho"), "start", "--no-colour", "-e", "/dev/null"],
        env=child_env,
        log_path=work_dir / "honcho.log",  # a session of its own: pytest's Ctrl-C stays with pytest
    )
    stack = RunningStack(
        api_url=f"http://127.0.0.1:{api_port}{API}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        redis_url=redis_url,
        api_port=api_port,
        dashboard_port=dashboard_port,
        honcho=honcho,
    )
    try:
        _wait_until_ready(stack, startup_timeout_s, wait_for_worker)
        yield stack
    finally:
        _stop(stack)


def _wait_until_ready(stack: RunningStack, timeout_s: float, wait_for_worker: bool) -> None:
    deadline = time.monotonic() + timeout_s
    checks = {
        "the API's /healthz": lambda: httpx.get(f"{stack.api_url}/healthz", timeout=2).status_code == 200,
        "a worker in /readyz": lambda: (
            not wait_for_worker or bool(httpx.get(f"{stack.api_url}/readyz", timeout=2).json()["workers"])
        ),
        "the dashboard's health check": lambda: (
            httpx.get(f"{stack.dashboard_url}/_stcore/health", timeout=2).status_code == 200
        ),
    }
    for name, check in checks.items():

        def running_and(check=check) -> bool:
            stack.processes()
            if stack.honcho.poll() is not None:
                raise RuntimeError(
                    f"honcho exited with code {stack.honcho.returncode}:\n{stack.log()[-4000:]}"
                )
            return check()

        wait_for(
            running_and,
            max(0.0, deadline - time.monotonic()),
            lambda name=name: f"an answer from {name}; the stack's log:\n{stack.log()[-4000:]}",
            interval_s=0.25,
            ignore=(httpx.TransportError, ValueError, KeyError),
        )


def _stop(stack: RunningStack) -> None:
    """SIGINT (what Ctrl-C sends), then SIGKILL for anything the stack started that survived."""
    if stack.honcho.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            stack.interrupt(timeout_s=20)
    if stack.honcho.poll() is None:
        stack.honcho.kill()
    for pid in stack.survivors():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
