"""`python -m api` with FF_API_PROCESSES=2 on the real redis-server: two server processes answer on one
port, predictions come back right from both, the stream cap holds for the server as a whole (each process
admits its share), and stopping the server stops them all."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import numpy as np
import pytest

from ffcore.checkpoint import load_model
from ffcore.model import predict
from tests.api.test_event_streams import StreamClient, running_run
from tests.support.api import start_api
from tests.support.store import TestStore
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

PROCESSES = 2
MAX_STREAMS = 4  # 2 per process
CONCURRENT_PREDICTIONS = 48


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def server_processes(pid: int) -> list[int]:
    """The uvicorn server processes among `pid`'s descendants (multiprocessing's spawned children; its
    resource tracker is not one)."""
    return [
        child
        for child in descendants(pid)
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
    ]


def a_digit(seed: int) -> list[list[float]]:
    image = np.zeros((28, 28))
    rng = np.random.default_rng(seed)
    image[6:22, 10 + seed % 6 : 13 + seed % 6] = 1.0  # a stroke, placed differently per seed
    image[rng.integers(4, 24), 4:24] = 0.5
    return image.round(3).tolist()


def test_two_processes_answer_predictions_right_and_stop_together(
    redis_url: str, store: TestStore, finished_run: str
) -> None:
    model, _config = load_model(store.load_model(finished_run))
    with start_api(redis_url, env={"FF_API_PROCESSES": str(PROCESSES)}) as api:
        workers = wait_for(
            lambda: len(found := server_processes(api.process.pid)) == PROCESSES and found,
            30,
            f"{PROCESSES} server processes",
        )

        def post(seed: int) -> tuple[int, httpx.Response]:
            body = {"image": a_digit(seed)}
            return seed, httpx.post(f"{api.base_url}/runs/{finished_run}/predict", json=body, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(post, range(CONCURRENT_PREDICTIONS)))

        for seed, response in answers:
            assert response.status_code == 200, response.text
            expected = predict(model, np.asarray(a_digit(seed), dtype=np.float32)[None])
            assert response.json()["scan_label"] == int(expected.scan_label[0])
            np.testing.assert_allclose(
                response.json()["goodness"], expected.goodness[0], rtol=1e-4, atol=1e-5
            )
        assert "Traceback" not in api.log(), api.log()[-3000:]

    for pid in workers:  # the block's end stopped the server: none of its processes is left
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), (
            f"server process {pid} outlived the server"
        )


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_the_stream_cap_holds_for_the_server_as_a_whole(redis_url: str, store: TestStore) -> None:
    env = {"FF_API_PROCESSES": str(PROCESSES), "FF_MAX_STREAMS": str(MAX_STREAMS)}
    run_id = running_run(store)
    with start_api(redis_url, env=env) as api:
        wait_for(lambda: len(server_processes(api.process.pid)) == PROCESSES, 30, "both server processes")
        clients = [StreamClient(api, f"127.0.0.{n}") for n in range(2, 8)]
        try:
            # Two tries from each of six addresses: twelve new connections, spread over the processes as
            # the kernel hands them out.
            responses = [client.try_open(run_id) for _ in range(2) for client in clients]
            admitted = [response for response in responses if response.status_code == 200]
            refused = [response for response in responses if response.status_code != 200]
            # Each process admits MAX_STREAMS // PROCESSES: never more than MAX_STREAMS in all.
            assert MAX_STREAMS // PROCESSES <= len(admitted) <= MAX_STREAMS
            assert refused and {response.status_code for response in refused} == {503}
            detail = refused[0].json()["detail"]
            assert (
                f"this server process (one of {PROCESSES}) keeps at most {MAX_STREAMS // PROCESSES}" in detail
            )
        finally:
            for client in clients:
                client.close()
