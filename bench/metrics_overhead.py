"""How much does streaming metrics to Redis slow training? (The target: under 3%.)

Two trainers of the same run configuration train side by side in one process, in alternating
blocks of --block-steps optimizer steps: one as plain `Trainer.fit` (its metric records go to a
list), the other as the worker trains it: records handed to a `RunMonitor` thread that writes them
with the run record to a real redis-server and polls the cancel flag and the lease, and
`StopCheck` asked before every step. Neighbouring blocks see the same machine, so the ratio of
each streaming block's throughput to the plain blocks around it is immune to the slow drift of a
shared machine's load; the median of those ratios is the overhead. It also measures the time
spent in the two callbacks on the training thread and the monitor thread's time in Redis, as
shares of the training time. It prints the figures; the JSON goes to
bench/results/metrics_overhead.json.

    .venv/bin/python -m bench.metrics_overhead --data-dir ../shared/datasets   # quick preset
    .venv/bin/python -m bench.metrics_overhead --pairs 40 --block-steps 200 --device cuda

A redis-server is started on a free 127.0.0.1 port unless --redis-url is given.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from bench._provenance import provenance
from ffcore import RunConfig, Trainer, load_dataset
from ffcore.config import parse_override
from ffcore.device import resolve_device
from fflab.settings import Settings
from tests.support.paths import REPO
from tests.support.redis_server import redis_server
from tests.support.store import TestStore
from worker.context import WorkerContext
from worker.progress import RunMonitor
from worker.training import StopCheck

RESULTS = REPO / "bench" / "results" / "metrics_overhead.json"


class Timed:
    """Wraps a callback and adds up the time spent in it: the streaming cost inside the loop."""

    def __init__(self, callback: Callable):
        self.callback = callback
        self.seconds = 0.0

    def __call__(self, *args):
        start = time.perf_counter()
        try:
            return self.callback(*args)
        finally:
            self.seconds += time.perf_counter() - start


def train_plain_block(trainer: Trainer, steps: int) -> float:
    """Samples/s of `steps` more steps, metric records into a list."""
    records: list[dict] = []
    return trainer.fit(on_metrics=records.append, max_steps=trainer.step + steps).samples_per_s


def train_streaming_block(
    trainer: Trainer, steps: int, store: TestStore, run_id: str, context: WorkerContext
) -> tuple[float, float, float]:
    """Samples/s of `steps` more steps trained as the worker does, and the shares of training time
    spent in the worker's callbacks (on the training thread) and in the monitor thread's Redis
    calls (beside it). The monitor runs only during the block, so the plain blocks see none of it."""
    monitor = RunMonitor(store.attempts, run_id, context.name, trainer.total_steps, trainer.steps_per_epoch)
    on_metrics, stop_check = Timed(monitor), Timed(StopCheck(context, monitor))
    monitor.start()
    try:
        result = trainer.fit(on_metrics=on_metrics, should_stop=stop_check, max_steps=trainer.step + steps)
    finally:
        monitor.close()
    monitor.flush()
    train_seconds = steps * trainer.config.batch_size / result.samples_per_s
    in_loop = (on_metrics.seconds + stop_check.seconds) / train_seconds
    return result.samples_per_s, in_loop, monitor.busy_s / train_seconds


def main() -> None:
    # A plain SIGTERM would skip the `finally` that stops the redis-server this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick", help="Run preset to train (default quick).")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Config override.")
    parser.add_argument(
        "--block-steps", type=int, default=100, help="Optimizer steps per block (default 100)."
    )
    parser.add_argument("--pairs", type=int, default=20, help="Plain/streaming block pairs (default 20).")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="Training device.")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch (default 1).")
    parser.add_argument(
        "--data-dir", default=None, help="torchvision root with MNIST/raw (default FF_DATA_DIR)."
    )
    parser.add_argument("--redis-url", default=None, help="Use this Redis instead of starting one.")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS}).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    settings = Settings()
    overrides = {"epochs": 1000, "eval_every": 1000} | dict(parse_override(text) for text in args.set)
    config = RunConfig.from_preset(
        args.preset, device=args.device, data_dir=args.data_dir or settings.data_dir, **overrides
    )
    log_every = settings.metrics_every_steps
    device = resolve_device(config.device)
    dataset = load_dataset(config, device)

    with redis_server() if args.redis_url is None else nullcontext(args.redis_url) as url:
        store = TestStore.from_url(url)
        context = WorkerContext(
            settings=Settings(redis_url=url),
            attempts=store.attempts,
            registry=store.workers,
            name="bench",
            device=str(device),
            enqueue=print,
        )
        run_id = store.create_run(config).id
        store.claim_run(run_id, context.name, ttl_s=3600, device=context.device)
        plain_trainer = Trainer(config, dataset=dataset, log_every=log_every)
        streaming_trainer = Trainer(config, dataset=dataset, log_every=log_every)
        train_plain_block(plain_trainer, 20)  # warm-up: allocator, kernels
        train_streaming_block(streaming_trainer, 20, store, run_id, context)
        records_before = store.count_metrics(run_id)

        plain, streaming, shares, beside = [], [], [], []
        for pair in range(args.pairs):
            # Alternate which goes first so that a trend within a pair hits both alike.
            for kind in ("plain", "streaming") if pair % 2 == 0 else ("streaming", "plain"):
                if kind == "plain":
                    plain.append(train_plain_block(plain_trainer, args.block_steps))
                else:
                    rate, share, monitor_share = train_streaming_block(
                        streaming_trainer, args.block_steps, store, run_id, context
                    )
                    streaming.append(rate)
                    shares.append(share)
                    beside.append(monitor_share)
            print(
                f"pair {pair + 1:3d}: plain {plain[-1]:9.1f} samples/s, streaming {streaming[-1]:9.1f} "
                f"(callbacks {shares[-1] * 100:.3f}%, monitor thread in Redis {beside[-1] * 100:.2f}%)",
                flush=True,
            )
        streamed_records = store.count_metrics(run_id) - records_before

    ratios = [s / p for s, p in zip(streaming, plain, strict=True)]
    overhead_pct = (1 - statistics.median(ratios)) * 100
    # The middle half of the per-pair ratios: how well the A/B resolves a difference of 3%.
    quartiles = statistics.quantiles(ratios, n=4)
    iqr_points = (quartiles[2] - quartiles[0]) * 100
    in_loop_pct = statistics.median(shares) * 100
    result = {
        "benchmark": "metrics_overhead",
        "question": "training throughput with metrics streamed to Redis vs. without",
        "preset": args.preset,
        "overrides": overrides,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "block_steps": args.block_steps,
        "pairs": args.pairs,
        "batch_size": config.batch_size,
        "metrics_every_steps": log_every,
        "records_streamed": streamed_records,
        "plain_samples_per_s": plain,
        "streaming_samples_per_s": streaming,
        "median_plain_samples_per_s": statistics.median(plain),
        "median_streaming_samples_per_s": statistics.median(streaming),
        "per_pair_ratio": ratios,
        "overhead_pct": overhead_pct,
        "ratio_interquartile_range_pct_points": iqr_points,
        # Time inside the publisher and the stop check over training time: the same cost measured
        # directly, immune to the machine's load.
        "in_loop_share_pct": [x * 100 for x in shares],
        "median_in_loop_share_pct": in_loop_pct,
        # The monitor thread's time in Redis calls, over training time. It mostly waits on the
        # socket (the GIL is free meanwhile), so this bounds what it can take from training.
        "monitor_thread_redis_share_pct": [x * 100 for x in beside],
        "median_monitor_thread_redis_share_pct": statistics.median(beside) * 100,
        "target_pct": 3.0,
        "within_target": overhead_pct < 3.0,
        **provenance(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"median plain {result['median_plain_samples_per_s']:.1f} samples/s, streaming "
        f"{result['median_streaming_samples_per_s']:.1f} samples/s: overhead {overhead_pct:+.2f}% "
        f"(median of {args.pairs} neighbouring-block ratios; their middle half spans {iqr_points:.1f} "
        f"points); streaming callbacks {in_loop_pct:.3f}% of training time, monitor thread in Redis "
        f"{result['median_monitor_thread_redis_share_pct']:.2f}% beside it; target < 3% -> {args.output}"
    )


if __name__ == "__main__":
    main()
