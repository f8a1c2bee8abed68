"""ffcore: Hinton's Forward-Forward algorithm on MNIST, as a library and a command line."""

from ffcore.checkpoint import (
    load_model,
    load_model_dir,
    load_training_state,
    save_model,
    save_model_dir,
    save_training_state,
)
from ffcore.config import PRESETS, RunConfig
from ffcore.data import DataError, Dataset, load_dataset
from ffcore.device import DeviceError, resolve_device
from ffcore.evaluation import evaluate
from ffcore.experiment import ExperimentSpec
from ffcore.experiment_table import ExperimentTable
from ffcore.model import FFNetwork, Prediction, predict
from ffcore.train import DivergedError, Trainer, TrainResult

__all__ = [
    "PRESETS",
    "DataError",
    "Dataset",
    "DeviceError",
    "DivergedError",
    "ExperimentSpec",
    "ExperimentTable",
    "FFNetwork",
    "Prediction",
    "RunConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "load_dataset",
    "load_model",
    "load_model_dir",
    "load_training_state",
    "predict",
    "resolve_device",
    "run_sweep",
    "save_model",
    "save_model_dir",
    "save_training_state",
]


def __getattr__(name: str):
    # run_sweep needs Optuna; imported on first use, so that `import ffcore` does not load it.
    if name == "run_sweep":
        from ffcore.sweep import run_sweep

        return run_sweep
    raise AttributeError(f"module 'ffcore' has no attribute {name!r}")
