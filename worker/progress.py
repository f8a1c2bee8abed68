"""Streaming a run's metrics to Redis and watching for a stop, off the training thread.

ffcore hands over a metric record every `log_every` steps and one per evaluation, and asks
`should_stop` before every step. Both must cost the training loop next to nothing, even when a
Redis round trip is slow, so the `RunMonitor` thread does the Redis work: it writes the buffered
records together with the run record's progress fields in one round trip (at every evaluation and
otherwise every `flush_interval_s`), and polls the cancel flag and the lease every `poll_s`,
turning them into events that `should_stop` merely looks at. While Redis is unusable the records
wait in the buffer and training goes on; the training thread's own writes (checkpoints, the end)
wait for Redis (worker.redis_waits).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fflab.store.attempts import AttemptStore, LeaseLostError
from worker.redis_waits import passing_problem

log = logging.getLogger(__name__)


class RunMonitor(threading.Thread):
    def __init__(
        self,
        attempts: AttemptStore,
        run_id: str,
        worker: str,
        total_steps: int,
        steps_per_epoch: int,
        flush_interval_s: float = 0.5,
        poll_s: float = 0.25,
    ):
        super().__init__(name=f"fflab-monitor-{run_id}", daemon=True)
        self.attempts = attempts
        self.run_id = run_id
        self.worker = worker
        self.total_steps = max(total_steps, 1)
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.flush_interval_s = flush_interval_s
        self.poll_s = poll_s
        self.cancel_requested = threading.Event()
        self.lease_lost = threading.Event()
        self.busy_s = 0.0  # time this thread spent in Redis calls (what the benchmark reports)
        self._buffer: list[dict[str, Any]] = []
        self._fields: dict[str, Any] = {}
        self._buffer_lock = threading.Lock()
        self._publish_lock = threading.Lock()  # keeps the stream in order between the two threads
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._trouble_since: float | None = None  # when Redis last started failing this thread

    # --- the training thread's side ------------------------------------------------------------

    def __call__(self, record: dict[str, Any]) -> None:
        """The Trainer's `on_metrics` callback: buffer the record; an evaluation goes out at once."""
        with self._buffer_lock:
            self._buffer.append(record)
            self._fields.update(self._run_fields(record))
        if record.get("kind") == "eval":
            self._wake.set()

    def flush(self) -> str | None:
        """Write what is buffered now; raises LeaseLostError when the run is no longer ours."""
        with self._publish_lock:
            with self._buffer_lock:
                records, fields = self._buffer, self._fields
                self._buffer, self._fields = [], {}
            if not records and not fields:
                return None
            try:
                return self.attempts.publish_progress(self.run_id, self.worker, records, **fields)
            except LeaseLostError:
                self.lease_lost.set()
                raise
            except Exception:
                with self._buffer_lock:  # keep them for the next try, in order
                    self._buffer[:0] = records
                    self._fields = fields | self._fields
                raise

    def close(self) -> None:
        """Stop the thread (what is still buffered stays for a last `flush`)."""
        self._closed.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout=10)

    # --- the monitor thread ----------------------------------------------------------------------

    def run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        while not self._closed.is_set():
            woken = self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._closed.is_set():
                return
            started = time.monotonic()
            sent = False
            try:
                if woken or started >= next_flush:
                    next_flush = started + self.flush_interval_s
                    with self._buffer_lock:
                        sent = bool(self._buffer or self._fields)
                    self.flush()
                owned, cancel = self.attempts.control_flags(self.run_id, self.worker)
                if not owned:
                    self.lease_lost.set()
                if cancel:
                    self.cancel_requested.set()
            except LeaseLostError:
                pass  # flagged in flush
            except Exception as error:  # records stay buffered: the next round sends them
                self._trouble(error)
            else:
                if sent and self._trouble_since is not None:  # a write went through: reads alone may not
                    waited = time.monotonic() - self._trouble_since
                    log.info(
                        "run %s: Redis takes writes again after %.1f s; buffered metrics sent",
                        self.run_id,
                        waited,
                    )
                    self._trouble_since = None
            finally:
                self.busy_s += time.monotonic() - started

    def _trouble(self, error: Exception) -> None:
        """Log a failed round: a passing Redis problem once when it starts (training goes on, metrics
        wait in the buffer), anything else every time, with its traceback."""
        problem = passing_problem(error)
        if problem is None:
            log.warning("run %s: streaming metrics failed; trying again", self.run_id, exc_info=True)
        elif self._trouble_since is None:
            log.warning(
                "run %s: Redis %s; metrics stay buffered until it answers (%s)", self.run_id, problem, error
            )
        if self._trouble_since is None:
            self._trouble_since = time.monotonic()

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
