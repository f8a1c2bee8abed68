"""Peak memory of the API while decoding many picture uploads at once (decompression bombs).

Starts a throwaway redis-server and the real API (`python -m api`, uvicorn) with its default settings
(FF_MAX_CONCURRENT_DECODES from --decode-slots), stores a tiny model under a succeeded run, sends one
small picture (so that the model, PyTorch and PIL are loaded), then --count copies of a "bomb" PNG at
the same time, each on its own connection: a few kB that decode to just under --pixels RGBA pixels,
with one stroke of ink. It reads the API process's resident memory (VmRSS) before and its peak (VmHWM,
/proc/PID/status) after, and reports the growth.

    .venv/bin/python -m bench.decode_memory
    .venv/bin/python -m bench.decode_memory --count 20 --pixels 4000000 --label after
    .venv/bin/python -m bench.decode_memory --decode-slots 20 --output bench/results/decode_memory_20.json

The measurement is of the code in the folder it runs from: to measure an older version, export it
(`git archive COMMIT | tar -x -C DIR`), copy this file and tests/support/decode_load.py into DIR and
run it there with --output pointing back here.

Prints the figures and writes bench/results/decode_memory.json (or --output).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import Counter
from pathlib import Path

from PIL import Image

from bench._provenance import provenance
from ffcore.config import RunConfig
from tests.support.api import start_api
from tests.support.decode_load import bomb_png, post_pictures_at_once, resident_kib
from tests.support.fakes import tiny_model_bytes
from tests.support.paths import REPO
from tests.support.redis_server import redis_server
from tests.support.store import TestStore

RESULTS = REPO / "bench" / "results" / "decode_memory.json"
DEFAULT_MAX_PIXELS = 4_000_000  # fflab.settings.Settings.max_image_pixels


def seed_model_run(redis_url: str) -> str:
    """A succeeded run holding a tiny untrained model (its size does not matter to decoding)."""
    store = TestStore.from_url(redis_url)
    run_id = store.create_run(RunConfig.from_preset("quick"), preset="quick").id
    store.save_model(run_id, tiny_model_bytes())
    store.set_status(run_id, "succeeded", progress=1.0)
    return run_id


def measure(count: int, pixels: int, api_env: dict[str, str]) -> dict:
    bomb = bomb_png(pixels)
    with Image.open(io.BytesIO(bomb)) as header:
        width, height = header.size
    small = bomb_png(10_000)
    with redis_server() as redis_url:
        run_id = seed_model_run(redis_url)
        with start_api(redis_url, env=api_env) as api:
            warm_up = post_pictures_at_once(api.base_url, run_id, [small])[0]
            if warm_up.status_code != 200:
                raise SystemExit(f"the warm-up picture was answered {warm_up.status_code}: {warm_up.text}")
            before = resident_kib(api.process.pid)
            started = time.perf_counter()
            answers = post_pictures_at_once(api.base_url, run_id, [bomb] * count)
            wall_s = time.perf_counter() - started
            after = resident_kib(api.process.pid)
    statuses = Counter(answer.status_code for answer in answers)
    return {
        "uploads": count,
        "upload_bytes": len(bomb),
        "decoded_size_each": f"{width}x{height} RGBA ({width * height:,} pixels)",
        "answers": {str(status): number for status, number in sorted(statuses.items())},
        "wall_s": round(wall_s, 2),
        "rss_before_mib": round(before["VmRSS"] / 1024, 1),
        "peak_rss_mib": round(after["VmHWM"] / 1024, 1),
        "peak_growth_mib": round((after["VmHWM"] - before["VmRSS"]) / 1024, 1),
        "rss_after_mib": round(after["VmRSS"] / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="bomb uploads sent at once (default 20)")
    parser.add_argument(
        "--pixels", type=int, default=DEFAULT_MAX_PIXELS, help="each bomb decodes to just under this many"
    )
    parser.add_argument(
        "--decode-slots", type=int, help="FF_MAX_CONCURRENT_DECODES for the API (default: its default, 2)"
    )
    parser.add_argument("--label", default="current", help="what code is measured (goes into the JSON)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    api_env = {} if args.decode_slots is None else {"FF_MAX_CONCURRENT_DECODES": str(args.decode_slots)}
    result = {
        "benchmark": "decode_memory",
        "label": args.label,
        "api_env": api_env or "defaults (no FF_* image settings set)",
        **measure(args.count, args.pixels, api_env),
        **provenance(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
