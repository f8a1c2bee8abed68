"""The worker registry: which workers are alive, on which device, training which run.

Each worker refreshes its entry on every heartbeat and removes it when it stops; the API's /readyz
lists the live ones. A killed worker never deregisters, so the heartbeat also prunes long-silent
entries.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from fflab.store.keys import WORKERS


class WorkerRegistry:
    """Worker entries in the `ff:workers` hash: name -> JSON of what the worker reports."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def register(self, name: str, info: dict[str, Any]) -> None:
        """Record (or refresh) a worker's presence; `seen_at` is set here."""
        self.redis.hset(WORKERS, name, json.dumps(info | {"name": name, "seen_at": time.time()}))

    def remove(self, name: str) -> None:
        self.redis.hdel(WORKERS, name)

    def list(self, max_age_s: float) -> list[dict[str, Any]]:
        """Workers seen within `max_age_s` seconds, by name."""
        now = time.time()
        workers = [json.loads(v) for v in self.redis.hgetall(WORKERS).values()]
        return sorted((w for w in workers if now - w.get("seen_at", 0) <= max_age_s), key=lambda w: w["name"])

    def prune(self, max_age_s: float) -> list[str]:
        """Forget workers not seen for `max_age_s` seconds (killed ones never deregister)."""
        now = time.time()
        stale = [
            name.decode()
            for name, info in self.redis.hgetall(WORKERS).items()
            if now - json.loads(info).get("seen_at", 0) > max_age_s
        ]
        if stale:
            self.redis.hdel(WORKERS, *stale)
        return stale
