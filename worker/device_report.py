"""What a worker says about its device when it starts, and why a GPU it was asked for is not there.

A GPU worker logs the GPU's name, memory and compute capability, PyTorch's CUDA build and the CUDA
version the NVIDIA driver supports; a CPU worker logs its threads. When a GPU was asked for and
PyTorch sees none, `explain_missing_gpu` says which of the usual causes it is (a CPU build of
PyTorch, no driver visible, a driver too old for PyTorch's CUDA build), so that a misconfigured GPU
worker stops with one clear line instead of training on the CPU.
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

# Where the NVIDIA driver's CUDA library is (the container toolkit mounts it into GPU containers).
_LIBCUDA = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"


def cuda_driver_version() -> tuple[int, int] | None:
    """The CUDA version the installed NVIDIA driver supports, e.g. (12, 4); None when no driver is visible.

    PyTorch does not expose it (torch.version.cuda is what PyTorch was built for), so it is asked of
    the driver's own library with cuDriverGetVersion, which needs no GPU context.
    """
    try:
        libcuda = ctypes.CDLL(_LIBCUDA)
        version = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    return version.value // 1000, version.value % 1000 // 10


def torch_cuda_build() -> tuple[int, int] | None:
    """The CUDA version PyTorch was built for, e.g. (13, 0); None for a CPU build."""
    if not torch.version.cuda:
        return None
    major, _, minor = torch.version.cuda.partition(".")
    return int(major), int(minor.split(".")[0] or 0)


def _version(version: tuple[int, int] | None) -> str:
    return "?" if version is None else f"{version[0]}.{version[1]}"


def describe_device(device: str) -> str:
    """One line about where this worker trains: 'cpu' or 'cuda:N' (a GPU PyTorch sees)."""
    if device == "cpu":
        return (
            f"the CPU, {torch.get_num_threads()} PyTorch threads ({os.cpu_count()} cores); "
            f"torch {torch.__version__}"
        )
    properties = torch.cuda.get_device_properties(device)
    driver = cuda_driver_version()
    return (
        f"{device}: {properties.name}, {properties.total_memory / 2**30:.1f} GiB, compute capability "
        f"{properties.major}.{properties.minor}; torch {torch.__version__} built for CUDA "
        f"{torch.version.cuda}, NVIDIA driver for CUDA {_version(driver) if driver else 'unknown'}"
    )


def explain_missing_gpu(reason: str) -> str:
    """`reason` (ffcore.device's word that a GPU asked for is not there), with why and what to do."""
    build, driver = torch_cuda_build(), cuda_driver_version()
    said = reason.rstrip(".")
    if build is None:
        return (
            f"{said}. This PyTorch ({torch.__version__}) is a CPU build: install a CUDA build of PyTorch, "
            "or start the worker with --device cpu (FF_WORKER_DEVICE=cpu)"
        )
    built_for = f"torch {torch.__version__} is built for CUDA {_version(build)}"
    if driver is None:
        return (
            f"{said}. {built_for}, and no NVIDIA driver is visible to this process ({_LIBCUDA} cannot be "
            "loaded): in Docker, pass the GPU in (the NVIDIA Container Toolkit and the service's GPU "
            "reservation); on a machine without a GPU, start the worker with --device cpu "
            "(FF_WORKER_DEVICE=cpu)"
        )
    if driver < build:
        return (
            f"{said}. {built_for}, but the NVIDIA driver supports CUDA {_version(driver)} only: update "
            f"the driver, or install a PyTorch built for CUDA {_version(driver)} or older"
        )
    return f"{said}. {built_for} and the NVIDIA driver supports CUDA {_version(driver)}; check nvidia-smi"
