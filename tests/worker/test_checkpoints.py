"""When a run checkpoints (FF_CHECKPOINT_INTERVAL_S): the schedule on a clock of the test's own, a run
trained in process on tiny data through the real store, and a real `python -m worker` on MNIST whose
checkpoint writes are counted by Redis's own keyspace notifications."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import redis
import torch

from ffcore import RunConfig, load_model
from fflab.store.attempts import AttemptStore
from fflab.store.keys import checkpoint_key
from tests.support.store import TestStore
from tests.support.tiny_data import tiny_config
from tests.support.waiting import wait_for
from tests.support.worker import start_worker, submit_run, wait_for_status
from worker.checkpoints import CheckpointSchedule
from worker.context import WorkerContext
from worker.training import train_run

# --- the schedule ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def schedule_saving_into(saved: list[int], interval_s: float, clock: FakeClock, write_s: float = 0.0):
    """A schedule whose checkpoint notes the trainer's epoch and takes `write_s` of the clock's time."""

    def save(trainer) -> None:
        saved.append(trainer.epoch)
        clock.now += write_s

    return CheckpointSchedule(save, interval_s, clock=clock)


def fake_trainer(epochs: int) -> SimpleNamespace:
    """What the schedule reads of a Trainer: the epochs done and the epochs of the run."""
    return SimpleNamespace(epoch=0, config=SimpleNamespace(epochs=epochs))


def end_epochs(
    schedule: CheckpointSchedule, trainer, clock: FakeClock, ends: list[tuple[int, float]]
) -> None:
    for epoch, at in ends:
        clock.now, trainer.epoch = at, epoch
        schedule.epoch_ended(trainer)


def test_an_epoch_end_checkpoints_once_the_interval_has_passed_since_the_last_write():
    clock, saved = FakeClock(), []
    schedule = schedule_saving_into(saved, interval_s=10, clock=clock, write_s=2)
    trainer = fake_trainer(epochs=100)
    # Epoch 1: none yet, written by t=2. Epoch 3 comes 9 s after that write (11 after it began): not
    # yet. Epoch 4, 10.5 s after it: written, by t=14.5. Epoch 5, 7.5 s later: not yet.
    end_epochs(schedule, trainer, clock, [(1, 0.0), (2, 5.0), (3, 11.0), (4, 12.5), (5, 22.0)])
    assert saved == [1, 4]
    assert schedule.behind


def test_the_last_epoch_always_checkpoints_and_an_interval_of_zero_checkpoints_every_epoch():
    clock, saved = FakeClock(), []
    schedule = schedule_saving_into(saved, interval_s=3600, clock=clock)
    end_epochs(schedule, fake_trainer(epochs=4), clock, [(1, 0.0), (2, 1.0), (3, 2.0), (4, 3.0)])
    assert saved == [1, 4] and not schedule.behind

    clock, saved = FakeClock(), []
    schedule = schedule_saving_into(saved, interval_s=0, clock=clock)
    end_epochs(schedule, fake_trainer(epochs=10), clock, [(epoch, 0.0) for epoch in range(1, 6)])
    assert saved == [1, 2, 3, 4, 5] and not schedule.behind


def test_a_stop_catches_up_only_on_an_unsaved_epoch_end_and_a_forced_save_restarts_the_timer():
    clock, saved = FakeClock(), []
    schedule = schedule_saving_into(saved, interval_s=10, clock=clock)
    trainer = fake_trainer(epochs=100)
    end_epochs(schedule, trainer, clock, [(1, 0.0)])
    assert schedule.catch_up(trainer) is False and saved == [1]  # nothing unsaved: the stored one stands
    end_epochs(schedule, trainer, clock, [(2, 4.0)])
    assert schedule.catch_up(trainer) is True and saved == [1, 2]
    assert schedule.catch_up(trainer) is False and saved == [1, 2]
    # A shutdown's save counts as the last checkpoint: the next one is an interval after it.
    clock.now = 8.0
    schedule.save(trainer)
    end_epochs(schedule, trainer, clock, [(3, 12.0), (4, 18.5)])
    assert saved == [1, 2, 2, 4]


# --- a run trained in process --------------------------------------------------------------------


class RecordingAttempts(AttemptStore):
    """The real store, noting the (step, epoch) of every checkpoint it writes."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.saved: list[tuple[int, int]] = []

    def save_checkpoint(self, run_id, worker, state, model, step, epoch) -> str:
        stream_id = super().save_checkpoint(run_id, worker, state, model, step=step, epoch=epoch)
        self.saved.append((step, epoch))
        return stream_id


