"""Prediction under load: many concurrent HTTP clients against the real API server.

Starts a throwaway redis-server and the real API (`python -m api`, uvicorn, in --processes server
processes: FF_API_PROCESSES, default 2 here, one per core of this 2-core machine), stores a 3x1000 model
(an UNTRAINED network saved with ffcore.save_model: the speed of a forward pass does not depend on
the weights' values) under a succeeded run, and measures POST /runs/{id}/predict with two kinds of
body, digits from the MNIST test set when the data set is found (else random strokes):

- json: 28x28 pixel values as JSON (`{"image": [[...], ...]}`, three decimals), used as given;
- png: the same digits as the dashboard's drawing canvas sends them, a 280x280 RGBA PNG (white ink
  on a transparent background) uploaded as multipart/form-data and preprocessed by the server.

For each kind, two phases, each run --repeats times (closed, open, closed, open, ...):

- closed loop: --clients clients, each sending its next request when the last one answered, for
  --duration seconds: the throughput the server sustains and the latency at that load;
- open loop: requests started at a fixed --rate per second (independent of answers) for --duration
  seconds: the latency a steady stream of users sees at that rate.

Each phase also records the server's CPU time per answered prediction (all its processes and threads;
what the machine's other load hardly changes, unlike throughput) and the load generator's own. The load
generator runs on the same machine as the server, so they share its cores.

Every answer of every phase is checked against the answer for the very image its request sent,
computed beforehand with the stored model (bench._predict_bodies): batched concurrent requests must
never swap answers. A phase's `wrong_answers` counts those that differ, and the bench exits non-zero
(after writing its result) if any does.

    .venv/bin/python -m bench.predict_load
    .venv/bin/python -m bench.predict_load --kinds json --clients 32 --rate 300 --duration 20 --repeats 3
    .venv/bin/python -m bench.predict_load --processes 1 --out bench/results/predict_load_1_process.json

Prints the figures and writes bench/results/predict_load.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import torch

from bench._predict_bodies import (
    ATOL,
    CANVAS_SIZE,
    CONTENT_TYPES,
    FIELDS,
    RTOL,
    check_separable,
    count_wrong_answers,
    digit_payloads,
    expected_answers,
    png_payloads,
)
from bench._provenance import load_average, provenance
from ffcore.checkpoint import save_model
from ffcore.config import RunConfig
from ffcore.model import FFNetwork
from tests.support.api import start_api
from tests.support.paths import REPO
from tests.support.redis_server import redis_server
from tests.support.store import TestStore

log = logging.getLogger("predict_load")
RESULTS = REPO / "bench" / "results" / "predict_load.json"
KINDS = ("json", "png")
GOAL = ">= 500 predictions/s closed loop (16 clients) and p99 < 50 ms at 300 requests/s offered, JSON and PNG"


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


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and of the processes it started, all their threads (Linux
    /proc): with FF_API_PROCESSES > 1 the API's server processes are children of the one it ran."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        child = int(stat.parent.name)
        parents[child], ticks[child] = int(fields[1]), int(fields[11]) + int(fields[12])

    def in_tree(candidate: int) -> bool:
        while candidate > 1:
            if candidate == pid:
                return True
            candidate = parents.get(candidate, 0)
        return False

    return sum(count for process, count in ticks.items() if in_tree(process)) / os.sysconf("SC_CLK_TCK")


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

    def __init__(self, host: str, port: int, path: str, content_type: str):
        self.host, self.port, self.path, self.content_type = host, port, path, content_type
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """The response's status and body."""
        try:
            return await self._post_once(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server may close a keep-alive connection that sat idle (uvicorn: after 5 s), as
            # any HTTP client expects; prediction has no side effects, so send it again once.
            await self.close()
            self.reader = self.writer = None
            return await self._post_once(body)

    async def _post_once(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {self.content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        status = int(headers.split(b" ", 2)[1])
        length = 0
        for line in headers.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def closed_loop(
    url: str,
    payloads: list[bytes],
    clients: int,
    duration_s: float,
    kind: str,
    answers: list[tuple[int, bytes]],
) -> dict:
    """Appends each answered request's (payload index, response body) to `answers`, to be checked after
    the phase: parsing them during it would add to the load generator's CPU."""
    host, port, path = _split(url)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def client(index: int) -> None:
        nonlocal errors
        connection = RawHttpConnection(host, port, path, CONTENT_TYPES[kind])
        i = index
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status, answer = await connection.post(payloads[i % len(payloads)])
            if status == 200:
                latencies.append(time.perf_counter() - started)
                answers.append((i % len(payloads), answer))
            else:
                errors += 1
            i += clients
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return summarise(latencies, errors, time.perf_counter() - started) | {"clients": clients}


async def open_loop(
    url: str,
    payloads: list[bytes],
    rate: float,
    duration_s: float,
    kind: str,
    answers: list[tuple[int, bytes]],
) -> dict:
    """Requests due at a fixed rate; each goes out on an idle connection (a new one when all are busy).
    Collects the answers as closed_loop does."""
    host, port, path = _split(url)
    latencies: list[float] = []
    errors = 0
    idle: list[RawHttpConnection] = []

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        connection = idle.pop() if idle else RawHttpConnection(host, port, path, CONTENT_TYPES[kind])
        status, answer = await connection.post(payloads[i % len(payloads)])
        # Latency from when the request was due: a late start (generator busy) counts too.
        if status == 200:
            latencies.append(time.perf_counter() - scheduled)
            answers.append((i % len(payloads), answer))
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


def with_cpu(server_pid: int, run) -> dict:
    """Run one phase (`run()`: its figures) and add the CPU time per answered prediction of the server
    (all its threads) and of this load generator."""
    server_before, client_before = process_cpu_s(server_pid), time.process_time()
    figures = run()
    answered = max(1, figures["requests"])
    figures["server_cpu_ms_per_prediction"] = round(
        (process_cpu_s(server_pid) - server_before) * 1000 / answered, 3
    )
    figures["client_cpu_ms_per_prediction"] = round(
        (time.process_time() - client_before) * 1000 / answered, 3
    )
    return figures


def checked_phase(server_pid: int, expected: dict, phase) -> dict:
    """One phase (`phase(answers)`: a coroutine giving its figures and collecting (payload index, response
    body) pairs) with with_cpu's figures and how many answers are not the one for the image their request
    sent, counted after the phase so as not to add to the load generator's CPU."""
    answers: list[tuple[int, bytes]] = []
    figures = with_cpu(server_pid, lambda: asyncio.run(phase(answers)))
    return figures | {"wrong_answers": count_wrong_answers(answers, expected)}


def measure_kind(
    url: str, server_pid: int, kind: str, payloads: list[bytes], expected: dict, args: argparse.Namespace
) -> dict:
    """The kind's warm-up, then --repeats rounds of a closed and an open loop phase, every answer checked."""
    warm = httpx.post(url, content=payloads[0], headers={"content-type": CONTENT_TYPES[kind]}, timeout=60)
    warm.raise_for_status()
    warm_answers = [(0, warm.content)]
    asyncio.run(closed_loop(url, payloads, args.clients, 2.0, kind, warm_answers))  # connections, caches
    warm_up = {"requests": len(warm_answers), "wrong_answers": count_wrong_answers(warm_answers, expected)}
    phases = {
        "closed_loop": lambda answers: closed_loop(url, payloads, args.clients, args.duration, kind, answers),
        "open_loop": lambda answers: open_loop(url, payloads, args.rate, args.duration, kind, answers),
    }
    figures: dict = {"warm_up": warm_up} | {name: [] for name in phases}
    for repeat in range(1, args.repeats + 1):
        for name, phase in phases.items():
            log.info("%s %s %d/%d for %.0f s", kind, name, repeat, args.repeats, args.duration)
            figures[name].append(checked_phase(server_pid, expected, phase))
    return figures


def phase_line(kind: str, name: str, repeat: int, phase: dict) -> str:
    load = (
        f"{phase['clients']} clients" if "clients" in phase else f"{phase['target_rate_per_s']:.0f}/s offered"
    )
    return (
        f"{kind:4s} {name:11s} #{repeat} ({load}): {phase['predictions_per_s']:7.1f} predictions/s, "
        f"p50 {phase['p50_ms']:.1f} ms, p90 {phase['p90_ms']:.1f} ms, p99 {phase['p99_ms']:.1f} ms, "
        f"max {phase['max_ms']:.1f} ms, errors {phase['errors']}, wrong answers {phase['wrong_answers']}; "
        f"server CPU {phase['server_cpu_ms_per_prediction']:.2f} ms/prediction, load generator "
        f"{phase['client_cpu_ms_per_prediction']:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in the closed loop")
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second in the open loop")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds each phase runs")
    parser.add_argument(
        "--repeats", type=int, default=2, help="times each phase runs (closed, open, closed, ...)"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="bodies to send, comma-separated: json, png")
    parser.add_argument(
        "--processes", type=int, default=2, help="the API's server processes (FF_API_PROCESSES)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON result")
    args = parser.parse_args()
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.processes < 1:
        parser.error("--processes must be at least 1")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would skew the client
    make_payloads = {"json": digit_payloads, "png": png_payloads}
    figures: dict[str, dict] = {}
    api_env = {"FF_API_PROCESSES": str(args.processes)}
    with redis_server() as redis_url, start_api(redis_url, env=api_env) as api:
        log.info("API up at %s", api.url)
        run_id = seed_model_run(redis_url)
        url = f"{api.base_url}/runs/{run_id}/predict"
        model_bytes = TestStore.from_url(redis_url).load_model(run_id)  # what the server will load
        payloads = {kind: make_payloads[kind](500) for kind in kinds}
        expected = {kind: expected_answers(model_bytes, kind, payloads[kind]) for kind in kinds}
        for kind in kinds:
            check_separable(payloads[kind], expected[kind])
        log.info(
            "expected answers computed for %s", ", ".join(f"{len(payloads[k])} {k} bodies" for k in kinds)
        )
        load_before = load_average()
        for kind in kinds:
            figures[kind] = measure_kind(url, api.process.pid, kind, payloads[kind], expected[kind], args)

    # Every answer checked: the warm-ups' and each phase's (per kind: closed_loop, open_loop lists).
    counts = [figures[kind]["warm_up"] for kind in kinds] + [
        phase for kind in kinds for name in ("closed_loop", "open_loop") for phase in figures[kind][name]
    ]
    checked, wrong = sum(c["requests"] for c in counts), sum(c["wrong_answers"] for c in counts)
    result = {
        "benchmark": "predict_load",
        "model": "3x1000 (untrained; ffcore.save_model)",
        "api_processes": args.processes,
        "bodies": {
            "json": "28x28 MNIST test digits as JSON pixel values (three decimals)",
            "png": f"the same digits as {CANVAS_SIZE}x{CANVAS_SIZE} RGBA canvas PNGs, multipart/form-data",
        },
        "repeats": args.repeats,
        "answer_check": "every answer (warm-up and phases) against the one for the image its request sent, "
        f"computed with the stored model: {', '.join(FIELDS)} within rtol {RTOL:g}, atol {ATOL:g} "
        "(bench/_predict_bodies.py)",
        "answers_checked": checked,
        "wrong_answers": wrong,
        **figures,
        "goal": GOAL,
        **provenance(load_before),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for kind in kinds:
        for repeat in range(args.repeats):
            for name in ("closed_loop", "open_loop"):
                print(phase_line(kind, name.replace("_", " "), repeat + 1, figures[kind][name][repeat]))
    machine = result["machine"]
    before, after = machine["load_average_before"][0], machine["load_average_after"][0]
    print(f"API server processes: {args.processes}")
    print(f"load average (1 min) before/after: {before:.1f} / {after:.1f} on {machine['cpus']} CPUs")
    print(f"answers checked against their own image's: {checked}, wrong: {wrong}")
    print(f"wrote {args.out}")
    if wrong:
        sys.exit(f"{wrong} answers were not the answer to the image their request sent")


if __name__ == "__main__":
    main()
