"""Local TCP ports for the servers tests start: a free one to listen on, and whether one is listened on.

A port the kernel picks (binding port 0) comes from its ephemeral range, the range every outgoing
connection's local port also comes from: between the pick and the server's bind, a test's HTTP or
Redis client may take it ("address already in use", seen in CI). So free_port picks below that range,
where only listeners go, at random (two test processes rarely pick alike), never the same port twice
in one process, and only a port that is free on every address when picked.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST_PORT = 20000  # above the well-known and most registered services' ports
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL_START = 32768  # Linux's default, where the range cannot be read

_handed_out: set[int] = set()
_random = random.SystemRandom()


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (its default where it cannot be read)."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return LINUX_EPHEMERAL_START


def free_port() -> int:
    """A port no one listens on, below the ephemeral range, not handed out before in this process."""
    top = ephemeral_start()
    if top - LOWEST_PORT < 1000:  # an unusual range leaves too few ports below it: the kernel's pick
        return _kernel_pick()
    for _ in range(200):
        port = _random.randrange(LOWEST_PORT, top)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    return _kernel_pick()


def _bindable(port: int) -> bool:
    try:
        with socket.socket() as sock:
            sock.bind(("0.0.0.0", port))  # free on every address, so on 127.0.0.1 as well
    except OSError:
        return False
    return True


def _kernel_pick() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
