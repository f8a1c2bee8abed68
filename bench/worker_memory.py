"""Does a long-lived worker's memory grow from run to run?

Starts a throwaway redis-server and one real worker (`python -m worker`, one thread), then submits
--runs training runs one after the other and reads the worker's resident memory (RSS, from
/proc) after each has finished. A worker that keeps something per run (models, optimizers,
metric buffers, data sets loaded again) grows by about the same amount every run; one that only
caches what the next run reuses levels off after the first.

    .venv/bin/python -m bench.worker_memory --data-dir ../shared/datasets
    .venv/bin/python -m bench.worker_memory --data-dir DIR --runs 8 --set hidden=[1000,1000,1000]

Prints RSS per run; the JSON goes to bench/results/worker_memory.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench._provenance import provenance
from ffcore import RunConfig
from ffcore.config import parse_override
from tests.support.paths import REPO
from tests.support.redis_server import redis_server
from tests.support.store import TestStore
from tests.support.worker import start_worker, submit_run, wait_for_status

RESULTS = REPO / "bench" / "results" / "worker_memory.json"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="torchvision root with MNIST/raw.")
    parser.add_argument("--runs", type=int, default=6, help="runs to train one after the other (default 6)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of the runs' configuration (default: the quick preset, one epoch)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS}).")
    args = parser.parse_args()
    overrides = {"epochs": 1} | dict(parse_override(text) for text in args.set)
    config = RunConfig.from_preset("quick", **overrides)

    rss, seconds = [], []
    with redis_server() as url, start_worker(url, args.data_dir, torch_threads=1) as worker:
        store = TestStore.from_url(url)
        pid = worker.process.pid
        idle_rss = rss_mib(pid)
        print(f"worker idle: {idle_rss:.0f} MiB", flush=True)
        for index in range(args.runs):
            started = time.perf_counter()
            run_id = submit_run(url, config, preset="quick")
            record = wait_for_status(store, run_id, {"succeeded", "failed"}, timeout_s=1800)
            if record.status != "succeeded":
                raise SystemExit(f"run {index + 1} failed: {record.error}")
            time.sleep(1.0)  # the task's last writes and clean-up
            rss.append(rss_mib(pid))
            seconds.append(time.perf_counter() - started)
            print(f"after run {index + 1}: {rss[-1]:.0f} MiB ({seconds[-1]:.0f} s)", flush=True)

    # RSS wobbles by tens of MiB from run to run (the allocator's free lists); a leak shows as a
    # steady slope. Least squares over the runs after the first (which loads the data set and
    # PyTorch's kernels): MiB each further run adds, about 0 when nothing leaks.
    slope = statistics.linear_regression(range(len(rss) - 1), rss[1:]).slope if len(rss) > 2 else None
    result = {
        "benchmark": "worker_memory",
        "config": config.model_dump(exclude={"data_dir"}),
        "runs": args.runs,
        "idle_rss_mib": idle_rss,
        "rss_mib_after_each_run": rss,
        "seconds_per_run": seconds,
        "growth_per_run_after_the_first_mib": slope,
        **provenance(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"idle {idle_rss:.0f} MiB; after the first run {rss[0]:.0f} MiB, after the last {rss[-1]:.0f} MiB; "
        f"growth per further run (least squares) {slope if slope is not None else float('nan'):+.1f} MiB "
        f"-> {args.output}"
    )


if __name__ == "__main__":
    main()
