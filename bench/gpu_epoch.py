"""Seconds per epoch of a preset's recipe on a GPU (or the CPU), and a whole run of it through a worker.

In process (unless --worker-only): runs the first --epochs epochs of the recipe (same schedule),
times each epoch (evaluation included, as a full run pays it) in wall seconds and in this process's
CPU seconds (all its threads), and projects the whole recipe's wall time from the median epoch after
the first (the first pays for CUDA's and the allocator's warm-up; with one epoch, that one). Loading
the data and building the model are timed apart (`setup_*`); `timed_*` covers the epochs and the test
evaluation after them. On a GPU, every clock is read after torch.cuda.synchronize(), so an epoch's
time includes the work queued in it; the host's CPU seconds then include its waits for the device.

With --through-worker (after the in-process epochs) or --worker-only (instead of them): starts a
throwaway redis-server and one real worker (`python -m worker --device DEVICE`, --threads threads),
submits the preset's whole recipe (--set KEY=VALUE changes it, e.g. --set epochs=10; --epochs does
not apply) and records under `through_worker` the seconds from submit to `succeeded`, the queue wait
(submit to the worker's claim), the worker's attempt (claim to end, as the run record holds them:
loading the data set, every epoch with its evaluation, metrics streaming and checkpoints, the test
evaluation), the worker process's CPU seconds, the epoch ends as the metrics stream dates them, and
the run's test errors. A run that does not succeed ends the script with an error and no JSON.

The JSON records the versions and the float32 matmul settings (TF32 or not), which change GPU times
by large factors, and the command and commit (bench._provenance).

    .venv/bin/python -m bench.gpu_epoch --data-dir ../shared/datasets [--epochs 5] [--through-worker]
    .venv/bin/python -m bench.gpu_epoch --data-dir ../shared/datasets --device cpu --preset quick \\
        --epochs 3 --threads 1 --through-worker --out bench/results/quick_cpu.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench._provenance import load_average, provenance
from ffcore import PRESETS, RunConfig, Trainer
from ffcore.config import parse_override
from fflab.store.keys import FINISHED
from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "gpu_epoch.json"


def environment(device: torch.device) -> dict[str, Any]:
    """What the times depend on besides the code and machine (`provenance`): the device, float32 matmul
    settings, CUDA and cuDNN versions."""
    info: dict[str, Any] = {
        "cuda": torch.version.cuda,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info |= {
            "device": torch.cuda.get_device_name(device),
            "cudnn": torch.backends.cudnn.version(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            # Newer PyTorch's per-backend setting ("ieee" or "tf32"), where it has one.
            "fp32_precision_matmul": getattr(torch.backends.cuda.matmul, "fp32_precision", None),
        }
    else:
        info["device"] = "cpu"
    return info


def process_cpu() -> dict[str, float]:
    """This process's CPU seconds since it started (what /usr/bin/time reports), user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"user": usage.ru_utime, "system": usage.ru_stime}


def child_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) another process has used so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def median_after_first(values: list[float]) -> float:
    return statistics.median(values[1:] if len(values) > 1 else values)


