"""Fixtures of the run store's tests: the stores on the session's real redis-server, and a run."""

from __future__ import annotations

import pytest

from ffcore.config import RunConfig
from tests.support.store import TestStore


@pytest.fixture
def store(redis_url) -> TestStore:
    return TestStore.from_url(redis_url, metrics_maxlen=1000)


@pytest.fixture
def run_id(store) -> str:
    return store.runs.create_run(RunConfig.from_preset("quick"), preset="quick").id
