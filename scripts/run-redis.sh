#!/usr/bin/env bash
# The `redis` process of the Procfile: serve FF_REDIS_URL with a local redis-server, unless a Redis
# server already answers there (a system service, a shared team server), in which case use that one
# and just stay alive, because honcho stops the whole stack as soon as one process exits.
#
# The local server keeps its data append-only in FF_REDIS_DATA_DIR (default:
# ~/.local/state/fflab/redis-PORT), never evicts keys, and on Ctrl-C stays up until the worker and
# the API have let go of it (see scripts/local_redis.py).
set -euo pipefail

here="$(dirname "$0")"
if ! command -v redis-server >/dev/null && ! python "$here/local_redis.py" answers; then
    echo "run-redis: no Redis server answers at FF_REDIS_URL and redis-server is not installed;" \
        "install it (make system-deps, or apt-get install redis-server) or point FF_REDIS_URL at" \
        "a running server" >&2
    exit 1
fi
exec python "$here/local_redis.py" serve
