"""The test suite's own settings, read from FF_TEST_* variables: FF_TEST_DATA_DIR, where MNIST is."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from tests.support.paths import REPO


class TestSettings(BaseSettings):
    __test__ = False  # not a test class, whatever pytest thinks of the name

    model_config = SettingsConfigDict(env_prefix="FF_TEST_", extra="ignore")

    # A torchvision root with MNIST/raw (it may hold other data sets too); a relative path is taken
    # from the repository root, wherever the tests are started.
    data_dir: Path = Path("../shared/datasets")

    @property
    def data_root(self) -> Path:
        """`data_dir` as an absolute path."""
        return (REPO / self.data_dir).resolve()
