"""Prediction under load: many concurrent HTTP clients against the real API server.

Starts a throwaway redis-server and the real API (`python -m api`, uvicorn), stores a 3x1000 model
(an UNTRAINED network saved with ffcore.save_model: the speed of a forward pass does not depend on
the weights' values) under a succeeded run, and measures POST /runs/{id}/predict with JSON 28x28
digits (real MNIST test images when the data set is found, else random strokes):

- closed loop: --clients clients, each sending its next request when the last one answered, for
  --duration seconds: the throughput the server sustains and the latency at that load;
- open loop: requests started at a fixed --rate per second (independent of answers) for --duration
  seconds: the latency a steady stream of users sees at that rate.

The load generator runs on the same machine as the server, so they share its cores.

    .venv/bin/python -m bench.predict_load
    .venv/bin/python -m bench.predict_load --clients 32 --rate 300 --duration 20

Prints the figures and writes bench/results/predict_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from bench._provenance import load_average, provenance
from ffcore.checkpoint import save_model
from ffcore.config import RunConfig
from ffcore.model import FFNetwork
from tests.support.api import start_api
from tests.support.mnist import mnist_test_images
from tests.support.paths import REPO
from tests.support.redis_server import redis_server
from tests.support.settings import TestSettings
from tests.support.store import TestStore

log = logging.getLogger("predict_load")
RESULTS = REPO / "bench" / "results" / "predict_load.json"


def seed_model_run(redis_url: str) -> str:
    """A succeeded run holding an untrained 3x1000 model; returns its id."""
    store = TestStore.from_url(redis_url)
    config = RunConfig.from_preset("reference")  # hidden [1000, 1000, 1000]
    model = FFNetwork(config)
    model.reset_parameters(torch.Generator().manual_seed(0))
    run_id = store.create_run(config, preset="reference").id
    store.save_model(run_id, save_model(model, config))
    store.set_status(run_id, "succeeded", progress=1.0)
    return run_id


def digit_payloads(count: int) -> list[bytes]:
    """JSON bodies of `count` digits: MNIST test images if present, else random pen strokes."""
    data_dir = TestSettings().data_root  # FF_TEST_DATA_DIR, else ../shared/datasets
    if (data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
        images = mnist_test_images(str(data_dir), count) / 255.0
    else:
        rng = np.random.default_rng(0)
        images = (rng.random((count, 28, 28)) > 0.85).astype(np.float64)
    return [json.dumps({"image": np.round(image, 3).tolist()}).encode() for image in images]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarise(latencies_s: list[float], errors: int, wall_s: float) -> dict:
    ms = sorted(x * 1000 for x in latencies_s)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p / 100 * len(ms)))], 2)

    return {
        "requests": len(ms),
        "errors": errors,
        "wall_s": round(wall_s, 2),
        "predictions_per_s": round(len(ms) / wall_s, 1),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


class RawHttpConnection:
    """A minimal HTTP/1.1 keep-alive client on one connection: a load generator has to cost far less
    than the server it loads, and on a 2-core machine httpx's per-request overhead would not."""

    def __init__(self, host: str, port: int, path: str):
        self.host, self.port, self.path = host, port, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, body: bytes) -> int:
        try:
            return await self._post_once(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server may close a keep-alive connection that sat idle (uvicorn: after 5 s), as
            # any HTTP client expects; prediction has no side effects, so send it again once.
            await self.close()
            self.reader = self.writer = None
            return await self._post_once(body)

    async def _post_once(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        status = int(headers.split(b" ", 2)[1])
        length = 0
        for line in headers.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def closed_loop(url: str, payloads: list[bytes], clients: int, duration_s: float) -> dict:
    host, port, path = _split(url)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def client(index: int) -> None:
        nonlocal errors
        connection = RawHttpConnection(host, port, path)
        i = index
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            if await connection.post_json(payloads[i % len(payloads)]) == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
            i += clients
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return summarise(latencies, errors, time.perf_counter() - started) | {"clients": clients}


async def open_loop(url: str, payloads: list[bytes], rate: float, duration_s: float) -> dict:
    """Requests due at a fixed rate; each goes out on an idle connection (a new one when all are busy)."""
    host, port, path = _split(url)
    latencies: list[float] = []
    errors = 0
    idle: list[RawHttpConnection] = []

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        connection = idle.pop() if idle else RawHttpConnection(host, port, path)
        status = await connection.post_json(payloads[i % len(payloads)])
        # Latency from when the request was due: a late start (generator busy) counts too.
        if status == 200:
            latencies.append(time.perf_counter() - scheduled)
        else:
            errors += 1
        idle.append(connection)

    tasks = []
    started = time.perf_counter()
    for i in range(int(rate * duration_s)):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    for connection in idle:
        await connection.close()
    return summarise(latencies, errors, wall) | {"target_rate_per_s": rate, "connections": len(idle)}


def _split(url: str) -> tuple[str, int, str]:
    parsed = httpx.URL(url)
    return parsed.host, parsed.port, parsed.raw_path.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in the closed loop")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second in the open loop")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds each phase runs")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would skew the client
    payloads = digit_payloads(500)
    with redis_server() as redis_url, start_api(redis_url) as api:
        log.info("API up at %s", api.url)
        run_id = seed_model_run(redis_url)
        url = f"{api.base_url}/runs/{run_id}/predict"
        warm = httpx.post(url, content=payloads[0], headers={"content-type": "application/json"}, timeout=60)
        warm.raise_for_status()
        assert len(warm.json()["goodness"][0]) == 3
        asyncio.run(closed_loop(url, payloads, args.clients, 2.0))  # warm up connections and caches

        load_before = load_average()
        log.info("closed loop: %d clients for %.0f s", args.clients, args.duration)
        cpu_before = process_cpu_s(api.process.pid)
        closed = asyncio.run(closed_loop(url, payloads, args.clients, args.duration))
        # CPU time the server spent per answered prediction: what the machine's load cannot inflate.
        closed["server_cpu_ms_per_prediction"] = round(
            (process_cpu_s(api.process.pid) - cpu_before) * 1000 / max(1, closed["requests"]), 2
        )
        log.info("open loop: %.0f requests/s for %.0f s", args.rate, args.duration)
        opened = asyncio.run(open_loop(url, payloads, args.rate, args.duration))

    result = {
        "benchmark": "predict_load",
        "model": "3x1000 (untrained; ffcore.save_model), JSON 28x28 digits",
        "closed_loop": closed,
        "open_loop": opened,
        "goal": ">= 200 predictions/s with p99 < 50 ms",
        **provenance(load_before),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, phase in (("closed loop", closed), ("open loop", opened)):
        load = (
            f"{phase['clients']} clients"
            if "clients" in phase
            else f"{phase['target_rate_per_s']:.0f}/s offered"
        )
        print(
            f"{name:11s} ({load}): {phase['predictions_per_s']:7.1f} predictions/s, "
            f"p50 {phase['p50_ms']:.1f} ms, p90 {phase['p90_ms']:.1f} ms, p99 {phase['p99_ms']:.1f} ms, "
            f"max {phase['max_ms']:.1f} ms, errors {phase['errors']}"
        )
    print(f"server CPU per prediction (closed loop): {closed['server_cpu_ms_per_prediction']:.2f} ms")
    machine = result["machine"]
    before, after = machine["load_average_before"][0], machine["load_average_after"][0]
    print(f"load average (1 min) before/after: {before:.1f} / {after:.1f} on {machine['cpus']} CPUs")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
