"""Metrics of a run: pages of records by cursor, a thinned series, a CSV export, and a live Server-Sent
Events stream."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import numpy as np
import redis
from anyio import to_thread
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import RunId, StoreDep, run_not_found
from api.routes.runs import NOT_FOUND, get_run_or_404
from api.schemas import ErrorOut, MetricsPage
from api.streams import STREAM_LIMIT_RESPONSES, GatedEventSourceResponse, StreamGateDep, client_address
from fflab.store.keys import FINISHED
from fflab.store.runs import RunStore

log = logging.getLogger(__name__)

router = APIRouter(prefix="/runs", tags=["metrics"])

_STREAM_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_MAX_STREAM_PART = 2**64 - 1
# How long one XREAD waits for new records before the stream checks whether the run finished.
EVENTS_BLOCK_MS = 5000
_READ_CHUNK = 5000
_EVENTS_BATCH = 500  # records per read of an event stream

CursorQuery = Annotated[
    str | None,
    Query(
        description="Return records after this cursor (a stream id from a record's `id` or a page's `next`).",
        examples=["1764201600000-0"],
    ),
]


def parse_cursor(value: str | None, field: str) -> str | None:
    """Check a stream id ('1764201600000-0' or '1764201600000'); 422 when it is not one."""
    if value is None or value == "":
        return None
    match = _STREAM_ID.match(value)
    if not match or any(int(part) > _MAX_STREAM_PART for part in match.groups() if part is not None):
        raise HTTPException(
            status_code=422,
            detail=f"{field}: {value[:50]!r} is not a cursor; use a record's `id` or a page's `next`, "
            "like '1764201600000-0'",
        )
    return value


def _read_page(store: RunStore, run_id: str, after: str | None, limit: int):
    try:
        return store.read_metrics(run_id, after=after, limit=limit)
    except redis.ResponseError:
        # Only reachable for a cursor at the very end of the id space: nothing comes after it.
        return [], after


def _read_all(store: RunStore, run_id: str, after: str | None) -> tuple[list[dict], str | None]:
    """Every record after the cursor up to the newest, each with its `id`, and the next cursor.

    Bounded by the stream's cap (FF_METRICS_MAXLEN records per run)."""
    records: list[dict] = []
    cursor = after
    while True:
        entries, cursor = _read_page(store, run_id, cursor, _READ_CHUNK)
        records.extend({"id": eid, **record} for eid, record in entries)
        if len(entries) < _READ_CHUNK:
            return records, cursor


def flat_record(record: dict) -> dict:
    """A metric record as one CSV row: each layer's values become `layer{N}_{name}` columns."""
    row = {}
    for key, value in record.items():
        if key == "layers" and isinstance(value, list):
            for layer in value:
                index = layer.get("layer")
                row.update({f"layer{index}_{name}": v for name, v in layer.items() if name != "layer"})
        elif isinstance(value, list | dict):
            row[key] = json.dumps(value)
        else:
            row[key] = value
    return row


def records_csv(records: list[dict]) -> str:
    """CSV text with one row per record and the union of their columns, in the order first seen."""
    rows = [flat_record(record) for record in records]
    columns = list(dict.fromkeys(column for row in rows for column in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def thin_train_records(records: list[dict], max_points: int) -> tuple[list[dict], bool]:
    """Keep at most `max_points` train records, evenly spaced, first and last included; all others."""
    train_positions = [i for i, r in enumerate(records) if r.get("kind") == "train"]
    if len(train_positions) <= max_points:
        return records, False
    keep = {train_positions[int(i)] for i in np.linspace(0, len(train_positions) - 1, max_points).round()}
    return [r for i, r in enumerate(records) if r.get("kind") != "train" or i in keep], True


@router.get(
    "/{run_id}/metrics",
    response_model=MetricsPage,
    responses={**NOT_FOUND, 422: {"model": ErrorOut, "description": "A parameter is invalid."}},
    summary="Metric records of a run, by cursor",
)
def read_metrics(
    run_id: RunId,
    store: StoreDep,
    after: CursorQuery = None,
    limit: Annotated[
        int, Query(ge=1, le=10_000, description="Most records to read (without max_points).")
    ] = 1000,
    kind: Annotated[
        Literal["train", "eval", "status", "rewind"] | None, Query(description="Only records of this kind.")
    ] = None,
    max_points: Annotated[
        int | None,
        Query(
            ge=2,
            le=100_000,
            description="Ask for a thinned series: every record after the cursor up to the newest "
            "(`limit` does not apply), with train records evenly thinned to at most this many; eval and "
            "status records are all kept. For loading a long run's curves at once.",
        ),
    ] = None,
) -> MetricsPage:
    """Records oldest first. Pass the page's `next` as `after` to get the records written since; `next`
    stays the same while nothing new arrived."""
    get_run_or_404(store, run_id)
    cursor = parse_cursor(after, "after")
    if max_points is None:
        entries, next_cursor = _read_page(store, run_id, cursor, limit)
        thinned = False
        records = [{"id": eid, **record} for eid, record in entries]
    else:
        records, next_cursor = _read_all(store, run_id, cursor)
        records, thinned = thin_train_records(records, max_points)
    if kind is not None:
        records = [r for r in records if r.get("kind") == kind]
    return MetricsPage(records=records, next=next_cursor, thinned=thinned)


@router.get(
    "/{run_id}/metrics.csv",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "The records as CSV, one row per record."},
        **NOT_FOUND,
        422: {"model": ErrorOut, "description": "A parameter is invalid."},
    },
    summary="Metric records of a run as CSV",
)
def export_metrics_csv(
    run_id: RunId,
    store: StoreDep,
    kind: Annotated[
        Literal["train", "eval", "status", "rewind"] | None,
        Query(description="Only records of this kind (default: all, with a `kind` column)."),
    ] = None,
) -> Response:
    """Every metric record of the run, oldest first, for a spreadsheet or pandas: the columns are the
    records' fields (`id` is the stream id), each layer's values of a train record as `layer{N}_{name}`
    columns; a field a record lacks is empty. The JSON of GET /runs/{id}/metrics holds the same values."""
    get_run_or_404(store, run_id)
    records, _ = _read_all(store, run_id, None)
    if kind is not None:
        records = [r for r in records if r.get("kind") == kind]
    return Response(
        content=records_csv(records),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="ff-{run_id}-metrics.csv"'},
    )


