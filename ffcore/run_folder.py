"""A training run's folder (`python -m ffcore train --out`): its files, and picking up the run saved there.

`train` writes summary.json, metrics.jsonl, state.safetensors (the resumable state, refreshed every
epoch) and the model's two files (ffcore/checkpoint.py) into one folder per run; `sweep` keeps one such
folder per run of its experiment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from ffcore.config import RunConfig

if TYPE_CHECKING:  # torch is imported only when a run is resumed: `python -m ffcore --help` stays quick
    from ffcore.train import Trainer

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
STATE_FILE = "state.safetensors"
MODEL_FILE = "model.safetensors"  # the model's two files, as checkpoint.save_model_dir writes them
CONFIG_FILE = "config.json"
RUN_FILES = (STATE_FILE, MODEL_FILE, CONFIG_FILE, SUMMARY_FILE, METRICS_FILE)  # every file `train` writes
# Settings that say where a run reads its data and trains, not what it is: a resume may change them.
WHERE_SETTINGS = ("data_dir", "device")


class RunFolderError(ValueError):
    """The folder's saved run cannot be resumed as asked; the message says why and what to do."""


def files_of_a_run(folder: Path) -> list[str]:
    """The files of a run that `folder` holds (none when it holds no run, or does not exist)."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def resume(
    state_path: Path,
    asked: RunConfig | None = None,
    *,
    device: str | None = None,
    data_dir: str | None = None,
    log_every: int = 50,
) -> Trainer:
    """The Trainer of the run saved at `state_path`, reading its data from `data_dir` and training on
    `device` when given. RunFolderError when `asked` (the configuration a command line names, if it
    names one) is another run than the saved one, or the file is not a training state this version
    reads; DeviceError when the run trained on a GPU this machine lacks, DataError when its data is
    not where it looks."""
    from ffcore.checkpoint import load_training_state, read_metadata
    from ffcore.data import DataError
    from ffcore.device import DeviceError

    data = state_path.read_bytes()
    try:
        saved = RunConfig.model_validate_json(read_metadata(data)["config"])
    except (KeyError, ValueError, SafetensorError) as error:
        raise RunFolderError(
            f"{state_path}: not a training state this version can resume ({error})"
        ) from error
    if asked is not None:
        differ = [
            f"{name} {getattr(saved, name)!r} there, {getattr(asked, name)!r} asked"
            for name in RunConfig.model_fields
            if name not in WHERE_SETTINGS and getattr(asked, name) != getattr(saved, name)
        ]
        if differ:
            raise RunFolderError(
                f"--preset and --set ask for another run than the one saved in {state_path.parent}: "
                f"{'; '.join(differ)}; leave them out to resume it as saved, or give another --out"
            )
    try:
        return load_training_state(data, device=device, data_dir=data_dir, log_every=log_every)
    except DeviceError as error:  # the run trained on a GPU that this machine lacks
        raise DeviceError(f"{error}; --device cpu continues the run on the CPU") from error
    except DataError:
        raise
    except (ValueError, RuntimeError, SafetensorError) as error:  # RuntimeError: tensors of other shapes
        reason = str(error).splitlines()[0]
        raise RunFolderError(
            f"{state_path}: not a training state this version can resume ({reason})"
        ) from error


def drop_metrics_after(path: Path, step: int) -> None:
    """Keep only the records up to `step`: a run killed after its last saved state had already
    written records for steps that the resumed run trains again."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        path.write_text("".join(kept))
