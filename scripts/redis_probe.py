"""Probe the Redis server at FF_REDIS_URL: the helper behind scripts/run-redis.sh and the Procfile.

    python scripts/redis_probe.py answers       exit 0 when a Redis server answers at the URL
    python scripts/redis_probe.py wait [-t S]   wait until it answers PING (exit 1 after S seconds)
    python scripts/redis_probe.py server-args   redis-server options that serve the URL on this host

The URL comes from the same Settings the worker and the API read, so all three agree on it.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis

from fflab.settings import Settings

log = logging.getLogger("redis_probe")

DEFAULT_PORT = 6379


def probe(url: str) -> str:
    """'ok' (PING answered), 'auth' (a server answers but refuses our credentials),
    'loading' (a server answers but is still loading its data) or 'down' (nothing answers)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
        return "ok"
    # AuthenticationError subclasses ConnectionError: catch it first.
    except redis.AuthenticationError:
        return "auth"
    except redis.BusyLoadingError:
        return "loading"
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return "down"
    except redis.ResponseError:
        return "auth"  # e.g. an ACL that forbids PING: still a server that answers
    finally:
        client.close()


def wait(url: str, timeout_s: float) -> bool:
    """Wait until PING succeeds; False (with the reason logged) on bad credentials or timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = probe(url)
        if state == "ok":
            return True
        if state == "auth":
            log.error("the Redis server at %s refuses the password in FF_REDIS_URL", redact(url))
            return False
        if time.monotonic() >= deadline:
            log.error("no Redis server answered at %s within %.0f s", redact(url), timeout_s)
            return False
        time.sleep(0.2)


def server_args(url: str) -> list[str]:
    """The redis-server options that make a local server answer at `url`.

    Only plain redis:// URLs can be served locally; the data directory is FF_REDIS_DATA_DIR or
    a per-port folder under the user's state directory (so two local stacks never share files).
    """
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"can only start a local server for redis:// URLs, not {parts.scheme}://")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or DEFAULT_PORT
    # redis-server binds to addresses, not names.
    address = "127.0.0.1" if host == "localhost" else socket.gethostbyname(host)
    state_home = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    data_dir = Path(os.environ.get("FF_REDIS_DATA_DIR") or state_home / "fflab" / f"redis-{port}")
    data_dir.mkdir(parents=True, exist_ok=True)
    args = ["--bind", address, "--port", str(port), "--dir", str(data_dir)]
    if parts.password:
        args += ["--requirepass", unquote(parts.password)]
    return args


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("answers", help="exit 0 when a Redis server answers at FF_REDIS_URL, else 1")
    wait_parser = commands.add_parser("wait", help="wait until the server at FF_REDIS_URL answers PING")
    wait_parser.add_argument("-t", "--timeout", type=float, default=60.0, help="seconds (default 60)")
    commands.add_parser("server-args", help="print shell-quoted redis-server options serving FF_REDIS_URL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    url = Settings().redis_url
    if args.command == "answers":
        return 0 if probe(url) != "down" else 1
    if args.command == "wait":
        return 0 if wait(url, args.timeout) else 1
    try:
        sys.stdout.write(shlex.join(server_args(url)) + "\n")
    except (ValueError, OSError) as error:
        log.error("FF_REDIS_URL=%s: %s", redact(url), error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
