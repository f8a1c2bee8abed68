"""ffcore's files: trained models and resumable training states, as safetensors.

A model file holds the weights plus the run configuration in its metadata; a training state also
holds the optimizer's buffers, the random generator (and the kind of device it ran on) and the
position in the epoch, so that a run continues exactly as if it had never stopped. A state loads on
any device: tensors go where the new Trainer's parameters are, and a generator from the other kind
of device is reseeded (ffcore.rng), which keeps the run deterministic but no longer bit-exact.
Loading parses JSON and raw tensors only; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ffcore.config import RunConfig
from ffcore.data import Dataset
from ffcore.model import FFNetwork
from ffcore.rng import restore_generator
from ffcore.run_folder import CONFIG_FILE, MODEL_FILE
from ffcore.train import Trainer

MODEL_FORMAT = "ffcore-model/2"
STATE_FORMAT = "ffcore-training-state/2"
# Version 2 of models and training states: networks see raw pixel intensities in [0, 1]. Version 1
# files were trained on standardised pixels and would quietly predict wrongly, so they are refused.
STANDARDISED_INPUT_FORMATS = {"ffcore-model/1": "model", "ffcore-training-state/1": "training state"}


def read_metadata(data: bytes) -> dict[str, str]:
    """The JSON metadata of a safetensors blob, without loading its tensors."""
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    return header.get("__metadata__", {})


def check_format(found: str | None, expected: str, what: str) -> None:
    """Raise ValueError unless a file's format is `expected`, saying why an old one is refused."""
    if found == expected:
        return
    if found in STANDARDISED_INPUT_FORMATS:
        raise ValueError(
            f"an ffcore {STANDARDISED_INPUT_FORMATS[found]} of format {found}, from before ffcore fed "
            "raw pixel intensities: it expects standardised pixels and would predict wrongly; train "
            "it again"
        )
    raise ValueError(f"not {what} (format {found!r})")


# --- models ----------------------------------------------------------------------------------------


def save_model(model: FFNetwork, config: RunConfig, extra: dict[str, str] | None = None) -> bytes:
    """The model's weights and configuration as one safetensors blob."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": MODEL_FORMAT, "config": config.model_dump_json(), **(extra or {})}
    return save_safetensors(tensors, metadata=metadata)


def load_model(data: bytes, device: str | torch.device = "cpu") -> tuple[FFNetwork, RunConfig]:
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


def load_model_dir(path: str | Path, device: str | torch.device = "cpu") -> tuple[FFNetwork, RunConfig]:
    """Load from a folder written by `save_model_dir`, or from the .safetensors file itself."""
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no model at {file}; expected a folder holding {MODEL_FILE}")
    return load_model(file.read_bytes(), device)


# --- training states -------------------------------------------------------------------------------


def training_state_bytes(config: RunConfig) -> int:
    """About how large `save_training_state` makes a run of `config`: every weight and buffer, one
    optimizer buffer per weight for SGD with momentum (two for Adam), the data order. Computed
    without allocating the network, so a service can refuse a run whose state it could not store."""
    with torch.device("meta"):
        model = FFNetwork(config)
    weights = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    slots = 2 if config.optimizer == "adam" else (1 if config.momentum > 0 else 0)
    order = 60_000 * 8  # a permutation of the training images, int64
    return (weights * (1 + slots) + buffers) * 4 + order


def save_training_state(trainer: Trainer) -> bytes:
    """Everything needed to continue exactly here: weights, optimizer, data order, RNG."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in trainer.model.state_dict().items()}
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    for j, param in enumerate(params):
        for key, value in trainer.optimizer.state.get(param, {}).items():
            if torch.is_tensor(value):  # SGD: momentum_buffer; Adam: exp_avg, exp_avg_sq, step
                tensors[f"optimizer.{j}.{key}"] = value.contiguous().cpu()
    tensors["rng"] = trainer.rng.get_state().cpu()
    if trainer.order is not None:
        tensors["order"] = trainer.order.cpu()
    metadata = {
        "format": STATE_FORMAT,
        "config": trainer.config.model_dump_json(),
        "epoch": str(trainer.epoch),
        "step": str(trainer.step),
        "batch": str(trainer.next_batch),
        "rng_device": trainer.rng.device.type,  # a CPU and a CUDA generator's states differ in kind
    }
    return save_safetensors(tensors, metadata=metadata)


def load_training_state(
    data: bytes,
    dataset: Dataset | None = None,
    *,
    device: str | None = None,
    data_dir: str | None = None,
    log_every: int = 50,
) -> Trainer:
    """Rebuild a Trainer from `save_training_state`; training continues as if never interrupted.

    `dataset` saves loading the configured data set again; `device` and `data_dir` override the saved
    config's (the same data found elsewhere, e.g. a relative folder resumed from another directory).
    On another kind of device than the state was saved on, the generator is reseeded (with a
    warning) and `trainer.exact_resume` is False.
    """
    metadata = read_metadata(data)
    check_format(metadata.get("format"), STATE_FORMAT, "an ffcore training state")
    config = RunConfig.model_validate_json(metadata["config"])
    where = {"device": device, "data_dir": data_dir}
    config = config.model_copy(update={key: value for key, value in where.items() if value is not None})
    trainer = Trainer(config, dataset, log_every=log_every)
    tensors = load_safetensors(data)
    model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    trainer.model.load_state_dict(model_state)
    # The optimizer's own load_state_dict puts each buffer on its parameter's device and dtype, and
    # Adam's step counter where this optimizer keeps it (on the parameter's device when fused, as
    # ours are; on the CPU otherwise). Parameters are numbered as in save_training_state.
    optimizer_state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, j, key = name.split(".", 2)
            optimizer_state.setdefault(int(j), {})[key] = value
    trainer.optimizer.load_state_dict({**trainer.optimizer.state_dict(), "state": optimizer_state})
    trainer.exact_resume = restore_generator(
        trainer.rng, tensors["rng"], metadata.get("rng_device"), config.seed, int(metadata["step"])
    )
    if "order" in tensors:
        trainer.order = tensors["order"].to(trainer.device)
    trainer.epoch = int(metadata["epoch"])
    trainer.step = int(metadata["step"])
    trainer.next_batch = int(metadata["batch"])
    return trainer
