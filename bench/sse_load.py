"""Does the API stay quick while hundreds of event streams are open, and how are streams past the cap
answered?

Starts a throwaway redis-server and the real API (`python -m api`, uvicorn) with FF_MAX_STREAMS=600 and
FF_MAX_STREAMS_PER_CLIENT=1000 (every stream comes from 127.0.0.1), stores a running run for the streams
to follow and a succeeded run with an untrained 3x1000 model (as bench.predict_load) for /predict, then:

1. with no stream open: --requests sequential GET /healthz, then as many POST /runs/{id}/predict (JSON
   28x28 digits), each timed from send to the whole answer;
2. opens --streams idle event streams on the running run (asyncio + httpx, each read by a task as a
   real client would, so pings are consumed), checks each got its first event, and times the same
   requests again;
3. asks for --over more streams, past the cap, and counts how they are answered (200 up to the cap,
   then 503 with Retry-After), then times the requests once more with the cap full.

Each phase first waits --idle seconds without requests and records the server's CPU share meanwhile:
what the open streams alone cost (CPU time depends far less on the machine's other load than latency).

The load generator shares the machine with the server (and, on a shared machine, with whatever else
runs): compare the phases of one run with each other, not figures across runs.

    .venv/bin/python -m bench.sse_load
    .venv/bin/python -m bench.sse_load --streams 500 --over 150 --requests 200

Prints the figures and writes bench/results/sse_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import statistics
import time
from collections import Counter

import httpx
import redis

from bench._provenance import load_average, provenance
from bench.predict_load import digit_payloads, process_cpu_s, seed_model_run
from ffcore.config import RunConfig
from tests.support.api import start_api
from tests.support.events import hold_idle_stream
from tests.support.paths import REPO
from tests.support.redis_server import redis_server
from tests.support.store import TestStore

log = logging.getLogger("sse_load")
RESULTS = REPO / "bench" / "results" / "sse_load.json"
MAX_STREAMS = 600
# Descriptors the API process needs: a socket per stream, up to one Redis connection per stream, and
# a margin for everything else; the load generator needs one socket per stream. Children inherit it.
FILES_PER_STREAM = 3
FILES_MARGIN = 1024


def raise_open_files_limit(needed: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE (up to the hard limit) to `needed`; the limits after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log.warning("open-files limit %d is below the %d this benchmark wants", target, needed)
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def latency_summary(latencies_s: list[float], statuses: Counter) -> dict:
    ms = sorted(x * 1000 for x in latencies_s)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p / 100 * len(ms)))], 2)

    return {
        "requests": len(ms),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


async def time_requests(
    http: httpx.AsyncClient, predict_path: str, payloads: list[bytes], count: int
) -> dict:
    """`count` sequential GET /healthz, then `count` sequential predictions: their latencies."""
    results = {}
    for name in ("healthz", "predict"):
        latencies, statuses = [], Counter()
        for i in range(count):
            started = time.perf_counter()
            if name == "healthz":
                response = await http.get("/healthz")
            else:
                body = payloads[i % len(payloads)]
                response = await http.post(
                    predict_path, content=body, headers={"content-type": "application/json"}
                )
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] += 1
        results[name] = latency_summary(latencies, statuses)
    return results


class StreamHolder:
    """Idle event streams held open on one run, each read by its own task."""

    def __init__(self, http: httpx.AsyncClient, run_id: str):
        self.http = http
        self.path = f"/runs/{run_id}/events"
        self.readers: list[asyncio.Task] = []
        self.first_events: list[asyncio.Future] = []

    async def open(self, count: int, batch: int = 50) -> Counter:
        """Ask for `count` more streams, `batch` at a time; how they were answered ('503 Retry-After=10')."""
        answers: Counter = Counter()
        for start in range(0, count, batch):
            for answer in await asyncio.gather(*(self._open_one() for _ in range(min(batch, count - start)))):
                answers[answer] += 1
        return answers

    async def _open_one(self) -> str:
        try:
            response = await self.http.send(self.http.build_request("GET", self.path), stream=True)
        except httpx.TransportError as error:
            return f"no answer ({type(error).__name__})"
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            return f"{response.status_code} Retry-After={response.headers.get('Retry-After')}"
        first_event = asyncio.get_running_loop().create_future()
        self.first_events.append(first_event)
        self.readers.append(asyncio.create_task(hold_idle_stream(response, first_event)))
        return "200"

    async def live(self, timeout_s: float = 60.0) -> int:
        """How many of the held streams delivered their first event."""
        done = await asyncio.wait_for(asyncio.gather(*self.first_events), timeout_s)
        return sum(done)

    async def close(self) -> None:
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


def redis_clients(redis_url: str) -> int:
    """Connections the redis-server holds (the API's pools, the benchmark's own client)."""
    return int(redis.Redis.from_url(redis_url).info("clients")["connected_clients"])


async def measure(api_base: str, api_pid: int, redis_url: str, runs: dict, args: argparse.Namespace) -> dict:
    payloads = digit_payloads(200)
    predict_path = f"/runs/{runs['model_run']}/predict"
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with (
        httpx.AsyncClient(base_url=api_base, timeout=60) as http,
        httpx.AsyncClient(base_url=api_base, timeout=httpx.Timeout(60, read=None), limits=limits) as sse,
    ):
        await time_requests(http, predict_path, payloads, 20)  # warm up: model load, connections
        phases: dict[str, dict] = {}

        async def phase(name: str, streams_open: int) -> None:
            # First no requests at all: what the open streams alone cost the server. CPU time, unlike
            # latency, hardly depends on what else the machine runs. The wait also lets every new stream
            # reach its blocking read, and covers one wake-up of each (EVENTS_BLOCK_MS).
            cpu_before, started = process_cpu_s(api_pid), time.perf_counter()
            await asyncio.sleep(args.idle)
            idle_share = (process_cpu_s(api_pid) - cpu_before) / (time.perf_counter() - started)
            log.info("phase %s: %d streams open, %d requests each", name, streams_open, args.requests)
            cpu_before, started = process_cpu_s(api_pid), time.perf_counter()
            figures = await time_requests(http, predict_path, payloads, args.requests)
            figures["streams_open"] = streams_open
            figures["redis_connected_clients"] = redis_clients(redis_url)
            # The server's CPU share while it answered, the open streams' share included.
            figures["server_cpu_share"] = round(
                (process_cpu_s(api_pid) - cpu_before) / (time.perf_counter() - started), 3
            )
            figures["server_cpu_share_idle"] = round(idle_share, 3)
            phases[name] = figures

        await phase("no_streams", 0)
        holder = StreamHolder(sse, runs["stream_run"])
        opened_at = time.perf_counter()
        answers = await holder.open(args.streams)
        open_s = time.perf_counter() - opened_at
        live = await holder.live()
        log.info("opened %s in %.1f s; %d delivered their first event", dict(answers), open_s, live)
        await phase("with_streams", answers["200"])
        over_answers = await holder.open(args.over)
        log.info("asked for %d more: %s", args.over, dict(over_answers))
        await phase("cap_full", answers["200"] + over_answers["200"])
        await holder.close()
    return {
        "phases": phases,
        "streams_asked": args.streams,
        "streams_answers": dict(answers),
        "streams_open_s": round(open_s, 2),
        "streams_live": live,
        "over_cap_asked": args.over,
        "over_cap_answers": dict(over_answers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500, help="idle event streams held open")
    parser.add_argument("--over", type=int, default=150, help="further streams asked for, past the cap")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per route and phase")
    parser.add_argument(
        "--idle", type=float, default=10.0, help="seconds of each phase without requests (idle server CPU)"
    )
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would skew the client
    files_limit = raise_open_files_limit(FILES_PER_STREAM * (MAX_STREAMS + args.over) + FILES_MARGIN)
    env = {"FF_MAX_STREAMS": str(MAX_STREAMS), "FF_MAX_STREAMS_PER_CLIENT": "1000"}
    with redis_server() as redis_url, start_api(redis_url, env=env) as api:
        store = TestStore.from_url(redis_url)
        stream_run = store.create_run(RunConfig.from_preset("quick"), preset="quick").id
        store.set_status(stream_run, "running")
        runs = {"stream_run": stream_run, "model_run": seed_model_run(redis_url)}
        load_before = load_average()
        measured = asyncio.run(measure(api.base_url, api.process.pid, redis_url, runs, args))

    phases = measured["phases"]
    base, loaded = phases["no_streams"], phases["with_streams"]
    ratios = {
        route: {
            "p50": round(loaded[route]["p50_ms"] / base[route]["p50_ms"], 2),
            "p99": round(loaded[route]["p99_ms"] / base[route]["p99_ms"], 2),
        }
        for route in ("healthz", "predict")
    }
    result = {
        "benchmark": "sse_load",
        "settings": env,
        **measured,
        "ratio_with_streams_to_none": ratios,
        "model": "3x1000 (untrained; ffcore.save_model), JSON 28x28 digits, sequential requests",
        "open_files_limit": list(files_limit),
        **provenance(load_before),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"streams: asked {args.streams}, answered {measured['streams_answers']} in "
        f"{measured['streams_open_s']:.1f} s, {measured['streams_live']} delivered events; "
        f"{args.over} more past the cap of {MAX_STREAMS}: {measured['over_cap_answers']}"
    )
    for name, figures in phases.items():
        for route in ("healthz", "predict"):
            f = figures[route]
            print(
                f"{name:12s} ({figures['streams_open']:3d} streams) {route:7s}: p50 {f['p50_ms']:6.2f} ms, "
                f"p90 {f['p90_ms']:6.2f} ms, p99 {f['p99_ms']:6.2f} ms, max {f['max_ms']:6.2f} ms, "
                f"statuses {f['statuses']}"
            )
        print(
            f"{'':12s} server CPU share {figures['server_cpu_share_idle']:.3f} idle, "
            f"{figures['server_cpu_share']:.2f} answering; "
            f"Redis connections {figures['redis_connected_clients']}"
        )
    for route, ratio in ratios.items():
        print(
            f"{route}: with {loaded['streams_open']} streams / none: p50 x{ratio['p50']}, p99 x{ratio['p99']}"
        )
    machine = result["machine"]
    before, after = machine["load_average_before"][0], machine["load_average_after"][0]
    print(f"load average (1 min) before/after: {before:.1f} / {after:.1f} on {machine['cpus']} CPUs")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
