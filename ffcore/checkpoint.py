"""Trained models as safetensors: the weights plus the run configuration in the file's metadata.

Loading parses JSON and raw tensors only; nothing is ever unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ffcore.config import RunConfig
from ffcore.model import FFNetwork
from ffcore.train import check_format, read_metadata

MODEL_FORMAT = "ffcore-model/2"  # version 1: standardised pixels, refused (see train.check_format)
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_model(model: FFNetwork, config: RunConfig, extra: dict[str, str] | None = None) -> bytes:
    """The model's weights and configuration as one safetensors blob."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": MODEL_FORMAT, "config": config.model_dump_json(), **(extra or {})}
    return save_safetensors(tensors, metadata=metadata)


def load_model(data: bytes, device: str = "cpu") -> tuple[FFNetwork, RunConfig]:
    """Rebuild a model saved by `save_model`; raises ValueError for anything else."""
    try:
        metadata = read_metadata(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError("not a safetensors file") from error
    check_format(metadata.get("format"), MODEL_FORMAT, "an ffcore model")
    config = RunConfig.model_validate_json(metadata["config"])
    model = FFNetwork(config)
    model.load_state_dict(load_safetensors(data))
    return model.to(device).eval(), config


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file so that a reader, or a run killed mid-write, sees the old or the new one whole."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def save_model_dir(directory: str | Path, model: FFNetwork, config: RunConfig) -> Path:
    """Write model.safetensors and config.json (the same configuration, for people) into a folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / MODEL_FILE, save_model(model, config))
    (directory / CONFIG_FILE).write_text(config.to_json() + "\n")
    return directory / MODEL_FILE


def load_model_dir(path: str | Path, device: str = "cpu") -> tuple[FFNetwork, RunConfig]:
    """Load from a folder written by `save_model_dir`, or from the .safetensors file itself."""
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no model at {file}; expected a folder holding {MODEL_FILE}")
    return load_model(file.read_bytes(), device)
