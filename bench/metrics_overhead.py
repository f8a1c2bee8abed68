"""How much does streaming metrics to Redis slow training? (The target: under 3%.)

Trains the same run twice per round, in one process and alternating the order, once as plain
`Trainer.fit` (its metric records go to a list) and once as the worker trains: records handed to
a `RunMonitor` thread that writes them with the run record to a real redis-server and polls the
cancel flag and the lease, and `StopCheck` asked before every step. It compares training
throughput (samples/s, evaluation excluded), and, since a busy machine's drift can swamp a 3%
difference between two runs, also measures the time spent in the two callbacks on the training
thread and the monitor thread's time in Redis, as shares of the training time. It prints the
figures; the JSON goes to bench/results/metrics_overhead.json.

    .venv/bin/python bench/metrics_overhead.py                      # quick preset, 100 steps, 3 rounds
    .venv/bin/python bench/metrics_overhead.py --steps 1000 --rounds 5 --device cuda

A redis-server is started on a free 127.0.0.1 port unless --redis-url is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ffcore import RunConfig, Trainer, load_dataset  # noqa: E402
from ffcore.config import parse_override  # noqa: E402
from ffcore.train import resolve_device  # noqa: E402
from fflab.settings import Settings  # noqa: E402
from fflab.store import RunStore  # noqa: E402
from tests.support.redis_server import redis_server  # noqa: E402
from worker.context import WorkerContext  # noqa: E402
from worker.progress import RunMonitor  # noqa: E402
from worker.training import StopCheck  # noqa: E402

RESULTS = REPO / "bench" / "results" / "metrics_overhead.json"


def train_plain(config: RunConfig, dataset, steps: int, log_every: int) -> tuple[float, int]:
    records: list[dict] = []
    result = Trainer(config, dataset=dataset, log_every=log_every).fit(
        on_metrics=records.append, max_steps=steps
    )
    return result.samples_per_s, len(records)


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


def train_streaming(
    config: RunConfig, dataset, steps: int, log_every: int, store: RunStore, context: WorkerContext
) -> tuple[float, int, float, float]:
    """Throughput, records streamed, and the shares of training time spent in the worker's
    callbacks (on the training thread) and in the monitor thread's Redis calls (beside it)."""
    run_id = store.create_run(config).id
    store.claim_run(run_id, context.name, ttl_s=3600, device=context.device)
    trainer = Trainer(config, dataset=dataset, log_every=log_every)
    monitor = RunMonitor(store, run_id, context.name, trainer.total_steps, trainer.steps_per_epoch)
    on_metrics, stop_check = Timed(monitor), Timed(StopCheck(context, monitor))
    monitor.start()
    try:
        result = trainer.fit(on_metrics=on_metrics, should_stop=stop_check, max_steps=steps)
    finally:
        monitor.close()
    monitor.flush()
    train_seconds = result.steps * config.batch_size / result.samples_per_s
    in_loop = (on_metrics.seconds + stop_check.seconds) / train_seconds
    return result.samples_per_s, store.count_metrics(run_id) - 2, in_loop, monitor.busy_s / train_seconds


