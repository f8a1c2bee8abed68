"""`python -m api`: serve the REST API with uvicorn on FF_API_HOST:FF_API_PORT (default 127.0.0.1:8000)."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from api.main import create_app
from fflab.settings import Settings


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
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
