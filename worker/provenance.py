"""How a run is being made: the versions, device and machine a worker records when it claims a run.

Collected once per attempt (`collect_provenance`); nothing here may fail a run, so every probe
falls back to None.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path

import torch

from fflab.store.keys import Provenance

log = logging.getLogger(__name__)

# The directory the worker's code lives in; a git checkout when running from the repository.
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def package_version() -> str | None:
    try:
        return importlib.metadata.version("fflab")
    except importlib.metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=4)
def checkout_commit(root: Path = SOURCE_ROOT) -> str | None:
    """`git rev-parse HEAD` of the checkout at `root`; None without git or outside a checkout."""
    if not (root / ".git").exists():
        return None
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        log.debug("git rev-parse failed", exc_info=True)
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def collect_provenance(device: str, git_commit: str | None = None, host: str | None = None) -> Provenance:
    """The provenance of an attempt on `device`; `git_commit` (FF_GIT_COMMIT) wins over the checkout's."""
    try:
        commit = git_commit or checkout_commit()
    except Exception:  # never fail a run over its provenance
        log.debug("no git commit", exc_info=True)
        commit = None
    return Provenance(
        fflab_version=package_version(),
        git_commit=commit,
        torch_version=torch.__version__,
        device=device,
        cpu_threads=torch.get_num_threads() if device == "cpu" else None,
        host=host or socket.gethostname(),
        python_version=platform.python_version(),
    )
