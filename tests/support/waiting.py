"""Wait for a condition in tests and benchmarks: poll a check until it holds or the time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T],
    timeout_s: float,
    what: str | Callable[[], str],
    interval_s: float = 0.1,
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `check` every `interval_s` seconds until it returns something truthy; return that value.

    An exception of a type in `ignore` counts as "not yet" (a server that does not answer yet); any
    other one propagates at once (a check may raise to stop waiting for a process that died). After
    `timeout_s` it raises TimeoutError naming `what` (or what `what()` returns then, e.g. with a log)
    and the check's last value or exception.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except ignore as error:
            last = f"raised {error!r}"
        else:
            if value:
                return value
            last = f"returned {value!r}"
        if time.monotonic() > deadline:
            description = what() if callable(what) else what
            raise TimeoutError(
                f"timed out after {timeout_s:g} s waiting for {description}\n(the last check {last[:1000]})"
            )
        time.sleep(interval_s)
