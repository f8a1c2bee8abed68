"""bench.predict_load's CPU clock: the server's CPU time counts the processes it started (the API's
server processes with FF_API_PROCESSES > 1), not only its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.predict_load import process_cpu_s

BURN_S = 0.4


def test_the_cpu_clock_counts_the_processes_a_process_started() -> None:
    before, own_before = process_cpu_s(os.getpid()), time.process_time()
    # The child burns BURN_S of CPU, then waits (alive: a live child's time is its own, not yet its
    # parent's) until the test is done.
    burn = (
        f"import sys, time\nend = time.process_time() + {BURN_S}\n"
        "while time.process_time() < end: pass\nsys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while process_cpu_s(os.getpid()) - before - (time.process_time() - own_before) < BURN_S * 0.9:
            assert time.monotonic() < deadline, "the child's CPU time never showed in its parent's clock"
            time.sleep(0.05)
    finally:
        child.communicate(b"")
