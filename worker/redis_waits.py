"""Riding out passing Redis trouble: the worker waits and writes again instead of failing its run.

Redis can be unusable for a while with nothing wrong with the run: it stalls past the client's socket
timeout (redis.TimeoutError), restarts or fails over (redis.ConnectionError), loads its data after a
restart (BusyLoadingError), or refuses writes when out of memory under `maxmemory` with `noeviction`
("OOM command not allowed", until memory is freed or the cap raised). `RedisWaits` calls a Redis
step again after such an error, waiting 0.5 s, then twice as long each time up to 15 s, and logs what
it waits for; after FF_REDIS_WAIT_S of trouble (fflab.settings, default 300 s) it gives up with
RedisUnusableError. Any other error (a bug, a wrong password, a lost lease) goes to the caller at once.
An attempt that gave up then hands its run back to the queue (`hand_back`), which counts against
FF_MAX_ATTEMPTS: the failed attempt that reaches it ends the run failed instead.

A write that timed out may still have reached Redis: every step the worker calls again is
idempotent (see fflab.store.attempts), so that calling it twice records it once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypeVar

import redis

if TYPE_CHECKING:
    from worker.context import WorkerContext

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REDIS_WAIT_S = 300.0  # Settings.redis_wait_s's default
FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 15.0


def passing_problem(error: BaseException) -> str | None:
    """What a passing Redis error says is wrong ('timed out', 'is out of memory', ...); None for an
    error that waiting does not cure."""
    errors = redis.exceptions
    if isinstance(error, errors.BusyLoadingError):
        return "is loading its data"
    if isinstance(error, errors.AuthenticationError | errors.AuthorizationError):
        return None  # a wrong password or a missing permission stays wrong
    if isinstance(error, errors.ConnectionError):
        return "is unreachable"
    if isinstance(error, errors.TimeoutError):
        return "timed out"
    if isinstance(error, errors.OutOfMemoryError) or (
        isinstance(error, errors.ResponseError) and str(error).startswith("OOM")
    ):  # the second: an OOM reply that a client passed on as a plain ResponseError
        return "is out of memory"
    return None


class RedisUnusableError(RuntimeError):
    """Redis did not take a step of the worker's within the time it may wait."""

    def __init__(self, subject: str, what: str, waited_s: float, problem: str, error: BaseException):
        # What happened, without the subject: what a run's hand-back and its error say.
        self.detail = f"Redis {problem} for {waited_s:.0f} s while {what} ({error})"
        super().__init__(f"{subject}: {self.detail}")
        self.what, self.waited_s, self.problem = what, waited_s, problem


class RedisWaits:
    """Calls Redis steps of one subject (a run) and waits out passing trouble, for at most `limit_s`."""

    def __init__(
        self, subject: str, limit_s: float = DEFAULT_REDIS_WAIT_S, sleep: Callable[[float], None] = time.sleep
    ):
        self.subject = subject
        self.limit_s = limit_s
        self.sleep = sleep
        self.waits = 0  # how many times a step had to wait (what tests and logs read)

    def __call__(self, what: str, step: Callable[[], T]) -> T:
        """`step()`'s result; `what` says what it does ('saving the checkpoint'), for the log."""
        started = time.monotonic()
        delay = FIRST_WAIT_S
        while True:
            try:
                result = step()
            except Exception as error:
                problem = passing_problem(error)
                if problem is None:
                    raise
                waited = time.monotonic() - started
                if waited + delay > self.limit_s:
                    raise RedisUnusableError(self.subject, what, waited, problem, error) from error
                log.warning(
                    "%s: Redis %s while %s; trying again in %.1f s (waited %.0f s of at most %.0f s): %s",
                    self.subject, problem, what, delay, waited, self.limit_s, error,
                )  # fmt: skip
                self.waits += 1
                self.sleep(delay)
                delay = min(delay * 2, LONGEST_WAIT_S)
                continue
            if delay > FIRST_WAIT_S:
                waited = time.monotonic() - started
                log.info("%s: %s went through after %.1f s of waiting for Redis", self.subject, what, waited)
            return result


def hand_back(
    context: WorkerContext, run_id: str, why: str, waits: RedisWaits
) -> Literal["failed", "lease_lost", "redis_unavailable"]:
    """Give up an attempt that Redis could not serve (`why`: what Redis did) and hand the run back to
    the queue, to resume from its last checkpoint; or, when this failed attempt reaches FF_MAX_ATTEMPTS,
    end the run failed, saying why (one script: fflab.store.attempt_cap). What became of the run.

    The hand-back waits for Redis as long again, the heartbeat keeping the lease alive meanwhile (Redis
    out of memory still takes the renewal). If Redis takes it not even then, the lease expires and a
    reaper requeues the run, counting the attempt as a lost worker: either way it is counted once."""
    log.error("run %s: %s; handing the run back to the queue", run_id, why)
    attempts, name, max_attempts = context.attempts, context.name, context.settings.max_attempts
    at = time.time()  # the same in every try: a try that landed is recognised by it
    try:
        outcome = waits(
            "handing it back to the queue", lambda: attempts.hand_back(run_id, name, why, max_attempts, at=at)
        )
    except Exception as error:
        log.error(
            "run %s: could not hand it back either (%s); its lease expires and a reaper requeues it",
            run_id, error,
        )  # fmt: skip
        return "redis_unavailable"
    if outcome is None:
        log.warning("run %s: lease lost before it was handed back; another worker takes it up", run_id)
        return "lease_lost"
    if outcome == "failed":
        log.error(
            "run %s: its %d failed attempts reach FF_MAX_ATTEMPTS; it ends failed", run_id, max_attempts
        )
        return "failed"
    try:
        waits("sending its task back to the queue", lambda: context.enqueue(run_id))
    except Exception as error:  # the run is queued: the reaper sends its task again
        log.error(
            "run %s: handed back, but its task was not sent (%s); the reaper sends it again", run_id, error
        )
    return "redis_unavailable"