@router.get(
    "/{run_id}/events",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream."},
        **NOT_FOUND,
        422: {"model": ErrorOut, "description": "The cursor is invalid."},
        **STREAM_LIMIT_RESPONSES,
    },
    response_class=EventSourceResponse,
    summary="Live metrics and status changes (Server-Sent Events)",
)
async def stream_events(
    run_id: RunId,
    request: Request,
    store: StoreDep,
    gate: StreamGateDep,
    after: CursorQuery = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Resume after this event id (browsers send it when they reconnect); "
            "wins over `after`.",
        ),
    ] = None,
) -> EventSourceResponse:
    """Every metric record after the cursor (from the start without one), then new ones as they are
    written: event `metric` for train and eval records, `status` for status changes, each with the
    record as JSON data and its stream id as the event id. Event `rewind` (data `{"kind": "rewind",
    "step": N, "epoch": E, "at": T}`) says a resumed run dropped the records of a dead attempt that
    came after step N: drop every train and eval record past step N received so far. After the run
    finished and everything was sent, an `end` event (data: the final status) closes the stream.

    Open streams are capped, and a refused stream is answered before it starts: 429 when this client
    address already holds FF_MAX_STREAMS_PER_CLIENT streams, 503 when FF_MAX_STREAMS are open on the
    server; both with Retry-After. A stream's place is freed as soon as it ends, however it ends."""
    record = await to_thread.run_sync(store.get_run, run_id)
    if record is None:
        raise run_not_found(run_id)
    cursor = parse_cursor(last_event_id, "Last-Event-ID") or parse_cursor(after, "after") or "0-0"
    aclient = request.app.state.stream_redis
    # Admitted last, after every check that can refuse the request: nothing between here and the
    # response can fail and leave the slot taken.
    slot = gate.admit(client_address(request))
    return GatedEventSourceResponse(_events(store, aclient, run_id, cursor), ping=15, slot=slot)


async def _events(store: RunStore, aclient, run_id: str, cursor: str) -> AsyncIterator[ServerSentEvent]:
    """Send what is there, then wait for more; end once the run finished and all was sent.

    The worker writes a run's final status record last, so once the run record says finished, one
    more read without waiting sends the rest.
    """

    def to_event(event_id: str, record: dict) -> ServerSentEvent:
        kind = record.get("kind") if record.get("kind") in ("status", "rewind") else "metric"
        return ServerSentEvent(data=json.dumps(record), event=kind, id=event_id)

    try:
        block_ms: int | None = None  # the backlog goes out at once
        while True:
            entries = await store.read_metrics_blocking(aclient, run_id, cursor, block_ms, _EVENTS_BATCH)
            for event_id, record in entries:
                cursor = event_id
                yield to_event(event_id, record)
            if len(entries) == _EVENTS_BATCH:
                block_ms = None  # more backlog
                continue
            # Through the stream client, not a thread and the shared pool: hundreds of open streams
            # each ask every EVENTS_BLOCK_MS, and must not queue ahead of other routes' threads.
            found = await store.model_status_async(aclient, run_id)
            status = found[0] if found is not None else None
            if status is None or status in FINISHED:
                while entries := await store.read_metrics_blocking(
                    aclient, run_id, cursor, None, _EVENTS_BATCH
                ):
                    for event_id, record in entries:
                        cursor = event_id
                        yield to_event(event_id, record)
                final = status if status is not None else "deleted"
                yield ServerSentEvent(data=json.dumps({"status": final}), event="end", id=cursor)
                return
            block_ms = EVENTS_BLOCK_MS
    except (redis.ConnectionError, redis.TimeoutError) as error:
        log.warning("event stream of run %s ended: Redis unreachable (%s)", run_id, error)
