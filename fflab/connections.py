"""How the service's Redis clients connect: explicit socket timeouts, TCP keepalive and health checks.

A client without a socket timeout waits forever on a connection that died without closing (a
failover, a NAT or firewall dropping it, a stopped server); with FF_REDIS_SOCKET_TIMEOUT_S it raises
redis.TimeoutError instead, which the worker rides out (worker.redis_waits). Keepalive probes find a
dead idle connection within about two minutes rather than the kernel's default two hours, and a
connection idle for longer than the health-check interval is pinged before it is used.

    client = redis_client(settings)                       # the worker's own client
    url = url_with_timeouts(settings)                     # for libraries that take a URL (Optuna)
    options = client_options(settings)                    # what both are made of (Celery's broker too)
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from fflab.settings import Settings

CONNECT_TIMEOUT_S = 5.0  # a server that does not accept a connection within this is not there
HEALTH_CHECK_INTERVAL_S = 30  # a pooled connection idle this long is pinged before use
# Probe an idle connection after 60 s, then every 10 s; 3 unanswered probes close it.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 60, 10, 3


def keepalive_options() -> dict[int, int]:
    """TCP keepalive timings, where the platform names them (Linux does; elsewhere: its defaults)."""
    wanted = {
        "TCP_KEEPIDLE": KEEPALIVE_IDLE_S,
        "TCP_KEEPINTVL": KEEPALIVE_INTERVAL_S,
        "TCP_KEEPCNT": KEEPALIVE_PROBES,
    }
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def client_options(settings: Settings) -> dict[str, Any]:
    """The connection options every Redis client of the service gets (redis-py's and kombu's names)."""
    timeout = settings.redis_socket_timeout_s
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": min(CONNECT_TIMEOUT_S, timeout),
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(),
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }


def redis_client(settings: Settings) -> redis.Redis:
    """A client of `settings.redis_url` with the service's timeouts.

    It retries a failed command once, at once (a pooled connection that Redis closed when it
    restarted); longer trouble reaches the caller, which decides how long to wait and says so in its
    log (worker.redis_waits), instead of redis-py's default of three silent retries with backoff.
    """
    once = Retry(ExponentialBackoff(cap=0.5, base=0.1), retries=1)
    return redis.Redis.from_url(settings.redis_url, retry=once, **client_options(settings))


def url_with_timeouts(settings: Settings) -> str:
    """`settings.redis_url` with the timeouts as query parameters, for a library that makes its own
    client from a URL (Optuna's journal backend); options already in the URL are kept."""
    options = client_options(settings)
    parts = urlsplit(settings.redis_url)
    query = dict(parse_qsl(parts.query))
    for name in ("socket_timeout", "socket_connect_timeout", "health_check_interval"):
        query.setdefault(name, str(options[name]))
    query.setdefault("socket_keepalive", "true")
    return urlunsplit(parts._replace(query=urlencode(query)))
