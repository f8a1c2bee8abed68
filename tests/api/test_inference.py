"""api.inference's parts on their own: SharedReads (the model cache's shared freshness reads), and the
prediction route's use of them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from api.inference import SharedReads
from api.routes.predict import model_status_reads


class GatedStore:
    """A key-value store whose reads each wait for the test to let them answer, and note when they began."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.began: list[tuple[str, int]] = []  # (key, the value stored when the read began)
        self.gates: list[asyncio.Event] = []
        self.fail_with: Exception | None = None

    async def read(self, key: str) -> int:
        value = self.values.get(key, 0)
        self.began.append((key, value))
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return value

    async def open_gates(self) -> None:
        """Let every read begun so far answer, and those they start in turn, until none waits."""
        await settle()
        while any(not gate.is_set() for gate in self.gates):
            for gate in self.gates:
                gate.set()
            await settle()


async def settle() -> None:
    """Let the event loop run what is ready (a task started now begins its read within a few turns)."""
    for _ in range(10):
        await asyncio.sleep(0)


def run(scenario):
    return asyncio.run(asyncio.wait_for(scenario(), timeout=5))


def test_callers_during_a_read_share_the_next_one_which_sees_what_was_stored_after_they_asked() -> None:
    async def scenario() -> tuple[list[int], list[tuple[str, int]]]:
        store = GatedStore()
        reads = SharedReads(store.read, asyncio.get_running_loop())
        first = asyncio.ensure_future(reads.get("run"))
        await settle()
        store.values["run"] = 1  # stored while the first read is in flight: it may not have seen it
        later = [asyncio.ensure_future(reads.get("run")) for _ in range(5)]
        await settle()
        await store.open_gates()
        return [await first, *await asyncio.gather(*later)], store.began

    answers, began = run(scenario)

    assert began == [("run", 0), ("run", 1)]  # two reads for six callers
    assert answers == [0, 1, 1, 1, 1, 1]  # the five who asked after the write all see it


def test_different_keys_are_read_apart_and_a_read_after_the_last_one_ended_reads_again() -> None:
    async def scenario() -> tuple[list[int], list[tuple[str, int]]]:
        store = GatedStore()
        store.values.update(a=1, b=2)
        reads = SharedReads(store.read, asyncio.get_running_loop())
        pending = [asyncio.ensure_future(reads.get(key)) for key in ("a", "b")]
        await settle()
        await store.open_gates()
        answers = list(await asyncio.gather(*pending))
        again = asyncio.ensure_future(reads.get("a"))
        await settle()
        await store.open_gates()
        return [*answers, await again], store.began

    answers, began = run(scenario)

    assert answers == [1, 2, 1]
    assert began == [("a", 1), ("b", 2), ("a", 1)]


def test_an_error_reaches_every_caller_and_the_next_call_reads_afresh() -> None:
    async def scenario() -> tuple[list[BaseException | int], int]:
        store = GatedStore()
        store.fail_with = ConnectionError("redis is down")
        reads = SharedReads(store.read, asyncio.get_running_loop())
        first = asyncio.ensure_future(reads.get("run"))
        await settle()
        shared = [asyncio.ensure_future(reads.get("run")) for _ in range(2)]
        await settle()
        await store.open_gates()
        outcomes = list(await asyncio.gather(first, *shared, return_exceptions=True))
        store.fail_with = None
        store.values["run"] = 7
        recovered = asyncio.ensure_future(reads.get("run"))
        await settle()
        await store.open_gates()
        return [*outcomes, await recovered], len(store.began)

    outcomes, reads_made = run(scenario)

    assert [type(outcome) for outcome in outcomes[:3]] == [ConnectionError] * 3
    assert outcomes[3] == 7 and reads_made == 3


def test_a_caller_that_goes_away_leaves_the_shared_answer_to_the_others() -> None:
    async def scenario() -> tuple[bool, list[int]]:
        store = GatedStore()
        store.values["run"] = 3
        reads = SharedReads(store.read, asyncio.get_running_loop())
        leaving, staying = (asyncio.ensure_future(reads.get("run")) for _ in range(2))
        await settle()
        leaving.cancel()
        await settle()
        await store.open_gates()
        return leaving.cancelled(), [await staying]

    cancelled, answers = run(scenario)

    assert cancelled and answers == [3]


def test_the_route_keeps_one_shared_reader_per_event_loop() -> None:
    # A test client starts a new event loop (and Redis client) per session: futures of one loop
    # cannot be awaited in another, so each loop gets its own reads, through the current client.
    class FakeStore:
        async def model_status_async(self, client: str, run_id: str) -> tuple[str, str]:
            return client, run_id

    state = SimpleNamespace(store=FakeStore(), async_redis="first client")
    request = SimpleNamespace(app=SimpleNamespace(state=state))

    async def in_one_loop() -> tuple[SharedReads, bool, tuple[str, str]]:
        reads = model_status_reads(request)
        return reads, model_status_reads(request) is reads, await reads.get("run")

    first, same_within, first_answer = asyncio.run(in_one_loop())
    state.async_redis = "second client"
    second, _, second_answer = asyncio.run(in_one_loop())

    assert same_within and second is not first
    assert (first_answer, second_answer) == (("first client", "run"), ("second client", "run"))
