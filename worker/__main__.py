"""`python -m worker`: one FF Lab training worker (one per GPU; CPU when there is none).

It consumes training tasks from the Redis broker one at a time, in its main thread (Celery's solo
pool), and keeps a heartbeat thread that renews the current run's lease, refreshes the worker's
registration and requeues runs whose worker died. SIGTERM hands the current run back to the queue
(checkpointed where it stands) and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from celery import signals

from fflab.settings import Settings
from fflab.store import RunStore
from worker.celery_app import TRAIN_TASK_NAME, make_celery
from worker.context import WorkerContext, set_context
from worker.heartbeat import Heartbeat
from worker.reaper import Reaper

log = logging.getLogger("worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="Start one FF Lab training worker. Broker, data and timings come from the FF_* "
        "settings (FF_REDIS_URL, FF_DATA_DIR, FF_LEASE_TTL_S, FF_HEARTBEAT_INTERVAL_S, "
        "FF_METRICS_EVERY_STEPS).",
    )
    parser.add_argument(
        "--name",
        default=os.environ.get("FF_WORKER_NAME"),
        help="Worker name, unique among live workers (env FF_WORKER_NAME; default HOST-DEVICE-PID).",
    )
    parser.add_argument(
        "--device",
        default=os.environ.get("FF_WORKER_DEVICE", "auto"),
        help="'auto' (the first GPU, else the CPU), 'cpu', 'cuda' or 'cuda:N' (env FF_WORKER_DEVICE; "
        "default auto). Start one worker per GPU.",
    )
    parser.add_argument(
        "--threads",
        type=int,
        # argparse converts a string default with `type`, so a bad env value is a usage error too.
        default=os.environ.get("FF_WORKER_THREADS") or None,
        help="CPU threads PyTorch may use for training (env FF_WORKER_THREADS; default PyTorch's "
        "choice, all cores). Give each of several CPU workers on one machine its share of the cores.",
    )
    parser.add_argument(
        "--loglevel", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="Log level."
    )
    return parser


def resolve_worker_device(requested: str) -> str:
    """'cpu' or 'cuda:N'; makes cuda:N the current GPU, so that a run's 'cuda' means it."""
    import torch

    if requested == "auto":
        requested = "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "cuda":
        requested = "cuda:0"
    kind, _, index = requested.partition(":")
    if kind != "cuda" or not index.isdigit():
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(index) >= count:
        raise ValueError(f"device {requested!r} asked for, but PyTorch sees {count} CUDA GPU(s)")
    torch.cuda.set_device(int(index))
    return requested


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    settings = Settings()
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        device = resolve_worker_device(args.device)
    except ValueError as error:
        parser.error(str(error))  # exits with status 2 and the usage line
    host = socket.gethostname()
    name = args.name or f"{host}-{device.replace(':', '')}-{os.getpid()}"

    app = make_celery(settings)
    store = RunStore.from_url(settings.redis_url, settings.metrics_maxlen)

    def enqueue(run_id: str) -> None:
        app.send_task(TRAIN_TASK_NAME, args=[run_id], task_id=run_id)

    context = WorkerContext(settings=settings, store=store, name=name, device=device, enqueue=enqueue)
    set_context(context)
    heartbeat = Heartbeat(context, Reaper(store, enqueue, name))

    # Start beating once the worker consumes, so that a registered worker is a ready one.
    def on_ready(**_: object) -> None:
        heartbeat.start()
        log.info("worker %s ready on %s (redis %s)", name, device, settings.redis_url)

    def on_shutting_down(**_: object) -> None:
        context.shutting_down.set()  # the training loop sees it within a step

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    nodename = name if "@" in name else f"{name}@{host}"
    try:
        app.worker_main(
            [
                "worker", "--pool=solo", "--concurrency=1", f"--hostname={nodename}",
                f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]
        )  # fmt: skip
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        if heartbeat.is_alive():
            heartbeat.stop()
        try:
            store.remove_worker(name)
        except Exception:
            log.exception("could not deregister worker %s", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