def time_in_process(config: RunConfig, epochs: int) -> dict[str, Any]:
    """Train the recipe's first `epochs` epochs here; per-epoch wall and CPU seconds, and test errors."""
    setup_wall, setup_cpu = time.perf_counter(), time.process_time()
    trainer = Trainer(config, log_every=10**9)
    cuda = trainer.device.type == "cuda"

    def clock() -> tuple[float, float]:
        if cuda:
            torch.cuda.synchronize()  # the queued work belongs to the epoch it was queued in
        return time.perf_counter(), time.process_time()

    start = clock()
    setup = (start[0] - setup_wall, start[1] - setup_cpu)
    stamps = [start]
    result = trainer.fit(
        on_epoch_end=lambda t: stamps.append(clock()),
        max_steps=min(epochs, config.epochs) * trainer.steps_per_epoch,
    )
    errors: dict[str, Any] = {
        "error_scan": result.test_error_scan, "error_softmax": result.test_error_softmax
    }  # fmt: skip
    if result.test_error_scan is None:  # stopped before the recipe's end: fit did not evaluate on test
        errors = trainer.evaluate("test")
    end = clock()
    epoch_s = [b[0] - a[0] for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    epoch_cpu_s = [b[1] - a[1] for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    steady, steady_cpu = median_after_first(epoch_s), median_after_first(epoch_cpu_s)
    figures = {
        **environment(trainer.device),
        "epochs_timed": len(epoch_s),
        "setup_s": setup[0],
        "setup_cpu_s": setup[1],
        "seconds_per_epoch": epoch_s,
        "cpu_seconds_per_epoch": epoch_cpu_s,
        "median_epoch_s": steady,
        "median_epoch_cpu_s": steady_cpu,
        "median_of": "epochs 2.." if len(epoch_s) > 1 else "epoch 1",
        "timed_s": end[0] - start[0],
        "timed_cpu_s": end[1] - start[1],
        "recipe_epochs": config.epochs,
        "projected_recipe_s": steady * config.epochs,
        "projected_recipe_cpu_s": steady_cpu * config.epochs,
        "whole_recipe_timed": len(epoch_s) == config.epochs,
        "test_error_scan": errors["error_scan"],
        "test_error_softmax": errors["error_softmax"],
        "process_cpu_s": process_cpu(),
    }
    del trainer, result
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()  # the worker's run gets the whole GPU
    return figures


def stream_seconds(stream_id: str) -> float:
    """The Unix time Redis gave a stream entry (its id is milliseconds-sequence)."""
    return int(stream_id.split("-", 1)[0]) / 1000


def epoch_ends(records: list[tuple[str, dict[str, Any]]], started_at: float) -> list[dict[str, Any]]:
    """Each evaluation at an epoch's end, dated by the metrics stream: seconds since the worker's claim.

    The worker streams an evaluation's record at once (the monitor wakes for it), so its entry's time
    is the epoch's end (its training and evaluation) to within a Redis round trip. The test
    evaluation at the recipe's end comes last.
    """
    return [
        {
            "epoch": record["epoch"],
            "split": record["split"],
            "after_claim_s": stream_seconds(stream_id) - started_at,
        }
        for stream_id, record in records
        if record.get("kind") == "eval"
    ]


def time_through_worker(
    config: RunConfig, preset: str, data_dir: str, device: str, threads: int | None, timeout_s: float
) -> dict[str, Any]:
    """One whole run of `config` through a real worker on a throwaway Redis; what it took."""
    from fflab.settings import Settings
    from tests.support.redis_server import redis_server
    from tests.support.store import TestStore
    from tests.support.worker import start_worker, submit_run

    with (
        redis_server() as url,
        start_worker(url, data_dir, device=device, torch_threads=threads) as worker,
    ):
        store = TestStore.from_url(url)
        pid = worker.process.pid
        cpu_before = child_cpu_s(pid)
        submitted, submitted_clock = time.time(), time.perf_counter()
        run_id = submit_run(url, config, preset=preset)
        deadline = submitted_clock + timeout_s
        while (record := store.get_run(run_id)) is None or record.status not in FINISHED:
            if worker.process.poll() is not None:
                raise SystemExit(f"the worker exited with {worker.process.returncode} during run {run_id}")
            if time.perf_counter() > deadline:
                raise SystemExit(f"run {run_id} did not finish within {timeout_s:g} s: {record!r}")
            time.sleep(0.02)
        observed = time.perf_counter() - submitted_clock
        cpu_after = child_cpu_s(pid)
        if record.status != "succeeded":
            raise SystemExit(f"run {run_id} ended {record.status}: {record.error}")
        records, _ = store.read_metrics(run_id, limit=10**6)
        worker_settings = Settings(redis_url=url)
    assert record.started_at is not None and record.finished_at is not None
    ends = epoch_ends(records, record.started_at)
    # Seconds per epoch between two evaluations' ends (epochs 2..; the first also loads the data set).
    epoch_gaps = [
        (b["after_claim_s"] - a["after_claim_s"]) / (b["epoch"] - a["epoch"])
        for a, b in zip(ends[:-1], ends[1:], strict=True)
        if b["split"] != "test" and b["epoch"] > a["epoch"]
    ]
    return {
        "run_id": run_id,
        "worker_device": device,
        "worker_threads": threads,
        "metrics_every_steps": worker_settings.metrics_every_steps,
        "checkpoint_interval_s": worker_settings.checkpoint_interval_s,
        "status": record.status,
        "attempts": record.attempts,
        "epochs": record.epoch,
        "steps": record.step,
        # Submit to `succeeded` as this script saw it (polled every 20 ms) and as the record dates it.
        "submit_to_finished_s": observed,
        "submit_to_finished_recorded_s": record.finished_at - submitted,
        "queue_wait_s": record.started_at - record.created_at,
        # The worker's attempt, claim to end: data set, trainer, every epoch, checkpoints, test evaluation.
        "worker_attempt_s": record.finished_at - record.started_at,
        "worker_cpu_s": None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        "epoch_ends": ends,
        "median_epoch_s": statistics.median(epoch_gaps) if epoch_gaps else None,
        "samples_per_s_last": record.samples_per_s,
        "test_error_scan": record.test_error_scan,
        "test_error_softmax": record.test_error_softmax,
        "run_provenance": record.provenance.model_dump() if record.provenance else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu_epoch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", default=None, help="torchvision root with MNIST/raw")
    parser.add_argument("--preset", default="reference", choices=sorted(PRESETS))
    parser.add_argument(
        "--epochs", type=int, default=5, help="epochs to time in process (default: %(default)s)"
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for PyTorch, here and in the worker "
        "(torch.set_num_threads; default: PyTorch's choice)",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="change the preset's configuration, in process and in the worker's run (e.g. epochs=10)",
    )  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--through-worker", action="store_true",
        help="after the in-process epochs, time a whole run of the recipe through a real worker",
    )  # fmt: skip
    mode.add_argument(
        "--worker-only", action="store_true", help="time the run through a worker, not in process"
    )
    parser.add_argument(
        "--worker-timeout", type=float, default=1800, help="seconds a worker's run may take (%(default)s)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.epochs < 1 and not args.worker_only:
        parser.error("--epochs must be at least 1")
    if (args.through_worker or args.worker_only) and args.data_dir is None:
        parser.error("a run through a worker needs --data-dir (the worker's FF_DATA_DIR)")
    try:
        args.overrides = dict(parse_override(text) for text in args.set)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    load_before = load_average()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to PyTorch; run this on a GPU machine (or --device cpu)")
    if args.device.startswith("cuda:"):
        torch.cuda.set_device(torch.device(args.device))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device_name = "cuda" if args.device.startswith("cuda") else "cpu"
    config = RunConfig.from_preset(
        args.preset, **({"data_dir": args.data_dir, "device": device_name} | args.overrides)
    )

    result: dict[str, Any] = {
        "benchmark": "gpu_epoch",
        "preset": args.preset,
        "overrides": args.overrides,
        "config": config.model_dump(exclude={"data_dir"}),
    }
    if not args.worker_only:
        result |= time_in_process(config, args.epochs)
        print(
            f"in process: {result['epochs_timed']} epochs, median {result['median_epoch_s']:.2f} s "
            f"({result['median_epoch_cpu_s']:.2f} CPU s), timed span {result['timed_s']:.1f} s "
            f"({result['timed_cpu_s']:.1f} CPU s); test error {result['test_error_scan']:.4f} (scan)",
            flush=True,
        )
    else:
        result |= environment(torch.device(args.device))
    if args.through_worker or args.worker_only:
        worker = time_through_worker(
            config, args.preset, args.data_dir, args.device, args.threads, args.worker_timeout
        )
        result["through_worker"] = worker
        worker_cpu = worker["worker_cpu_s"] if worker["worker_cpu_s"] is not None else float("nan")
        print(
            f"through a worker: {worker['epochs']} epochs, submit to succeeded "
            f"{worker['submit_to_finished_s']:.1f} s (queue {worker['queue_wait_s']:.2f} s, attempt "
            f"{worker['worker_attempt_s']:.1f} s, worker CPU {worker_cpu:.1f} s); "
            f"test error {worker['test_error_scan']:.4f} (scan)",
            flush=True,
        )
    result |= provenance(load_before)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")
    return result


if __name__ == "__main__":
    main()
