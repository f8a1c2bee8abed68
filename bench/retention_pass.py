"""What one retention pass (worker.retention) costs, in a store of many recent runs and some old ones.

Starts a throwaway redis-server and fills it with --recent runs finished a day ago and --old runs
finished 40 days ago (each with a small model and a few metric records), then times, with a retention
of 30 days:

1. the steady state: a pass when nothing is due (only runs created before the cutoff are read);
2. for comparison, reading the status and end of every run, which a pass that scanned them all would do;
3. a pass that deletes the --old runs with all their data.

    .venv/bin/python -m bench.retention_pass
    .venv/bin/python -m bench.retention_pass --recent 20000 --old 2000

Prints the figures and writes bench/results/retention_pass.json.
"""

from __future__ import annotations

import argparse
import json
import time

from bench._provenance import provenance
from ffcore.config import RunConfig
from fflab.store.keys import RUNS_INDEX, read_all_runs
from tests.support.paths import REPO
from tests.support.redis_server import redis_server
from tests.support.store import TestStore
from worker.retention import DAY_S, Retention

RESULTS = REPO / "bench" / "results" / "retention_pass.json"
RETENTION_DAYS = 30


def fill(store: TestStore, count: int, days_ago: float) -> None:
    """`count` succeeded runs, created and finished `days_ago` days ago, each with a 10 kB model."""
    at = time.time() - days_ago * DAY_S
    config = RunConfig.from_preset("quick")
    for _ in range(count):
        run_id = store.runs.create_run(config).id
        store.append_metrics(run_id, [{"kind": "train", "step": step} for step in (25, 50, 75)])
        store.save_model(run_id, b"\0" * 10_000)
        store.update_run(run_id, status="succeeded", created_at=at, finished_at=at, updated_at=at)
        store.redis.zadd(RUNS_INDEX, {run_id: at})


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recent", type=int, default=10_000, help="runs that ended a day ago")
    parser.add_argument("--old", type=int, default=1_000, help="runs that ended 40 days ago")
    args = parser.parse_args()
    with redis_server() as url:
        store = TestStore.from_url(url)
        fill(store, args.recent, days_ago=1)
        fill(store, args.old, days_ago=40)
        retention = Retention(store.runs, store.experiments, RETENTION_DAYS)
        # Nothing due yet: the same store seen from 20 days earlier.
        quiet_s, quiet = timed(lambda: retention.expire(time.time() - 20 * DAY_S))
        scan_s, rows = timed(lambda: read_all_runs(store.redis, "status", "finished_at", "experiment"))
        delete_s, expired = timed(lambda: retention.expire(time.time()))
        left = store.redis.zcard(RUNS_INDEX)
    assert not quiet.runs and len(rows) == args.recent + args.old
    assert len(expired.runs) == args.old and left == args.recent
    figures = {
        "recent_runs": args.recent,
        "old_runs": args.old,
        "pass_nothing_due_ms": round(quiet_s * 1000, 1),
        "read_every_run_ms": round(scan_s * 1000, 1),
        "pass_deleting_old_ms": round(delete_s * 1000, 1),
        "deleted_per_s": round(args.old / delete_s),
        **provenance(),
    }
    print(json.dumps(figures, indent=2))
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
