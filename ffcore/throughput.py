"""Throughput: the clocks of one `Trainer.fit` call (training rate and wall time)."""

from __future__ import annotations

import time


class Throughput:
    """The clocks of one `fit` call: samples per second of training alone, and wall time.

    Training time runs from `start_steps` to `stop_steps`, so evaluation and checkpoints between
    epochs count neither in the session's rate nor in the next train record's.
    """

    def __init__(self) -> None:
        self.wall_start = time.perf_counter()
        self.train_seconds = 0.0
        self.samples = 0  # trained in this session
        self._steps_start = self._interval_start = time.perf_counter()
        self._interval_samples = 0  # since the last train record

    def start_steps(self) -> None:
        self._steps_start = self._interval_start = time.perf_counter()

    def stop_steps(self) -> None:
        self.train_seconds += time.perf_counter() - self._steps_start

    def add(self, samples: int) -> None:
        self.samples += samples
        self._interval_samples += samples

    def interval_rate(self) -> float:
        """Samples per second since the previous call; starts the next interval."""
        now = time.perf_counter()
        rate = self._interval_samples / max(now - self._interval_start, 1e-9)
        self._interval_start, self._interval_samples = now, 0
        return rate

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.wall_start
