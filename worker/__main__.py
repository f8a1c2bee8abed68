"""`python -m worker`: one FF Lab training worker (one per GPU; CPU when there is none).

It consumes training tasks from the Redis broker one at a time, in its main thread (Celery's solo
pool): a GPU worker from the GPU queue and the shared one, a CPU worker from the shared one only (see
fflab.queue). It logs its device when it starts; a worker asked for a GPU that PyTorch cannot use
(no driver visible, a driver too old for PyTorch's CUDA build) exits at once with status 1 and one
line saying why, instead of training on the CPU. It keeps a heartbeat thread that renews the
current run's lease, refreshes the worker's registration and requeues runs whose worker died.
SIGTERM hands the current run back to the queue (checkpointed where it stands) and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys

import torch
from celery import signals
from kombu.utils.url import maybe_sanitize_url
from pydantic import ValidationError

from ffcore.device import DeviceError, resolve_device
from fflab.connections import redis_client, url_with_timeouts
from fflab.queue import make_celery, worker_queues
from fflab.settings import Settings
from fflab.store.attempts import AttemptStore
from fflab.store.experiments import ExperimentStore
from fflab.store.runs import RunStore
from fflab.store.workers import WorkerRegistry
from worker.context import WorkerContext, set_context
from worker.coordinator import Coordinator
from worker.device_report import describe_device, explain_missing_gpu
from worker.heartbeat import Heartbeat
from worker.reaper import Reaper
from worker.retention import Retention
from worker.routing import run_enqueuer

log = logging.getLogger("worker")

# What --device accepts; another word is a usage error, a GPU this machine lacks is not.
DEVICE_WORD = re.compile(r"auto|cpu|cuda(:\d+)?")


def build_parser() -> argparse.ArgumentParser:
    """The command line; `parse_args` fills the defaults from the FF_* settings."""
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="Start one FF Lab training worker. Broker, data and timings come from the FF_* "
        "settings (FF_REDIS_URL, FF_REDIS_SOCKET_TIMEOUT_S, FF_DATA_DIR, FF_LEASE_TTL_S, "
        "FF_HEARTBEAT_INTERVAL_S, FF_METRICS_EVERY_STEPS, FF_MAX_ATTEMPTS); with FF_RETENTION_DAYS, the "
        "workers delete finished runs and experiments that many days after they end.",
    )
    parser.add_argument(
        "--name",
        help="Worker name, unique among live workers (env FF_WORKER_NAME; default HOST-DEVICE-PID).",
    )
    parser.add_argument(
        "--device",
        help="'auto' (the first GPU, else the CPU), 'cpu', 'cuda' or 'cuda:N' (env FF_WORKER_DEVICE; "
        "default auto). Start one worker per GPU. A GPU worker takes runs asking for 'cuda' and the "
        "shared queue's; a CPU worker only the shared queue's. With 'cuda' or 'cuda:N', a GPU PyTorch "
        "cannot use stops the worker (exit status 1) instead of falling back to the CPU.",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads PyTorch may use for training (env FF_WORKER_THREADS; default PyTorch's "
        "choice, all cores). Give each of several CPU workers on one machine its share of the cores.",
    )
    parser.add_argument(
        "--loglevel", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="Log level."
    )
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    """The command line over the FF_* settings; a bad setting is a usage error (exit status 2)."""
    parser = build_parser()
    try:
        settings = Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"FF_{'_'.join(map(str, e['loc'])).upper()}={e['input']!r}: {e['msg']}" for e in error.errors()
        )
        parser.error(f"invalid setting: {problems}")
    parser.set_defaults(
        name=settings.worker_name, device=settings.worker_device, threads=settings.worker_threads
    )
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    return args, settings


def worker_device(requested: str) -> str:
    """'cpu' or 'cuda:N'; makes cuda:N the current GPU, so that a run's 'cuda' means it.

    Raises DeviceError for a device this machine does not have.
    """
    device = resolve_device(requested)
    if device.type == "cpu":
        return "cpu"
    index = 0 if device.index is None else device.index  # 'auto' and 'cuda': the first GPU
    torch.cuda.set_device(index)
    return f"cuda:{index}"


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_args(argv)
    logging.basicConfig(
        level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        device = worker_device(args.device)
    except DeviceError as error:
        if not DEVICE_WORD.fullmatch(args.device):
            build_parser().error(str(error))  # a word naming no device: status 2 and the usage line
        log.error("worker not started: %s", explain_missing_gpu(str(error)))
        return 1
    log.info("training on %s", describe_device(device))
    queues = worker_queues(device.split(":", 1)[0])
    host = socket.gethostname()
    name = args.name or f"{host}-{device.replace(':', '')}-{os.getpid()}"

    app = make_celery(settings, tasks=["worker.tasks"])
    client = redis_client(settings)
    attempts = AttemptStore(client, settings.metrics_maxlen)
    registry = WorkerRegistry(client)
    enqueue = run_enqueuer(app, attempts)  # to the queue of the device the run asks for
    experiments = ExperimentStore(client)
    runs = RunStore(client, settings.metrics_maxlen)
    coordinator = Coordinator(
        experiments,
        runs,
        enqueue,
        url_with_timeouts(settings),
        max_queued=settings.max_queued,
        settings=settings,
    )
    context = WorkerContext(
        settings=settings,
        attempts=attempts,
        registry=registry,
        name=name,
        device=device,
        enqueue=enqueue,
        experiments=experiments,
        coordinator=coordinator,
    )
    set_context(context)
    retention = None
    if settings.retention_days is not None:
        retention = Retention(runs, experiments, settings.retention_days)
        log.info(
            "retention: finished runs and experiments are deleted %g days after they end",
            settings.retention_days,
        )
    heartbeat = Heartbeat(context, Reaper(attempts, enqueue, name, settings.max_attempts, retention))

    # Start beating once the worker consumes, so that a registered worker is a ready one.
    def on_ready(**_: object) -> None:
        heartbeat.start()
        log.info(
            "worker %s ready on %s, taking runs from %s (redis %s)",
            name, device, " and ".join(queues), maybe_sanitize_url(settings.redis_url),
        )  # fmt: skip

    def on_shutting_down(**_: object) -> None:
        context.shutting_down.set()  # the training loop sees it within a step

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    nodename = name if "@" in name else f"{name}@{host}"
    try:
        app.worker_main(
            [
                "worker", "--pool=solo", "--concurrency=1", f"--hostname={nodename}",
                f"--loglevel={args.loglevel}", f"--queues={','.join(queues)}",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]
        )  # fmt: skip
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        if heartbeat.is_alive():
            heartbeat.stop()
        try:
            registry.remove(name)
        except Exception:
            log.exception("could not deregister worker %s", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
