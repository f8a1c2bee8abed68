#!/usr/bin/env bash
# The `redis` process of the Procfile: serve FF_REDIS_URL with a local redis-server, unless a Redis
# server already answers there (a system service, a shared team server), in which case use that one
# and just stay alive, because honcho stops the whole stack as soon as one process exits.
#
# The local server keeps its data append-only in FF_REDIS_DATA_DIR (default:
# ~/.local/state/fflab/redis-PORT) and never evicts keys (runs and models must not vanish).
set -euo pipefail

probe="$(dirname "$0")/redis_probe.py"

if python "$probe" answers; then
    echo "run-redis: a Redis server already answers at FF_REDIS_URL; using it" >&2
    exec sleep infinity
fi

if ! command -v redis-server >/dev/null; then
    echo "run-redis: no Redis server answers at FF_REDIS_URL and redis-server is not installed;" \
        "install it (make system-deps, or apt-get install redis-server) or point FF_REDIS_URL at" \
        "a running server" >&2
    exit 1
fi

server_args="$(python "$probe" server-args)"
eval "set -- $server_args"
exec redis-server "$@" --appendonly yes --save "" --maxmemory-policy noeviction
