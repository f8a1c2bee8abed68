"""Where to compute: the one device resolver of the CLI, the Trainer and the worker.

A run's config says `auto`, `cpu` or `cuda`; a worker or the CLI may also be pinned to `cuda:N`.
The answer is a concrete `torch.device`, or a `DeviceError` that says what PyTorch sees instead of
a traceback from deep inside torch.
"""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """The requested device does not exist here (no GPU, an index past the last GPU, an unknown name)."""


def resolve_device(requested: str) -> torch.device:
    """'auto' -> the current GPU if PyTorch sees one, else the CPU; 'cpu'; 'cuda' or 'cuda:N'."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return torch.device("cpu")
    kind, _, index = requested.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise DeviceError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise DeviceError(f"device {requested!r} was asked for, but PyTorch sees no CUDA GPU")
    if index and int(index) >= count:
        raise DeviceError(f"device {requested!r} was asked for, but PyTorch sees {count} CUDA GPU(s)")
    return torch.device(requested)


def run_device(requested: str) -> str:
    """A --device word ('auto', 'cpu', 'cuda' or 'cuda:N') as a run configuration's device.

    Checks it against this machine first (DeviceError otherwise). A run configuration says only
    'cuda', so 'cuda:N' makes GPU N the current one, which 'cuda' then means (as the worker does).
    """
    device = resolve_device(requested)
    if requested.startswith("cuda:"):
        torch.cuda.set_device(device)
        return "cuda"
    return requested
