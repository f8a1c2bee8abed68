"""Every Redis client of the service gets the socket timeout and keepalive (fflab.connections): the
worker's own, the Celery broker's, and Optuna's journal backend, made from a URL."""

from __future__ import annotations

import redis

from fflab.connections import client_options, redis_client, url_with_timeouts
from fflab.queue import make_celery
from fflab.settings import Settings
from fflab.study import storage

EXPECTED = {"socket_timeout": 7.0, "socket_connect_timeout": 5.0, "health_check_interval": 30}


def connection_options(client: redis.Redis) -> dict:
    kwargs = client.connection_pool.connection_kwargs
    return {name: kwargs.get(name) for name in (*EXPECTED, "socket_keepalive")}


def test_the_workers_client_the_broker_and_optuna_time_out_and_keep_alive(redis_url):
    settings = Settings(redis_url=redis_url, redis_socket_timeout_s=7)
    expected = EXPECTED | {"socket_keepalive": True}

    client = redis_client(settings)
    assert client.ping() and connection_options(client) == expected
    assert client.connection_pool.connection_kwargs["socket_keepalive_options"]  # probes within minutes

    with make_celery(settings).connection_for_write() as connection:
        broker = connection.default_channel.client
        assert broker.ping() and connection_options(broker) == expected

    journal = storage(url_with_timeouts(settings), "e1")._backend._backend._redis  # Optuna's own client
    assert journal.ping() and connection_options(journal) == expected


def test_a_short_socket_timeout_shortens_the_connect_timeout_too(redis_url):
    options = client_options(Settings(redis_url=redis_url, redis_socket_timeout_s=1.5))
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (1.5, 1.5)


def test_options_already_in_the_url_are_kept(redis_url):
    settings = Settings(redis_url=f"{redis_url}?socket_timeout=2&max_connections=9", redis_socket_timeout_s=7)
    client = redis.Redis.from_url(url_with_timeouts(settings))
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"], kwargs["socket_keepalive"]) == (
        2.0,
        5.0,
        True,
    )
    assert client.connection_pool.max_connections == 9 and client.ping()
