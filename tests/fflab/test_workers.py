"""The worker registry (fflab.store.workers) against a real redis-server."""

from __future__ import annotations


def test_workers_register_and_age_out(store):
    workers = store.workers
    workers.register("a", {"device": "cpu", "run_id": None})
    workers.register("b", {"device": "cuda:0", "run_id": "x"})
    assert [w["name"] for w in workers.list(max_age_s=60)] == ["a", "b"]
    store.redis.hset("ff:workers", "old", '{"name": "old", "seen_at": 1.0}')
    assert "old" not in [w["name"] for w in workers.list(max_age_s=60)]
    workers.remove("a")
    assert [w["name"] for w in workers.list(max_age_s=60)] == ["b"]
    assert workers.prune(max_age_s=60) == ["old"]
    assert sorted(store.redis.hkeys("ff:workers")) == [b"b"]
