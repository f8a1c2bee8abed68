"""Riding out passing Redis trouble: the worker waits and writes again instead of failing its run.

Redis can be unusable for a while with nothing wrong with the run: it stalls past the client's socket
timeout (redis.TimeoutError), restarts or fails over (redis.ConnectionError), loads its data after a
restart (BusyLoadingError), or refuses writes when out of memory under `maxmemory` with `noeviction`
("OOM command not allowed", until memory is freed or the cap raised). `RedisWaits` calls a Redis
step again after such an error, waiting 0.5 s, then twice as long each time up to 15 s, and logs what
it waits for; after REDIS_WAIT_S (5 minutes) of trouble it gives up with RedisUnusableError (the run
then goes back to the queue, see worker.training). Any other error (a bug, a wrong password, a lost
lease) goes to the caller at once.

A write that timed out may still have reached Redis: every step the worker calls again is
idempotent (see fflab.store.attempts), so that calling it twice records it once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

log = logging.getLogger(__name__)

T = TypeVar("T")

REDIS_WAIT_S = 300.0  # how long one step waits for Redis to take it before the attempt gives up
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
        super().__init__(f"{subject}: Redis {problem} for {waited_s:.0f} s while {what} ({error})")
        self.what, self.waited_s, self.problem = what, waited_s, problem


class RedisWaits:
    """Calls Redis steps of one subject (a run) and waits out passing trouble, for at most `limit_s`."""

    def __init__(
        self, subject: str, limit_s: float = REDIS_WAIT_S, sleep: Callable[[float], None] = time.sleep
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
