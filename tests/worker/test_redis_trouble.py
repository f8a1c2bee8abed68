"""Passing Redis trouble (a stall, out of memory) does not fail a run: the worker waits and writes
again (worker.redis_waits), and one whose Redis stays unusable for long goes back to the queue, until
its failed attempts reach FF_MAX_ATTEMPTS: then it ends failed.

Most tests have a redis-server of their own (the `own_redis` fixture) that they stop or fill up. The
first tests drive `RedisWaits` and `train_run` in process; the slow ones, real `python -m worker`
processes on MNIST.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading

import pydantic
import pytest
import redis

from ffcore import RunConfig
from fflab.connections import redis_client
from fflab.settings import Settings
from tests.support.store import TestStore
from tests.support.tiny_data import tiny_config
from tests.support.waiting import wait_for
from tests.support.worker import WorkerProcess, start_worker, submit_run, wait_for_status
from worker.context import WorkerContext
from worker.heartbeat import Heartbeat
from worker.reaper import Reaper
from worker.redis_waits import (
    DEFAULT_REDIS_WAIT_S,
    RedisUnusableError,
    RedisWaits,
    hand_back,
    passing_problem,
)
from worker.training import train_run

METRICS_EVERY = 5


def test_passing_redis_errors_are_told_from_lasting_ones(own_redis):
    client = own_redis.client()
    client.set("key", "value")
    own_redis.fill_up()
    with pytest.raises(redis.RedisError) as out_of_memory:
        client.set("another", "x" * 1000)
    own_redis.make_room()
    with pytest.raises(redis.RedisError) as wrong_type:
        client.lpush("key", "x")
    own_redis.stop_answering()
    try:
        with pytest.raises(redis.RedisError) as timed_out:
            # The worker's own client gives up on a server that does not answer, rather than wait forever.
            redis_client(Settings(redis_url=own_redis.url, redis_socket_timeout_s=0.2)).get("key")
    finally:
        own_redis.answer_again()
    client.config_set("requirepass", "secret")
    with pytest.raises(redis.RedisError) as no_password:
        redis.Redis.from_url(own_redis.url).get("key")
    with pytest.raises(redis.RedisError) as unreachable:
        redis.Redis(port=1, socket_connect_timeout=1, retry=None).get("key")

    assert passing_problem(out_of_memory.value) == "is out of memory"
    assert passing_problem(timed_out.value) == "timed out"
    assert passing_problem(unreachable.value) == "is unreachable"
    assert passing_problem(redis.BusyLoadingError("Redis is loading the dataset in memory")) == (
        "is loading its data"
    )
    assert passing_problem(wrong_type.value) is None  # a bug: waiting does not cure it
    assert passing_problem(no_password.value) is None  # nor a wrong password


def test_a_step_waits_while_redis_is_out_of_memory_and_goes_through_once_there_is_room(own_redis, caplog):
    client = own_redis.client()
    own_redis.fill_up()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the operator makes room during the second wait
        sleeps.append(seconds)
        if len(sleeps) == 2:
            own_redis.make_room()

    waits = RedisWaits("run r1", limit_s=60, sleep=sleep)
    with caplog.at_level(logging.WARNING, logger="worker.redis_waits"):
        assert waits("saving its checkpoint", lambda: client.set("checkpoint", "x" * 1000)) is True
    assert client.get("checkpoint") == b"x" * 1000
    assert waits.waits == 2 and sleeps == [0.5, 1.0]  # backing off
    assert "run r1: Redis is out of memory while saving its checkpoint; trying again in 0.5 s" in caplog.text


def test_a_step_gives_up_after_its_limit_and_says_what_it_waited_for(own_redis):
    client = own_redis.client()
    own_redis.fill_up()
    waits = RedisWaits("run r1", limit_s=2)
    with pytest.raises(RedisUnusableError) as gave_up:
        waits("marking it succeeded", lambda: client.set("run", "succeeded"))
    assert str(gave_up.value).startswith("run r1: Redis is out of memory for ")
    assert "s while marking it succeeded (" in str(gave_up.value)
    assert waits.waits >= 1 and client.get("run") is None


def test_an_error_that_waiting_does_not_cure_is_raised_at_once(own_redis):
    client = own_redis.client()
    client.set("key", "value")
    waits = RedisWaits("run r1", limit_s=60, sleep=lambda _: pytest.fail("it waited"))
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        waits("streaming its metrics", lambda: client.lpush("key", "x"))


def test_an_attempt_that_redis_cannot_serve_for_long_gives_the_run_back(own_redis, datasets):
    """Out of memory past the attempt's wait: it gives up; Redis refuses even the hand-back, so the run
    stays running until its lease expires and the reaper requeues it, to resume from its checkpoint."""
    settings = Settings(
        redis_url=own_redis.url,
        metrics_every_steps=2,
        lease_ttl_s=2,
        heartbeat_interval_s=0.2,
        checkpoint_interval_s=0,  # the OOM is met at the next epoch end's checkpoint: don't wait 10 s for it
        redis_wait_s=1,
    )
    store = TestStore.from_url(own_redis.url)
    enqueued: list[str] = []
    context = WorkerContext(
        settings=settings,
        attempts=store.attempts,
        registry=store.workers,
        name="w1",
        device="cpu",
        enqueue=enqueued.append,
    )
    heartbeat = Heartbeat(context, Reaper(store.attempts, enqueued.append, "w1"))
    heartbeat.start()
    try:
        run_id = store.create_run(tiny_config(epochs=10_000)).id  # far longer than the test
        outcome: list[str] = []
        thread = threading.Thread(target=lambda: outcome.append(train_run(context, run_id, datasets)))
        thread.start()
        wait_for(lambda: store.load_checkpoint(run_id), 60, "the run's first checkpoint")
        own_redis.fill_up()
        thread.join(timeout=60)
        assert outcome == ["redis_unavailable"]
        assert store.get_run(run_id).status == "running"  # Redis took nothing, not even the hand-back

        own_redis.make_room()
        record = wait_for_status(store, run_id, {"queued"}, timeout_s=30)
    finally:
        heartbeat.stop()
    # The refused hand-back counted nothing; the reaper counted the attempt as a lost worker.
    assert (record.attempts, record.lost_workers, record.redis_give_ups, record.worker) == (1, 1, 0, None)
    assert run_id in enqueued and store.load_state(run_id) is not None  # it resumes from its checkpoint
    last = store.read_metrics(run_id, limit=100_000)[0][-1][1]
    assert (last["status"], last["reason"]) == ("queued", "lease expired (worker lost), found by w1")


# --- real worker processes --------------------------------------------------------------------


def small_run(**overrides) -> RunConfig:
    """20 steps an epoch on MNIST's 50,000 training images."""
    return RunConfig.from_preset(
        "quick", **{"hidden": [16], "scan_layers": [0], "head_layers": [0], "batch_size": 2500} | overrides
    )


