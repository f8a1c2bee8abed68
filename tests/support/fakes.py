"""Stand-ins for the API's unit tests: a Celery app that records what it would send, a tiny model."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ffcore.checkpoint import save_model
from ffcore.config import RunConfig
from ffcore.model import FFNetwork


@dataclass
class RecordingCelery:
    """Stands in for the Celery app in unit tests: records what would go to the broker."""

    sent: list[tuple[str, list, str | None]] = field(default_factory=list)
    queues: list[str | None] = field(default_factory=list)  # the queue each task named (None: default)
    revoked: list[str] = field(default_factory=list)

    def send_task(self, name: str, args: list, task_id: str | None = None, queue: str | None = None) -> None:
        self.sent.append((name, args, task_id))
        self.queues.append(queue)

    @property
    def control(self) -> RecordingCelery:
        return self

    def revoke(self, task_id: str) -> None:
        self.revoked.append(task_id)


def tiny_model_bytes(hidden: tuple[int, ...] = (40, 30), seed: int = 0) -> bytes:
    """An untrained small network as ffcore saves models (safetensors)."""
    config = RunConfig.from_preset("quick", hidden=list(hidden), scan_layers=None, head_layers=None)
    model = FFNetwork(config)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():  # a head that is not all zeros, so that its probabilities differ
        model.head.weight.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return save_model(model, config)
