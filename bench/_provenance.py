"""The provenance block every benchmark's JSON records: what made its figures, and on what machine.

A benchmark merges it into its result (`{**figures, **provenance(load_before)}`) just before writing,
so that `at`, the load average and the command describe the measurement that has just ended. Not a
benchmark itself (the leading underscore keeps it out of the README's list of them).

Git falls back to None rather than fail a benchmark that has already measured.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.paths import REPO


def git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """`git -C ROOT ARGS`; None where git cannot run."""
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None


def checkout_commit(root: Path = REPO) -> str | None:
    """The full commit of the checkout at `root`; None without git or a checkout (an exported tree)."""
    result = git(root, "rev-parse", "HEAD")
    if result is None or result.returncode != 0:
        return None
    return result.stdout.strip() or None


def uncommitted_changes(root: Path = REPO) -> bool | None:
    """Whether tracked files differ from that commit: if so, the commit alone does not name the code."""
    result = git(root, "diff", "--quiet", "HEAD", "--")
    return {0: False, 1: True}.get(result.returncode) if result is not None else None


def command_line(argv: list[str] | None = None) -> str:
    """The command that ran the benchmark, as one would type it again from the repository root.

    `python -m bench.NAME` sets argv[0] to the module's file; write the `-m` form the README gives.
    """
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve() if argv and argv[0].endswith(".py") else None
    if script is not None and script.parent == REPO / "bench":
        argv = ["-m", f"bench.{script.stem}", *argv[1:]]
    return shlex.join([Path(sys.executable).name, *argv])


def torch_version() -> str:
    # Imported here, once the measuring is over: the benchmarks that do not train need not load torch.
    # Its metadata would not do: it drops the build's local part ("+cu130", "+cpu").
    import torch

    return torch.__version__


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what `platform` knows (often just the arch)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int | None:
    # The CPUs this process may run on (a container's or taskset's share), not all the host has.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count()


def load_average() -> list[float]:
    """Other processes' demand for the cores over the last 1, 5 and 15 minutes."""
    return [round(x, 2) for x in os.getloadavg()]


def provenance(load_before: list[float] | None = None) -> dict[str, Any]:
    """The command, code, software and machine behind a benchmark's figures, as JSON-ready values.

    `load_before`: the `load_average()` taken when measuring began, for benchmarks that take one.
    """
    machine: dict[str, Any] = {"platform": platform.platform(), "cpu": cpu_model(), "cpus": usable_cpus()}
    if load_before is not None:
        machine["load_average_before"] = load_before
    machine["load_average_after"] = load_average()
    return {
        "command": command_line(),
        "commit": checkout_commit(),
        "uncommitted_changes": uncommitted_changes(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "torch": torch_version(),
        "machine": machine,
    }
