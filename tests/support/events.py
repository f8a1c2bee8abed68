"""Read a Server-Sent Events stream (GET /runs/{id}/events) as the event dicts a client sees."""

from __future__ import annotations

import asyncio
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


async def hold_idle_stream(response: httpx.Response, first_event: asyncio.Future) -> None:
    """Read an admitted stream to its end, as a real client does (pings included), settling `first_event`
    with whether a data line came; then close it. Run as a task per stream."""
    try:
        async for line in response.aiter_lines():
            if line.startswith("data:") and not first_event.done():
                first_event.set_result(True)
    finally:
        if not first_event.done():
            first_event.set_result(False)
        await response.aclose()
