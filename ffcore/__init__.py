"""ffcore: Hinton's Forward-Forward algorithm on MNIST, as a library and a command line."""

from ffcore.checkpoint import load_model, load_model_dir, save_model, save_model_dir
from ffcore.config import PRESETS, RunConfig
from ffcore.data import DataError, Dataset, load_dataset
from ffcore.model import FFNetwork, Prediction, predict
from ffcore.train import Trainer, TrainResult

__all__ = [
    "PRESETS",
    "DataError",
    "Dataset",
    "FFNetwork",
    "Prediction",
    "RunConfig",
    "TrainResult",
    "Trainer",
    "load_dataset",
    "load_model",
    "load_model_dir",
    "predict",
    "save_model",
    "save_model_dir",
]
