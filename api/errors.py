"""Error responses: readable 422s, 503 when Redis is down or full, 413 for oversized bodies.

Every error body is `{"detail": "..."}` saying what is wrong (and what is allowed), never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# Where a value came from is noise in a message ("body.config.epochs" reads better as "config.epochs").
_LOCATION_PREFIXES = {"body", "query", "path", "header", "cookie"}
MAX_LISTED_ERRORS = 8
# pydantic's types for a body that is not a JSON object: another JSON value, or not JSON at all (a form,
# plain text), which FastAPI hands on as it is.
_NOT_AN_OBJECT = {"model_attributes_type", "model_type", "dict_type"}
SEND_A_JSON_OBJECT = "send a JSON object, with Content-Type: application/json"
# FastAPI's answer to a body its JSON parser raised on with something else than a syntax error.
_UNPARSED_BODY = "There was an error parsing the body"


def describe_validation_errors(errors: list[dict[str, Any]]) -> str:
    """One 'field: message' per problem, joined by '; '."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        if loc == ["body"] and error.get("type") in _NOT_AN_OBJECT:
            parts.append(f"body: {SEND_A_JSON_OBJECT}")
            continue
        if loc and loc[0] in _LOCATION_PREFIXES:
            loc = loc[1:]
        message = error.get("msg", "invalid")
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error") or message.removeprefix("Invalid JSON: ")
            where = f" at character {loc[0]}" if loc else ""
            parts.append(f"body: not valid JSON ({reason}{where})")
            continue
        if error.get("type") == "missing" and not loc:
            parts.append("body: a JSON body is required")
            continue
        # pydantic prefixes messages of custom validators with "Value error, ".
        message = message.removeprefix("Value error, ")
        # A whole-model check has no location, and a nested model's check names where it is (an
        # experiment's "base.preset: ..."): such messages name the field themselves.
        where = ".".join(loc)
        parts.append(f"{where}: {message}" if loc and not message.startswith(where) else message)
    if len(parts) > MAX_LISTED_ERRORS:  # e.g. 784 bad pixels: the first few say enough
        parts = [*parts[:MAX_LISTED_ERRORS], f"and {len(parts) - MAX_LISTED_ERRORS} more problems"]
    return "; ".join(parts)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": describe_validation_errors(list(exc.errors()))})


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's own answer, except for a body its JSON parser gave up on for something else than a syntax
    error (nesting too deep, an integer too long, bytes that are not UTF-8): that one says why."""
    if exc.status_code == 400 and exc.detail == _UNPARSED_BODY:
        return JSONResponse(status_code=400, content={"detail": _unparsed_body(exc.__cause__)})
    return await http_exception_handler(request, exc)


def _unparsed_body(cause: BaseException | None) -> str:
    if isinstance(cause, RecursionError):
        reason = "it is nested too deeply"
    elif isinstance(cause, UnicodeDecodeError):
        reason = "it is not UTF-8 text"
    elif isinstance(cause, ValueError):  # e.g. an integer of more digits than Python converts
        reason = str(cause).split(";")[0]
    else:
        reason = "it could not be parsed"
    return f"body: not valid JSON ({reason}); {SEND_A_JSON_OBJECT}"


async def _redis_down(request: Request, exc: redis.ConnectionError) -> JSONResponse:
    log.warning("Redis unreachable while serving %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        status_code=503, content={"detail": "the run store (Redis) is unreachable; try again shortly"}
    )


async def _redis_timeout(request: Request, exc: redis.TimeoutError) -> JSONResponse:
    log.warning("Redis timed out while serving %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(status_code=503, content={"detail": "the run store (Redis) timed out; try again"})


REDIS_FULL = (
    "the run store (Redis) is full (its maxmemory is reached) and takes no more writes; nothing "
    "was changed: delete finished runs, or give Redis more memory"
)


async def _redis_full(request: Request, exc: redis.exceptions.OutOfMemoryError) -> JSONResponse:
    log.error("Redis is out of memory while serving %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(status_code=503, content={"detail": REDIS_FULL}, headers={"Retry-After": "60"})


def _is_redis_full(error: BaseException) -> bool:
    """Whether `error`, or one it was raised from (Celery wraps Redis's replies), is Redis's out-of-memory
    refusal."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, redis.exceptions.OutOfMemoryError) or "maxmemory" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def unqueued(what: str, error: Exception, undo: Callable[[], object]) -> HTTPException:
    """The 503 for a `what` (a run, an experiment) just stored whose task could not be sent.

    `undo` removes what was stored (deleting is allowed even when Redis is full), so that the answer can
    say nothing was changed and a retry makes no duplicate. Should the undo fail too, the record stays
    queued and the workers' reaper sends its task later (FF_LEASE_TTL_S): the answer says so instead.
    """
    try:
        undo()
    except Exception:
        log.exception("could not remove the unqueued %s either", what)
        return HTTPException(
            status_code=503,
            detail=f"the {what} was stored but its task could not be sent; the workers will send it again "
            "within FF_LEASE_TTL_S, so do not submit it again",
        )
    if _is_redis_full(error):
        return HTTPException(status_code=503, detail=REDIS_FULL, headers={"Retry-After": "60"})
    return HTTPException(
        status_code=503,
        detail="the task queue is unreachable; nothing was stored; try again",
        headers={"Retry-After": "10"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # FastAPI's own are of its kind
    app.add_exception_handler(redis.ConnectionError, _redis_down)
    app.add_exception_handler(redis.TimeoutError, _redis_timeout)
    app.add_exception_handler(redis.exceptions.OutOfMemoryError, _redis_full)


class BodySizeLimit:
    """Answer 413 to request bodies over `max_bytes`, declared (Content-Length) or streamed (chunked).

    A pure ASGI middleware, so that no oversized body is buffered first.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.message = f"request body too large: at most {max_bytes} bytes are accepted"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False  # the server rejects a malformed Content-Length itself
            if too_large:
                await JSONResponse(status_code=413, content={"detail": self.message})(scope, receive, send)
                return

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the route's body read; FastAPI turns it into the 413 response.
                    raise HTTPException(status_code=413, detail=self.message)
            return message

        await self.app(scope, receive_limited, send)
