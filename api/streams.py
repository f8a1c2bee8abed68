"""The gate of the event streams (GET /runs/{id}/events): how many may be open at once.

An event stream holds a connection, a task and, while it waits for records, a connection of the stream
Redis pool (sized FF_MAX_STREAMS in api.main) for as long as its client keeps it open. The gate counts
open streams in all and per client address, and refuses a new one before its response starts:

- 429 with Retry-After when the client's address already holds FF_MAX_STREAMS_PER_CLIENT streams;
- 503 with Retry-After when FF_MAX_STREAMS streams are open on this server.

An admitted stream holds a `StreamSlot`; `GatedEventSourceResponse` gives it back when the response
ends, whatever ends it: the run finished, the client went away, Redis failed, the server shuts down.
The counts live in the server's process (one gate per app, made on first use), so each API process
counts its own streams. Everything runs on the event loop, so no lock is needed: admitting is
synchronous, with no await between the check and the count.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from api.schemas import ErrorOut

# Streams last minutes to hours; a refused client should not come back at once.
RETRY_AFTER_S = 10
# The address of a request whose transport gives none (never under uvicorn's TCP server).
UNKNOWN_CLIENT = "unknown"

STREAM_LIMIT_RESPONSES: dict[int | str, dict] = {
    429: {
        "model": ErrorOut,
        "description": "This client address already holds FF_MAX_STREAMS_PER_CLIENT event streams "
        "(Retry-After says when to try again).",
    },
    503: {
        "model": ErrorOut,
        "description": "FF_MAX_STREAMS event streams are open on this server (Retry-After says when to "
        "try again), or Redis is unreachable.",
    },
}


class StreamSlot:
    """One admitted stream's place in the counts; `release` gives it back (once, however often called)."""

    def __init__(self, gate: StreamGate, client: str):
        self._gate = gate
        self.client = client
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._gate._release(self.client)


class StreamGate:
    """Counts open event streams, in all and per client address, against the two caps."""

    def __init__(self, max_streams: int, max_per_client: int, processes: int = 1):
        self.max_streams = max_streams
        self.max_per_client = max_per_client
        # With several server processes each counts its own streams against its share of the caps.
        self.where = "this server" if processes == 1 else f"this server process (one of {processes})"
        self.open = 0
        self.per_client: Counter[str] = Counter()

    def admit(self, client: str) -> StreamSlot:
        """A slot for a new stream of `client`; HTTPException 429 or 503 when a cap is reached."""
        if self.per_client[client] >= self.max_per_client:
            raise HTTPException(
                status_code=429,
                detail=f"too many event streams from {client[:100]}: at most {self.max_per_client} may be "
                f"open at once per client address on {self.where} (FF_MAX_STREAMS_PER_CLIENT raises it); "
                f"close one, or try again in {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if self.open >= self.max_streams:
            raise HTTPException(
                status_code=503,
                detail=f"too many event streams: {self.where} keeps at most {self.max_streams} open at "
                f"once (FF_MAX_STREAMS raises it); try again in {RETRY_AFTER_S} s, or read "
                "GET /runs/{id}/metrics by cursor",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.open += 1
        self.per_client[client] += 1
        return StreamSlot(self, client)

    def _release(self, client: str) -> None:
        self.open -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]  # an address that left keeps no entry


def get_stream_gate(request: Request) -> StreamGate:
    """The app's gate, made on first use from its settings."""
    state = request.app.state
    gate = getattr(state, "stream_gate", None)
    if gate is None:
        settings = state.settings
        gate = state.stream_gate = StreamGate(
            settings.process_share(settings.max_streams),
            settings.process_share(settings.max_streams_per_client),
            settings.api_processes,
        )
    return gate


StreamGateDep = Annotated[StreamGate, Depends(get_stream_gate)]


def client_address(request: Request) -> str:
    """The address the gate counts a request's streams under: the peer's IP address (behind a proxy,
    the proxy's)."""
    return request.client.host if request.client is not None else UNKNOWN_CLIENT


class GatedEventSourceResponse(EventSourceResponse):
    """An event stream that gives its slot back when it ends, for any reason.

    The release sits around the whole ASGI call rather than in the event generator: a generator
    cancelled while suspended at a `yield` (the client went away during a send) would run its
    `finally` only when garbage-collected.
    """

    def __init__(self, *args, slot: StreamSlot, **kwargs):
        super().__init__(*args, **kwargs)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