def assert_whole(store: TestStore, run_id: str, epochs: int) -> None:
    """The run succeeded in one attempt, every metric record in the stream once."""
    record = store.get_run(run_id)
    assert record.status == "succeeded", record.error
    assert (record.attempts, record.epoch, record.step) == (1, epochs, 20 * epochs)
    records = [r for _, r in store.read_metrics(run_id, limit=100_000)[0]]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(
        range(METRICS_EVERY, 20 * epochs + 1, METRICS_EVERY)
    )
    evals = [(r["step"], r["split"]) for r in records if r["kind"] == "eval"]
    assert evals == [(20 * epoch, "val") for epoch in range(1, epochs + 1)] + [(20 * epochs, "test")]
    assert [r["status"] for r in records if r["kind"] == "status"] == ["queued", "running", "succeeded"]


def waited_twice(worker: WorkerProcess, message: str) -> None:
    """Wait until the worker's log says twice that it waits for Redis (`message`)."""
    wait_for(
        lambda: worker.log().count(message) >= 2,
        120,
        lambda: f"the worker to wait for Redis twice; its log:\n{worker.log()[-3000:]}",
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_rides_out_a_redis_stall_longer_than_its_socket_timeout(own_redis, mnist_dir):
    store = TestStore.from_url(own_redis.url)
    timeouts = {"FF_REDIS_SOCKET_TIMEOUT_S": "1"}
    # A lease far longer than the stall: riding it out is the point, not the reaper.
    with start_worker(
        own_redis.url, mnist_dir, metrics_every_steps=METRICS_EVERY, lease_ttl_s=120, env=timeouts
    ) as worker:
        run_id = submit_run(own_redis.url, small_run(epochs=3))
        wait_for(lambda: store.get_run(run_id).step >= METRICS_EVERY, 60, "the run to train")
        own_redis.stop_answering()
        try:
            # Training goes on until its next checkpoint, which waits for Redis (twice: backing off).
            waited_twice(worker, f"run {run_id}: Redis timed out while ")
        finally:
            own_redis.answer_again()
        wait_for_status(store, run_id, {"succeeded", "failed"}, timeout_s=180)
    assert_whole(store, run_id, epochs=3)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_waits_while_redis_is_out_of_memory_and_the_run_completes(own_redis, mnist_dir):
    store = TestStore.from_url(own_redis.url)
    with start_worker(own_redis.url, mnist_dir, metrics_every_steps=METRICS_EVERY) as worker:
        run_id = submit_run(own_redis.url, small_run(epochs=3))
        wait_for(lambda: store.get_run(run_id).step >= METRICS_EVERY, 60, "the run to train")
        own_redis.fill_up()
        try:
            waited_twice(worker, f"run {run_id}: Redis is out of memory while ")
            assert store.get_run(run_id).status == "running"
        finally:
            own_redis.make_room()
        wait_for_status(store, run_id, {"succeeded", "failed"}, timeout_s=180)
    assert_whole(store, run_id, epochs=3)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_that_redis_keeps_refusing_ends_failed_at_the_attempt_cap(own_redis, mnist_dir):
    """Redis out of memory past the worker's wait (FF_REDIS_WAIT_S, here 8 s), at two attempts of a run;
    FF_MAX_ATTEMPTS=2. Each gives up and, once there is room again, hands the run back: the first
    requeues it, the second ends it failed, saying why.

    (Had Redis still been full when the hand-back gave up too, the attempt would be counted by the
    reaper once the lease expired: see test_an_attempt_that_redis_cannot_serve_for_long_gives_the_run_back.
    Through a real worker that case is not tested here: Celery's worker stops at once when Redis refuses
    the acknowledgement of the task that ended, so another worker's reaper has to take the run up.)"""
    store = TestStore.from_url(own_redis.url)
    settings = {"FF_REDIS_WAIT_S": "8", "FF_MAX_ATTEMPTS": "2"}
    with start_worker(
        own_redis.url, mnist_dir, metrics_every_steps=METRICS_EVERY, checkpoint_interval_s=0, env=settings
    ) as worker:
        run_id = submit_run(own_redis.url, small_run(epochs=10_000))  # far longer than the test
        for attempt in (1, 2):
            give_up_on_redis(worker, store, own_redis, run_id, attempt)
        wait_for_status(store, run_id, {"failed", "succeeded"}, timeout_s=60)
    records = assert_failed_at_the_cap_by_redis(store, run_id, give_ups=2, last_while="")
    assert records[2]["reason"].startswith("Redis is out of memory for ")
    assert records[2]["reason"].endswith("; handed back")


def assert_failed_at_the_cap_by_redis(store: TestStore, run_id: str, give_ups: int, last_while: str) -> list:
    """The run ended failed at FF_MAX_ATTEMPTS=`give_ups`, every attempt having given up on a full Redis
    (its error's last time matching `last_while`, a pattern), with no lease or state left and the status
    records queued, then running and queued per hand-back, then running and failed; those records."""
    record = store.get_run(run_id)
    assert (record.status, record.attempts, record.lost_workers, record.redis_give_ups) == (
        "failed", give_ups, 0, give_ups
    )  # fmt: skip
    assert re.match(
        rf"gave up after {give_ups} failed attempts \(FF_MAX_ATTEMPTS={give_ups}\): Redis could not take its "
        rf"writes {give_ups} times; the last time: Redis is out of memory for \d+ s while {last_while}",
        record.error,
    ), record.error
    assert store.lease_owner(run_id) is None and store.load_state(run_id) is None
    records = [r for _, r in store.read_metrics(run_id, limit=100_000)[0] if r["kind"] == "status"]
    expected = ["queued", *["running", "queued"] * (give_ups - 1), "running", "failed"]
    assert [r["status"] for r in records] == expected
    return records


def give_up_on_redis(worker: WorkerProcess, store: TestStore, own_redis, run_id: str, attempt: int) -> None:
    """Once attempt `attempt` of the run has saved a checkpoint, fill Redis up until the worker gave up and
    waits to hand the run back; then make room."""

    def started() -> bool:
        record = store.get_run(run_id)
        return (record.attempts, record.status) == (attempt, "running")

    wait_for(started, 60, f"attempt {attempt} to start")
    before = store.load_checkpoint(run_id)  # attempt 2's: the one it resumed from

    def checkpointed() -> bool:
        now = store.load_checkpoint(run_id)
        return now is not None and (before is None or now.step > before.step)

    wait_for(checkpointed, 90, f"a checkpoint of attempt {attempt}")
    since = len(worker.log())
    own_redis.fill_up()
    try:  # full past the wait; room again while the worker waits to hand the run back
        logged(worker, f"run {run_id}: Redis is out of memory while handing it back to the queue", since)
        assert store.get_run(run_id).status == "running"  # Redis took nothing
    finally:
        own_redis.make_room()


def logged(worker: WorkerProcess, message: str, since: int) -> None:
    """Wait until the worker's log says `message` after its first `since` characters."""
    wait_for(
        lambda: message in worker.log()[since:],
        120,
        lambda: f"the worker to log {message!r}; its log:\n{worker.log()[-3000:]}",
    )


def test_a_run_given_up_while_redis_takes_writes_again_is_handed_back_at_once(store, make_context, enqueued):
    run_id = store.create_run(tiny_config()).id
    context = make_context()
    assert store.claim_run(run_id, context.name, 60, "cpu").outcome == "claimed"
    why = "Redis is out of memory for 300 s while saving its checkpoint at step 8 (OOM)"
    waits = RedisWaits(f"run {run_id}", sleep=lambda _: pytest.fail("it waited"))
    assert hand_back(context, run_id, why, waits) == "redis_unavailable"
    record = store.get_run(run_id)
    assert (record.status, store.lease_owner(run_id), enqueued) == ("queued", None, [run_id])
    assert (record.redis_give_ups, record.lost_workers) == (1, 0)  # counted against FF_MAX_ATTEMPTS
    last = store.read_metrics(run_id)[0][-1][1]
    assert (last["status"], last["reason"]) == ("queued", f"{why}; handed back")


def test_a_hand_back_waits_for_redis_to_take_it(own_redis):
    store = TestStore.from_url(own_redis.url)
    enqueued: list[str] = []
    context = WorkerContext(
        settings=Settings(redis_url=own_redis.url),
        attempts=store.attempts,
        registry=store.workers,
        name="w1",
        device="cpu",
        enqueue=enqueued.append,
    )
    run_id = store.create_run(tiny_config()).id
    assert store.claim_run(run_id, "w1", 60, "cpu").outcome == "claimed"
    own_redis.fill_up()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the operator makes room during the second wait
        sleeps.append(seconds)
        if len(sleeps) == 2:
            own_redis.make_room()

    why = "Redis is out of memory for 300 s while streaming its metrics (OOM)"
    assert hand_back(context, run_id, why, RedisWaits(f"run {run_id}", sleep=sleep)) == "redis_unavailable"
    record = store.get_run(run_id)
    assert (record.status, record.redis_give_ups, enqueued, sleeps) == ("queued", 1, [run_id], [0.5, 1.0])


def test_an_attempt_refused_its_checkpoint_every_time_ends_the_run_failed_at_the_cap(
    store, make_context, enqueued, datasets, monkeypatch
):
    """Redis refuses the run's checkpoint (out of memory) past the worker's wait, attempt after attempt:
    each hands the run back, and the third (FF_MAX_ATTEMPTS=3) ends it failed, saying why."""

    def refused(*args, **kwargs):
        raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")

    monkeypatch.setattr(store.attempts, "save_checkpoint", refused)
    context = make_context()
    context = dataclasses.replace(context, settings=context.settings.model_copy(update={"redis_wait_s": 1}))
    run_id = store.create_run(tiny_config()).id
    outcomes = [train_run(context, run_id, datasets) for _ in range(3)]
    assert outcomes == ["redis_unavailable", "redis_unavailable", "failed"]
    assert enqueued == [run_id, run_id]  # handed back twice, then not again
    assert_failed_at_the_cap_by_redis(
        store, run_id, give_ups=3, last_while=r"saving its checkpoint at step 8 \(command "
    )


def test_the_wait_for_redis_is_a_setting(monkeypatch):
    assert Settings().redis_wait_s == DEFAULT_REDIS_WAIT_S == 300
    monkeypatch.setenv("FF_REDIS_WAIT_S", "2.5")
    assert Settings().redis_wait_s == 2.5
    for bad in ("0", "-1", "soon", "inf", "nan"):
        monkeypatch.setenv("FF_REDIS_WAIT_S", bad)
        with pytest.raises(pydantic.ValidationError, match="redis_wait_s"):
            Settings()
