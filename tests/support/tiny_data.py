"""Random tiny data sets in place of MNIST for the worker's in-process tests, and a run config for them."""

from __future__ import annotations

import torch

from ffcore import Dataset, RunConfig
from ffcore.data import Split
from worker.training import DatasetCache


class TinyDatasets(DatasetCache):
    """Random 784-pixel images instead of MNIST: the worker's logic, not learning, is under test."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)

        def split(n: int) -> Split:
            return Split(
                torch.randn(n, 784, generator=generator), torch.randint(0, 10, (n,), generator=generator)
            )

        self.dataset = Dataset("mnist", split(400), split(100), split(100))
        self.requests: list[tuple[RunConfig, torch.device]] = []

    def get(self, config: RunConfig, device: torch.device) -> Dataset:
        self.requests.append((config, device))
        return self.dataset


def tiny_config(**overrides) -> RunConfig:
    """8 steps per epoch on TinyDatasets."""
    return RunConfig.from_preset("quick", **{"hidden": [16, 16], "batch_size": 50, "epochs": 3} | overrides)
