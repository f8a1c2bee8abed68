"""One training attempt of one run: claim it, train (or resume) it with ffcore, record the outcome.

The run moves queued -> running -> succeeded | failed | cancelled. Everything written while
training is fenced by the run's lease (see fflab.store.attempts), so a worker that lost its lease stops
and writes nothing more, and a duplicate delivery of a run that is leased elsewhere or already
finished does nothing. A run asking for a GPU that reaches a CPU worker is passed on to the GPU
workers' queue untouched (see worker.routing).

Every Redis step of an attempt waits out passing trouble (a stall, a restart, Redis loading or out of
memory; see worker.redis_waits) instead of failing the run. If Redis stays unusable for
FF_REDIS_WAIT_S (default 5 minutes), the attempt gives up and hands the run back to the queue, to resume from
its last checkpoint. That hand-back counts against FF_MAX_ATTEMPTS (with the lost workers): the failed
attempt that reaches the cap ends the run failed instead, saying why (fflab.store.attempt_cap). If
Redis cannot take even the hand-back within as long again, the lease expires and a reaper requeues the
run, counting the attempt as a lost worker (or ends it failed at the cap).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

import torch

from ffcore import (
    DataError,
    Dataset,
    DivergedError,
    RunConfig,
    Trainer,
    load_dataset,
    load_training_state,
    save_model,
    save_training_state,
)
from fflab.connections import url_with_timeouts
from fflab.store.attempts import ClaimResult, LeaseLostError
from fflab.store.keys import Provenance, RunRecord, RunStatus, rewind_event, status_event
from worker.checkpoints import CheckpointSchedule
from worker.context import WorkerContext
from worker.progress import RunMonitor
from worker.provenance import collect_provenance
from worker.pruning import PruningReporter
from worker.redis_waits import RedisUnusableError, RedisWaits, hand_back, passing_problem
from worker.routing import belongs_elsewhere

log = logging.getLogger(__name__)

StopReason = Literal["cancelled", "lease_lost", "shutdown", "pruned"]
Outcome = Literal[
    "succeeded",
    "failed",
    "cancelled",
    "requeued",
    "passed_on",
    "lease_lost",
    "missing",
    "finished",
    "leased",
    "redis_unavailable",
]


class DatasetCache:
    """Data sets loaded by this process, kept for the next run that uses the same one."""

    def __init__(self) -> None:
        self._datasets: dict[tuple[str, str | None, str, str], Dataset] = {}
        self._lock = threading.Lock()

    def get(self, config: RunConfig, device: torch.device) -> Dataset:
        key = (config.dataset, config.data_dir, config.validation, str(device))
        with self._lock:
            if key not in self._datasets:
                log.info("loading %s (%s) onto %s", config.dataset, config.validation, device)
                self._datasets[key] = load_dataset(config, device)
            return self._datasets[key]


DATASETS = DatasetCache()


class StopCheck:
    """The Trainer's `should_stop`, polled every step: it only looks at events, never at Redis.

    The run's monitor thread turns the cancel flag and the lease into events; the heartbeat
    flags a lease it failed to renew; a warm shutdown sets the context's event.
    """

    def __init__(self, context: WorkerContext, monitor: RunMonitor, pruning: PruningReporter | None = None):
        self.context = context
        self.monitor = monitor
        self.pruning = pruning
        self.reason: StopReason | None = None

    def __call__(self) -> bool:
        if self.reason is None:
            if self.context.lease_lost.is_set() or self.monitor.lease_lost.is_set():
                self.reason = "lease_lost"
            elif self.context.shutting_down.is_set():
                self.reason = "shutdown"
            elif self.monitor.cancel_requested.is_set():
                self.reason = "cancelled"
            elif self.pruning is not None and self.pruning.pruned:
                self.reason = "pruned"
        return self.reason is not None


def training_device(requested: str, worker_device_type: str) -> str:
    """Where a run trains on this worker: 'cpu' or 'cuda' (the worker's GPU is the current one).

    A 'cuda' run never reaches the training of a CPU worker (`train_run` passes it on first); the
    error is the last line of defence."""
    if requested == "auto":
        return worker_device_type
    if requested == "cuda" and worker_device_type != "cuda":
        raise ValueError("the run asks for device 'cuda', but this worker trains on the CPU")
    return requested


def describe_error(error: BaseException) -> str:
    """A readable one-liner for the run record."""
    if isinstance(error, DataError):
        return f"data: {error}"
    if isinstance(error, DivergedError):  # says what happened and what to change
        return str(error)
    return f"{type(error).__name__}: {error}"


def train_run(context: WorkerContext, run_id: str, datasets: DatasetCache = DATASETS) -> Outcome:
    """Run one attempt of `run_id` on this worker; returns what became of it."""
    attempts, name = context.attempts, context.name
    waits = RedisWaits(f"run {run_id}", context.settings.redis_wait_s)
    if context.shutting_down.is_set():
        # A task taken while shutting down goes straight back to the queue, untouched.
        try:
            waits("sending its task back to the queue", lambda: context.enqueue(run_id))
        except RedisUnusableError as error:
            log.error("%s; the reaper sends the task of a queued run again", error)
        return "requeued"
    try:
        if _passed_on(context, run_id, waits):
            return "passed_on"
    except RedisUnusableError as error:
        log.error("%s; the run stays queued and the reaper sends its task again", error)
        return "redis_unavailable"
    try:
        provenance = collect_provenance(context.device, context.settings.git_commit, context.host)
    except Exception:  # how the run was made is worth recording, never worth failing the run for
        log.warning("run %s: could not collect its provenance", run_id, exc_info=True)
        provenance = None
    try:
        claim = waits("claiming it", _claimer(context, run_id, provenance))
    except RedisUnusableError as error:
        log.error("%s; the run stays queued and the reaper sends its task again", error)
        return "redis_unavailable"
    if claim.outcome != "claimed":
        log.info("run %s not started: %s", run_id, claim.outcome)
        return claim.outcome
    log.info("run %s: attempt %d on %s (%s)", run_id, claim.attempt, name, context.device)
    context.begin_run(run_id)
    try:
        return _train(context, run_id, datasets, waits)
    except LeaseLostError:
        log.warning("run %s: lease lost; another worker takes it up", run_id)
        return "lease_lost"
    except RedisUnusableError as error:
        return hand_back(context, run_id, error.detail, waits)
    except Exception as error:
        problem = passing_problem(error)
        if problem is not None:  # from a step no wait covers (none should be): as if it waited
            return hand_back(context, run_id, f"Redis {problem} ({error})", waits)
        log.exception("run %s failed", run_id)
        at, message = time.time(), describe_error(error)
        try:
            waits(
                "recording its failure",
                lambda: attempts.end_attempt(run_id, name, "failed", at=at, error=message),
            )
        except RedisUnusableError as unusable:
            log.error("%s; its lease expires and a reaper requeues it", unusable)
        return "failed"
    finally:
        context.end_run()


def _passed_on(context: WorkerContext, run_id: str, waits: RedisWaits) -> bool:
    """Send a run that asks for a device this worker lacks (a 'cuda' run on a CPU worker) to the queue
    of that device, untouched: it waits there for a GPU worker. A GPU worker trains every run."""
    if context.device_type == "cuda":
        return False
    record = waits("reading the device it asks for", lambda: context.attempts.load_run(run_id))
    if not belongs_elsewhere(record, context.device_type):
        return False
    assert record is not None
    waits("passing it on to the queue of its device", lambda: context.enqueue(run_id))
    log.warning(
        "run %s asks for device %r, which this worker (%s) lacks: passed on to the queue of its device, "
        "where it waits for a GPU worker",
        run_id,
        record.config.device,
        context.device,
    )
    return True


def _claimer(context: WorkerContext, run_id: str, provenance: Provenance | None) -> Callable[[], ClaimResult]:
    """The claim of `run_id`, as a step that may be called again: a try whose answer timed out may
    have claimed the run, and the next try then finds the lease ours."""
    attempts, name = context.attempts, context.name
    tries = 0

    def claim() -> ClaimResult:
        nonlocal tries
        tries += 1
        result = attempts.claim_run(run_id, name, context.settings.lease_ttl_s, context.device, provenance)
        if tries > 1 and result.outcome == "leased" and attempts.lease_owner(run_id) == name:
            record = attempts.load_run(run_id)
            return ClaimResult(outcome="claimed", attempt=record.attempts if record else 0)
        return result

    return claim


def _pruning_reporter(context: WorkerContext, record: RunRecord) -> PruningReporter | None:
    """The reporter of a run that its experiment may prune (None for all others); a study that cannot be
    reached is logged, and the run trains on unpruned (its setting's other seeds then still run)."""
    if context.experiments is None or record.experiment is None:
        return None
    try:
        return PruningReporter.for_run(context.experiments, url_with_timeouts(context.settings), record)
    except Exception:
        log.warning("run %s: cannot reach its experiment's study; not pruning it", record.id, exc_info=True)
        return None


def _note_inexact_resume(context: WorkerContext, run_id: str, trainer: Trainer, waits: RedisWaits) -> None:
    """Say in the run's stream (a status record: resumed attempts and viewers keep those) that it resumed
    here from a state saved on another kind of device: it goes on, but not as it would have gone on
    uninterrupted."""
    note = (
        f"resumed at step {trainer.step} on {context.device}, not bit-exact: its training state was "
        "saved on another kind of device, so the random generator (data order, negatives, jitter) was "
        "reseeded from the run's seed and step"
    )
    log.warning("run %s: %s", run_id, note)
    event = status_event("running", time.time(), reason=note, worker=context.name)
    attempts, name = context.attempts, context.name
    waits("noting its inexact resume", lambda: attempts.publish_progress(run_id, name, [event]))


def _train(context: WorkerContext, run_id: str, datasets: DatasetCache, waits: RedisWaits) -> Outcome:
    attempts, name, settings = context.attempts, context.name, context.settings
    record = waits("reading the run", lambda: attempts.load_run(run_id))
    if record is None:  # deleted between the claim and now
        waits("releasing its lease", lambda: attempts.release_lease(run_id, name))
        return "missing"
    run_config = record.config
    # The worker's own data directory wins: a submitted config cannot know this machine's paths.
    device = training_device(run_config.device, context.device_type)
    train_config = run_config.model_copy(
        update={"data_dir": settings.data_dir or run_config.data_dir, "device": device}
    )
    dataset = datasets.get(train_config, torch.device(device))

    state = waits("reading its training state", lambda: attempts.load_state(run_id))
    checkpointed = None
    if state is not None:
        checkpointed = waits("reading its checkpoint", lambda: attempts.load_checkpoint(run_id))
        trainer = load_training_state(
            state, dataset=dataset, device=train_config.device, log_every=settings.metrics_every_steps
        )
        log.info("run %s: resuming at step %d (epoch %d)", run_id, trainer.step, trainer.epoch)
    else:
        trainer = Trainer(train_config, dataset=dataset, log_every=settings.metrics_every_steps)
    # The dead attempt's records after the checkpoint (all of them, when it died before its first) would
    # repeat steps: drop them.
    after = checkpointed.stream_id if checkpointed else None
    dropped = waits(
        "dropping a dead attempt's records", lambda: attempts.discard_metrics_after(run_id, after)
    )
    if dropped:  # live viewers received them already: tell them where training starts again
        rewind = [rewind_event(trainer.step, trainer.epoch, time.time())]
        waits("telling viewers where it resumes", lambda: attempts.publish_progress(run_id, name, rewind))
    if not trainer.exact_resume:  # a state saved on another kind of device
        _note_inexact_resume(context, run_id, trainer, waits)

    monitor = RunMonitor(attempts, run_id, name, trainer.total_steps, trainer.steps_per_epoch)
    start = {
        "total_steps": trainer.total_steps, "step": trainer.step, "epoch": trainer.epoch,
        "progress": trainer.step / max(trainer.total_steps, 1),
    }  # fmt: skip
    waits("recording where it starts", lambda: attempts.publish_progress(run_id, name, [], **start))

    def checkpoint(trainer: Trainer) -> None:
        waits("streaming its metrics", monitor.flush)  # the checkpoint covers every record written so far
        state, model = save_training_state(trainer), save_model(trainer.model, run_config)
        waits(
            f"saving its checkpoint at step {trainer.step}",
            lambda: attempts.save_checkpoint(
                run_id, name, state, model, step=trainer.step, epoch=trainer.epoch
            ),
        )

    schedule = CheckpointSchedule(checkpoint, settings.checkpoint_interval_s)
    pruning = _pruning_reporter(context, record)

    def on_metrics(metrics: dict) -> None:
        monitor(metrics)
        if pruning is not None:  # a repeated report of an epoch is ignored by Optuna
            waits("reporting to its experiment's pruner", lambda: pruning.observe(metrics))

    stop = StopCheck(context, monitor, pruning)
    monitor.start()
    try:
        result = trainer.fit(on_metrics=on_metrics, on_epoch_end=schedule.epoch_ended, should_stop=stop)
    except DivergedError:  # its records until then (all finite) show how it got there: keep them
        try:
            waits("streaming its metrics from before it diverged", monitor.flush)
        except Exception:  # the failure matters more than its last records
            log.warning("run %s: its metrics before it diverged were not streamed", run_id, exc_info=True)
        raise
    finally:
        monitor.close()
    if stop.reason == "lease_lost":
        raise LeaseLostError(f"run {run_id}: lease lost while training")
    waits("streaming its last metrics", monitor.flush)
    # Where training stands now; a stop can fall between two metric records.
    position = {
        "step": trainer.step,
        "epoch": trainer.epoch,
        "progress": min(trainer.step / max(trainer.total_steps, 1), 1.0),
    }

    def end_attempt(status: RunStatus, **fields) -> None:
        at = time.time()  # the same in every try: a try that landed is recognised by it
        ended = waits(
            f"marking it {status}",
            lambda: attempts.end_attempt(run_id, name, status, at=at, **position, **fields),
        )
        if not ended:
            raise LeaseLostError(f"run {run_id}: lease lost before it could be marked {status}")

    def mark_pruned() -> None:
        assert context.experiments is not None and record.experiment is not None
        experiments, experiment = context.experiments, record.experiment
        waits("recording that it was pruned", lambda: experiments.mark_pruned(experiment, run_id))

    if not result.stopped and pruning is not None and pruning.pruned and record.experiment is not None:
        # Pruned at its last evaluation: the run is complete, but its setting's other seeds are not
        # run (ffcore.sweep's rule); the experiment's table shows the setting pruned.
        mark_pruned()
    if not result.stopped:
        end_attempt(
            "succeeded", test_error_scan=result.test_error_scan, test_error_softmax=result.test_error_softmax
        )
        log.info("run %s succeeded: test error %.4f (scan)", run_id, result.test_error_scan)
        return "succeeded"
    if stop.reason in ("cancelled", "pruned"):  # its stored model: no older than its last epoch end
        schedule.catch_up(trainer)
    if stop.reason == "cancelled":
        end_attempt("cancelled")
        log.info("run %s cancelled at step %d", run_id, result.steps)
        return "cancelled"
    if stop.reason == "pruned" and pruning is not None and context.experiments is not None:
        assert record.experiment is not None
        mark_pruned()  # before it ends: the table reads both
        error = (
            f"pruned at epoch {pruning.pruned_at} by experiment {record.experiment}: its validation error "
            "was worse than the median of the completed settings' at that epoch"
        )
        end_attempt("cancelled", error=error, reason="pruned")
        log.info("run %s pruned at epoch %s", run_id, pruning.pruned_at)
        return "cancelled"
    # Shutting down: save where we are (mid-epoch states resume exactly) and hand the run back.
    schedule.save(trainer)
    end_attempt("queued", reason=f"worker {name} shut down")
    waits("sending its task back to the queue", lambda: context.enqueue(run_id))
    log.info("run %s handed back to the queue at step %d", run_id, result.steps)
    return "requeued"
