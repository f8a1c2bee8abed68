"""`python -m api`: serve the REST API with uvicorn on FF_API_HOST:FF_API_PORT (default 127.0.0.1:8000), in
FF_API_PROCESSES server processes (default 1).

Reachable beyond loopback (FF_API_HOST, or FF_PUBLISHED_HOST in a container) it needs FF_API_KEY,
unless FF_INSECURE_OPEN_WITHOUT_KEY says something else guards it. A read-only key (FF_READ_KEY) needs
FF_API_KEY beside it, and a different one.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import logging

import uvicorn
import uvicorn.config

from api.main import create_app
from fflab.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def open_without_key(settings: Settings, host: str) -> str | None:
    """Why the API must not start like this (None: it may): reachable beyond loopback, no key."""
    reachable_on = settings.published_host or host
    if is_loopback(reachable_on) or settings.api_key or settings.insecure_open_without_key:
        return None
    where = f"published on {reachable_on}" if settings.published_host else f"listening on {host}"
    return (
        f"refusing to start {where} without FF_API_KEY: anyone who reaches this host could queue, delete "
        "and download runs. Set FF_API_KEY (clients then send it as X-API-Key), or listen on 127.0.0.1, "
        "or, if something else guards this address, set FF_INSECURE_OPEN_WITHOUT_KEY=true"
    )


def read_key_without_api_key(settings: Settings) -> str | None:
    """Why FF_READ_KEY cannot be used like this (None: it can)."""
    if not settings.read_key:
        return None
    if not settings.api_key:
        return (
            "refusing to start with FF_READ_KEY but without FF_API_KEY: the read-only key protects reads "
            "only together with an API key that protects changes, and without one reads would stay open "
            "and anyone could change everything. Set FF_API_KEY too, or unset FF_READ_KEY"
        )
    if settings.read_key == settings.api_key:
        return (
            "refusing to start with FF_READ_KEY equal to FF_API_KEY: whoever holds the read-only key could "
            "change everything. Give FF_READ_KEY a value of its own"
        )
    return None


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m api",
        description="Serve the FF Lab REST API; settings come from FF_* environment variables "
        "(e.g. FF_REDIS_URL).",
    )
    parser.add_argument("--host", default=settings.api_host, help="address to listen on (FF_API_HOST)")
    parser.add_argument("--port", type=int, default=settings.api_port, help="port to listen on (FF_API_PORT)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    refusal = read_key_without_api_key(settings) or open_without_key(settings, args.host)
    if refusal is not None:
        parser.exit(2, f"error: {refusal}\n")
    if settings.api_processes == 1:
        logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
        return
    # uvicorn starts each process afresh: it builds the app from FF_* settings there (create_app with
    # no arguments) and configures its logging from log_config, which names the root logger too.
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        workers=settings.api_processes,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=log_config(args.log_level),
    )


def log_config(level: str) -> dict:
    """uvicorn's logging configuration, with the root logger (FF Lab's own loggers) as `logging.basicConfig`
    would set it up with LOG_FORMAT."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["fflab"] = {"format": LOG_FORMAT}
    config["handlers"]["fflab"] = {
        "formatter": "fflab",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"handlers": ["fflab"], "level": level.upper()}
    return config


if __name__ == "__main__":
    main()
