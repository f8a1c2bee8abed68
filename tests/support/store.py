"""The run store as tests (and benchmarks) use it: the three production stores on one client, plus
the writes only tests make to set up a run's state directly.

    store = TestStore.from_url(redis_url)
    run_id = store.runs.create_run(RunConfig.from_preset("quick")).id
    store.set_status(run_id, "succeeded", step=2000)   # a test-only shortcut

`TestStore` also answers every method of `runs` and `attempts` itself (looked up in that order), so
a test reads like the service code it checks: `store.claim_run(...)`, `store.get_run(...)`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from fflab.store.attempts import AttemptStore
from fflab.store.experiments import ExperimentStore
from fflab.store.keys import (
    FINISHED,
    RunStatus,
    cancel_key,
    encode_fields,
    lease_key,
    metrics_key,
    model_key,
    run_key,
    status_event,
)
from fflab.store.runs import RunStore
from fflab.store.workers import WorkerRegistry


class TestStore:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, client: redis.Redis, metrics_maxlen: int = 100_000):
        self.redis = client
        self.metrics_maxlen = metrics_maxlen
        self.runs = RunStore(client, metrics_maxlen)
        self.attempts = AttemptStore(client, metrics_maxlen)
        self.workers = WorkerRegistry(client)
        self.experiments = ExperimentStore(client)

    @classmethod
    def from_url(cls, url: str, metrics_maxlen: int = 100_000) -> TestStore:
        return cls(redis.Redis.from_url(url), metrics_maxlen)

    def __getattr__(self, name: str) -> Any:
        for store in (self.runs, self.attempts):
            if hasattr(store, name):
                return getattr(store, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # --- writes the service makes only through a worker's attempt -------------------------------

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Write fields of a run's record; `updated_at` is now unless given."""
        fields.setdefault("updated_at", time.time())
        self.redis.hset(run_key(run_id), mapping=encode_fields(fields))

    def set_status(self, run_id: str, status: RunStatus, **fields: Any) -> None:
        """Change a run's status (with any other fields) and record the change in its stream."""
        now = time.time()
        if status in FINISHED:
            fields.setdefault("finished_at", now)
        self.update_run(run_id, status=status, **fields)
        self.append_metrics(run_id, [status_event(status, now, error=fields.get("error"))])

    def append_metrics(self, run_id: str, records: list[dict[str, Any]]) -> str | None:
        """Append records to the run's stream; returns the id of the last one."""
        if not records:
            return None
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            pipe.xadd(
                metrics_key(run_id),
                {"data": json.dumps(record)},
                maxlen=self.metrics_maxlen,
                approximate=True,
            )
        return pipe.execute()[-1].decode()

    def count_metrics(self, run_id: str) -> int:
        return self.redis.xlen(metrics_key(run_id))

    def save_model(self, run_id: str, data: bytes) -> None:
        pipe = self.redis.pipeline()
        pipe.set(model_key(run_id), data)
        pipe.hset(run_key(run_id), mapping={"has_model": "1", "updated_at": str(time.time())})
        pipe.execute()

    def request_cancel(self, run_id: str) -> None:
        """Set the cancel flag alone (the API's cancel_run also cancels a queued run at once)."""
        self.redis.set(cancel_key(run_id), "1")

    def acquire_lease(self, run_id: str, worker: str, ttl_s: float) -> bool:
        """Take the run's lease for `worker` unless another worker holds a live one (no claim)."""
        return bool(self.redis.set(lease_key(run_id), worker, nx=True, px=int(ttl_s * 1000)))