def main() -> None:
    # A plain SIGTERM would skip the `finally` that stops the redis-server this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick", help="Run preset to train (default quick).")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Config override.")
    parser.add_argument("--steps", type=int, default=100, help="Optimizer steps per training (default 100).")
    parser.add_argument("--rounds", type=int, default=3, help="Plain/streaming pairs (default 3).")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="Training device.")
    parser.add_argument(
        "--data-dir", default=None, help="torchvision root with MNIST/raw (default FF_DATA_DIR)."
    )
    parser.add_argument("--redis-url", default=None, help="Use this Redis instead of starting one.")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS}).")
    args = parser.parse_args()

    settings = Settings()
    overrides = dict(parse_override(text) for text in args.set)
    config = RunConfig.from_preset(
        args.preset, device=args.device, data_dir=args.data_dir or settings.data_dir, **overrides
    )
    log_every = settings.metrics_every_steps
    device = resolve_device(config.device)
    dataset = load_dataset(config, device)

    with redis_server() if args.redis_url is None else nullcontext(args.redis_url) as url:
        store = RunStore.from_url(url)
        context = WorkerContext(
            settings=Settings(redis_url=url), store=store, name="bench", device=str(device), enqueue=print
        )
        train_plain(config, dataset, min(args.steps, 20), log_every)  # warm-up: allocator, kernels
        plain, streaming, shares, beside, streamed_records = [], [], [], [], 0
        for round_ in range(args.rounds):
            # Alternate which goes first so that drift in the machine's load hits both alike.
            order = ("plain", "streaming") if round_ % 2 == 0 else ("streaming", "plain")
            for kind in order:
                if kind == "plain":
                    rate, _ = train_plain(config, dataset, args.steps, log_every)
                    plain.append(rate)
                else:
                    rate, streamed_records, share, monitor_share = train_streaming(
                        config, dataset, args.steps, log_every, store, context
                    )
                    streaming.append(rate)
                    shares.append(share)
                    beside.append(monitor_share)
                detail = ""
                if kind == "streaming":
                    detail = (
                        f" (callbacks {shares[-1] * 100:.3f}% of training time; monitor thread in Redis "
                        f"{beside[-1] * 100:.2f}%)"
                    )
                print(f"round {round_ + 1}: {kind:9s} {rate:10.1f} samples/s{detail}", flush=True)

    ratios = [s / p for s, p in zip(streaming, plain, strict=True)]
    overhead_pct = (1 - statistics.median(ratios)) * 100
    spread_points = (max(ratios) - min(ratios)) * 100
    in_loop_pct = statistics.median(shares) * 100
    result = {
        "benchmark": "metrics_overhead",
        "question": "training throughput with metrics streamed to Redis vs. without",
        "preset": args.preset,
        "overrides": overrides,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "steps_per_training": args.steps,
        "batch_size": config.batch_size,
        "metrics_every_steps": log_every,
        "records_streamed_per_training": streamed_records,
        "rounds": args.rounds,
        "plain_samples_per_s": plain,
        "streaming_samples_per_s": streaming,
        "median_plain_samples_per_s": statistics.median(plain),
        "median_streaming_samples_per_s": statistics.median(streaming),
        "per_round_ratio": ratios,
        "overhead_pct": overhead_pct,
        # When the per-round ratios scatter more than the target, the A/B comparison cannot resolve
        # a 3% difference on this machine; the in-loop share below still can.
        "ratio_spread_pct_points": spread_points,
        "ab_resolves_target": spread_points < 3.0,
        # Time inside the publisher and the stop check over training time: the same cost measured
        # directly, immune to the machine's load drifting between the A/B runs.
        "in_loop_share_pct": [x * 100 for x in shares],
        "median_in_loop_share_pct": in_loop_pct,
        # The monitor thread's time in Redis calls, over training time. It mostly waits on the
        # socket (the GIL is free meanwhile), so this bounds what it can take from training.
        "monitor_thread_redis_share_pct": [x * 100 for x in beside],
        "median_monitor_thread_redis_share_pct": statistics.median(beside) * 100,
        "target_pct": 3.0,
        "within_target": in_loop_pct < 3.0 and (overhead_pct < 3.0 or spread_points >= 3.0),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "torch": torch.__version__,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"median plain {result['median_plain_samples_per_s']:.1f} samples/s, streaming "
        f"{result['median_streaming_samples_per_s']:.1f} samples/s: overhead {overhead_pct:+.2f}% "
        f"(per-round ratios spread {spread_points:.1f} points); streaming callbacks "
        f"{result['median_in_loop_share_pct']:.3f}% of training time, monitor thread in Redis "
        f"{result['median_monitor_thread_redis_share_pct']:.2f}% beside it; target < 3% -> {args.output}"
    )


if __name__ == "__main__":
    main()
