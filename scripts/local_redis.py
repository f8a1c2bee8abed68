"""The Redis server of the local stack (`make up`): behind scripts/run-redis.sh and the Procfile.

    python scripts/local_redis.py serve         serve FF_REDIS_URL (see `serve` below)
    python scripts/local_redis.py wait [-t S]   wait until a server answers PING there (exit 1 after S s)
    python scripts/local_redis.py answers       exit 0 when a Redis server answers there, else 1

The URL comes from the same Settings the worker and the API read, so all three agree on it.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis

from fflab.settings import Settings

log = logging.getLogger("local_redis")

DEFAULT_PORT = 6379
# On Ctrl-C honcho sends SIGTERM to every process at once, and SIGKILL 5 s after the first one
# stopped. The worker needs Redis while it stops (it hands its run back to the queue), so Redis
# stays up until its clients are gone, but no longer than this.
DRAIN_TIMEOUT_S = 4.0


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
            log.error(
                "the Redis server at %s refuses the password in FF_REDIS_URL (or its absence)", redact(url)
            )
            return False
        if time.monotonic() >= deadline:
            log.error("no Redis server answered at %s within %.0f s", redact(url), timeout_s)
            return False
        time.sleep(0.2)


def server_args(url: str, data_dir: str | None = None) -> list[str]:
    """The redis-server options that make a local server answer at `url`.

    Only plain redis:// URLs can be served locally; the data directory is `data_dir`
    (FF_REDIS_DATA_DIR) or, when that is unset, a per-port folder under the user's state
    directory (so two local stacks never share files).
    """
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"can only start a local server for redis:// URLs, not {parts.scheme}://")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or DEFAULT_PORT
    # redis-server binds to addresses, not names.
    address = "127.0.0.1" if host == "localhost" else socket.gethostbyname(host)
    state_home = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    folder = Path(data_dir) if data_dir else state_home / "fflab" / f"redis-{port}"
    folder.mkdir(parents=True, exist_ok=True)
    args = ["--bind", address, "--port", str(port), "--dir", str(folder)]
    # Runs, metrics and models must survive a restart and never be evicted to make room.
    args += ["--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction"]
    if parts.password:
        args += ["--requirepass", unquote(parts.password)]
    return args


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when this launcher dies, even by SIGKILL (Linux)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def serve(url: str, data_dir: str | None = None) -> int:
    """Serve `url` with a local redis-server until SIGTERM/SIGINT, unless a server already answers
    there (a system service, a team server): then use it and just stay alive, because honcho stops
    the whole stack as soon as one of its processes exits."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    if probe(url) != "down":
        log.info("a Redis server already answers at %s; using it", redact(url))
        stop.wait()
        return 0

    # redis-server runs in its own process group so that honcho's SIGTERM to ours does not reach
    # it: we stop it ourselves once its clients are gone. It dies with us whatever happens.
    server = subprocess.Popen(
        ["redis-server", *server_args(url, data_dir)], start_new_session=True, preexec_fn=_die_with_parent
    )
    while not stop.wait(0.2):
        if server.poll() is not None:
            return server.returncode
    _drain(url, DRAIN_TIMEOUT_S)
    server.terminate()  # redis-server's SIGTERM: flush the append-only file and exit
    return server.wait()


def _drain(url: str, timeout_s: float) -> None:
    """Wait until no client but us is connected, at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        while time.monotonic() < deadline and client.info("clients")["connected_clients"] > 1:
            time.sleep(0.1)
    except redis.RedisError:
        pass
    finally:
        client.close()


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run a redis-server for FF_REDIS_URL, unless one answers there")
    wait_parser = commands.add_parser("wait", help="wait until the server at FF_REDIS_URL answers PING")
    wait_parser.add_argument("-t", "--timeout", type=float, default=60.0, help="seconds (default 60)")
    commands.add_parser("answers", help="exit 0 when a Redis server answers at FF_REDIS_URL, else 1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    settings = Settings()
    url = settings.redis_url
    if args.command == "answers":
        return 0 if probe(url) != "down" else 1
    if args.command == "wait":
        return 0 if wait(url, args.timeout) else 1
    try:
        return serve(url, settings.redis_data_dir)
    except (ValueError, OSError) as error:
        log.error("cannot serve FF_REDIS_URL=%s: %s", redact(url), error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
