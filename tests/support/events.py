"""Read a Server-Sent Events stream (GET /runs/{id}/events) as the event dicts a client sees."""

from __future__ import annotations

from collections.abc import Iterator

import httpx


def read_events(response: httpx.Response) -> Iterator[dict]:
    """Parse a text/event-stream into {'event', 'id', 'data'} dicts (comments/pings skipped)."""
    event: dict = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
