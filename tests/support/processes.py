"""Start child processes for tests and benchmarks, each in a process group of its own, and stop them.

    with launch([sys.executable, "-m", "api"], env=env, log_path=tmp_path / "api.log") as server:
        ...                      # server.pid, server.poll(), server.log()
    # the block's end: SIGTERM to the group, SIGKILL after the timeout

A child in a session of its own gets no Ctrl-C from the pytest terminal and takes its own children
with it when its group is signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.paths import REPO


class Process:
    """A child started by `launch`; stopped (group-wide) when used as a context manager ends."""

    def __init__(self, popen: subprocess.Popen, log_path: Path | None, stop_timeout_s: float) -> None:
        self.popen = popen
        self.log_path = log_path
        self.stop_timeout_s = stop_timeout_s

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout=timeout)

    def log(self) -> str:
        """Everything the child wrote (stdout and stderr) so far; '' when its output was discarded."""
        return self.log_path.read_text(errors="replace") if self.log_path is not None else ""

    def send(self, sig: int, *, group: bool = True) -> None:
        """Send `sig` to the child's process group (what a terminal or honcho does), or to it alone."""
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.popen.pid, sig)
            else:
                self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL to the group: it dies mid-whatever, as on a lost machine."""
        self.send(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout_s: float | None = None, sig: int = signal.SIGTERM) -> int:
        """`sig` (SIGTERM: a warm shutdown) to the group, SIGKILL after `timeout_s`; the exit status."""
        if self.popen.poll() is None:
            self.send(sig)
            try:
                self.popen.wait(timeout=self.stop_timeout_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def environment_without(*prefixes: str) -> dict[str, str]:
    """This process's environment less the variables named with `prefixes` (a developer's FF_* settings)."""
    return {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}


def launch(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    log_path: Path | None = None,
    stop_timeout_s: float = 10.0,
) -> Process:
    """Start `args` in a new session; stdout and stderr go to `log_path` (None: discarded)."""
    if log_path is None:
        popen = subprocess.Popen(
            list(args), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    else:
        with open(log_path, "wb") as log_file:  # the child keeps its own copy of the descriptor
            popen = subprocess.Popen(
                list(args), cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
    return Process(popen, log_path, stop_timeout_s)


@contextlib.contextmanager
def launched_with_log(
    args: Sequence[str], *, name: str, env: dict[str, str] | None = None, stop_timeout_s: float = 10.0
) -> Iterator[Process]:
    """`launch` with its output in a temporary file, stopped when the block ends.

    Then the log's tail goes to stderr (pytest shows captured stderr only for failing tests: there
    it helps most) and the file is deleted.
    """
    fd, name_of_file = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    os.close(fd)
    log_path = Path(name_of_file)
    try:
        with launch(args, env=env, log_path=log_path, stop_timeout_s=stop_timeout_s) as process:
            yield process
    finally:
        with contextlib.suppress(OSError):
            sys.stderr.write(f"--- log of {name} ---\n{log_path.read_text(errors='replace')[-20000:]}\n")
        log_path.unlink(missing_ok=True)
