"""Streaming a run's metrics to Redis while it trains, cheaply.

ffcore hands over a metric record every `log_every` steps and one per evaluation. The publisher
buffers them and writes the buffer, together with the run record's progress fields, in one Redis
round trip: at every evaluation, and otherwise at most every `flush_interval_s`. That keeps live
curves live without a round trip per record on a fast GPU.
"""

from __future__ import annotations

import time
from typing import Any

from fflab.store import RunStore


class ProgressPublisher:
    def __init__(
        self,
        store: RunStore,
        run_id: str,
        worker: str,
        total_steps: int,
        steps_per_epoch: int,
        flush_interval_s: float = 0.5,
    ):
        self.store = store
        self.run_id = run_id
        self.worker = worker
        self.total_steps = max(total_steps, 1)
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.flush_interval_s = flush_interval_s
        self._buffer: list[dict[str, Any]] = []
        self._fields: dict[str, Any] = {}
        self._last_flush = time.monotonic()

    def __call__(self, record: dict[str, Any]) -> None:
        """The Trainer's `on_metrics` callback."""
        self._buffer.append(record)
        self._fields.update(self._run_fields(record))
        if record.get("kind") == "eval" or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def _run_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        step = int(record.get("step", 0))
        fields: dict[str, Any] = {
            "step": step,
            "epoch": step // self.steps_per_epoch,
            "progress": min(step / self.total_steps, 1.0),
        }
        if record.get("kind") == "train":
            fields["samples_per_s"] = record["samples_per_s"]
        elif record.get("kind") == "eval" and record.get("split") == "val":
            fields["val_error_scan"] = record["error_scan"]
            fields["val_error_softmax"] = record["error_softmax"]
        return fields

    def flush(self) -> str | None:
        """Write what is buffered; raises LeaseLostError when the run is no longer ours."""
        self._last_flush = time.monotonic()
        if not self._buffer and not self._fields:
            return None
        records, fields = self._buffer, self._fields
        self._buffer, self._fields = [], {}
        return self.store.publish_progress(self.run_id, self.worker, records, **fields)
