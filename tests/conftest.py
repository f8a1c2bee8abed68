"""Fixtures every test package shares: a real redis-server on a free port and the MNIST folder."""

from __future__ import annotations

import pytest
from pytest_redis import factories

from tests.support.settings import TestSettings

# pytest-redis starts its own redis-server on a free port, once per session.
redis_server = factories.redis_proc(port=None)


@pytest.fixture
def redis_url(redis_server) -> str:
    """A URL of an empty database on the session's real redis-server."""
    import redis

    url = f"redis://{redis_server.host}:{redis_server.port}/0"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> str:
    """A torchvision root holding MNIST/raw and nothing else.

    MNIST comes from FF_TEST_DATA_DIR (TestSettings.data_dir), else ../shared/datasets. That folder may
    hold other data sets too (Fashion-MNIST); the tests see MNIST alone, so that a run on a missing
    data set fails the same way wherever they run.
    """
    source = TestSettings().data_root
    if not (source / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found under {source}; set FF_TEST_DATA_DIR to a torchvision root")
    root = tmp_path_factory.mktemp("datasets")
    (root / "MNIST").symlink_to((source / "MNIST").resolve(), target_is_directory=True)
    return str(root)