def context_with_interval(settings, store: TestStore, interval_s: float, name: str) -> WorkerContext:
    return WorkerContext(
        settings=settings.model_copy(update={"checkpoint_interval_s": interval_s}),
        attempts=RecordingAttempts(store.redis),
        registry=store.workers,
        name=name,
        device="cpu",
        enqueue=lambda run_id: None,
    )


def test_a_run_checkpoints_at_its_first_and_last_epoch_ends_or_at_every_one_with_zero(
    settings, store, datasets
):
    config = tiny_config(epochs=5)  # 8 steps an epoch
    models = []
    for interval_s, saved in ((3600, [(8, 1), (40, 5)]), (0, [(8 * epoch, epoch) for epoch in range(1, 6)])):
        context = context_with_interval(settings, store, interval_s, name=f"every-{interval_s}")
        run_id = store.create_run(config).id
        assert train_run(context, run_id, datasets) == "succeeded"
        assert context.attempts.saved == saved
        record, checkpoint = store.get_run(run_id), store.load_checkpoint(run_id)
        assert (record.step, checkpoint.step, checkpoint.epoch, record.has_model) == (40, 40, 5, True)
        models.append(load_model(store.load_model(run_id))[0])
    # Checkpoints skipped or not, training is the same: both store the same finished model.
    for (name, a), (_, b) in zip(models[0].state_dict().items(), models[1].state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_cancelled_run_keeps_a_model_no_older_than_its_last_epoch_end(settings, store, datasets):
    context = context_with_interval(settings, store, 3600, name="w1")
    run_id = store.create_run(tiny_config(epochs=10_000)).id
    outcome: list[str] = []
    thread = threading.Thread(
        target=lambda: outcome.append(train_run(context, run_id, datasets)), daemon=True
    )
    thread.start()
    # Past the end of epoch 2 (step 16), which the timer left unsaved.
    wait_for(lambda: (store.get_run(run_id).step or 0) >= 20, 20, "the run to reach step 20", interval_s=0.01)
    store.cancel_run(run_id)
    thread.join(timeout=10)
    assert outcome == ["cancelled"]
    record, checkpoint = store.get_run(run_id), store.load_checkpoint(run_id)
    # The first epoch end, then where it stopped: the stored model is the one it stopped with.
    assert context.attempts.saved == [(8, 1), (record.step, record.epoch)] and record.step >= 20
    assert (checkpoint.step, checkpoint.epoch) == (record.step, record.epoch)
    assert record.has_model and store.load_state(run_id) is None  # a finished run's state is dropped


# --- a real worker -------------------------------------------------------------------------------


@contextmanager
def counted_checkpoint_writes(url: str) -> Iterator[list[int]]:
    """The epochs of the checkpoints written while the block runs, as Redis's keyspace notifications
    of the checkpoint hash report them (each read right after its write; writes come an epoch apart)."""
    client = redis.Redis.from_url(url)
    client.config_set("notify-keyspace-events", "Kh")  # keyspace events of hash commands
    prefix = "__keyspace@0__:"
    epochs: list[int] = []

    def written(message: dict) -> None:
        if message["data"] == b"hset":
            key = message["channel"].decode().removeprefix(prefix)
            epochs.append(int(client.hget(key, "epoch")))

    pubsub = client.pubsub()
    pubsub.psubscribe(**{prefix + checkpoint_key("*"): written})
    listener = pubsub.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        yield epochs
    finally:
        listener.stop()
        listener.join(timeout=5)
        pubsub.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("interval_s", "saved_epochs"), [(3600, [1, 4]), (0, [1, 2, 3, 4])])
def test_a_worker_checkpoints_by_its_interval(own_redis, mnist_dir, interval_s, saved_epochs):
    store = TestStore.from_url(own_redis.url)
    # One small layer and big batches: 20 steps an epoch on MNIST, a second or so each.
    config = RunConfig.from_preset(
        "quick", hidden=[16], scan_layers=[0], head_layers=[0], batch_size=2500, epochs=4
    )
    with (
        counted_checkpoint_writes(own_redis.url) as written,
        start_worker(own_redis.url, mnist_dir, checkpoint_interval_s=interval_s),
    ):
        run_id = submit_run(own_redis.url, config)
        record = wait_for_status(store, run_id, {"succeeded", "failed"}, timeout_s=180)
    assert record.status == "succeeded", record.error
    assert written == saved_epochs
    checkpoint = store.load_checkpoint(run_id)
    assert (checkpoint.step, checkpoint.epoch, record.has_model) == (80, 4, True)  # the finished model
