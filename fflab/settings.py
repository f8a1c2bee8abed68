"""The service's settings: one pydantic-settings object, read from `FF_*` environment variables.

The API and the worker both take their configuration from here; `Settings()` reads the
environment, tests build one with explicit values.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FF_", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Broker, run store and model store.")
    data_dir: str | None = Field(
        None,
        description="torchvision root with MNIST/raw; unset: download into the user cache directory.",
    )
    api_key: str | None = Field(
        None, description="When set, requests that change something need it in the X-API-Key header."
    )
    read_key: str | None = Field(
        None,
        description="When set (with FF_API_KEY), reads need a key too: X-API-Key equal to this read-only "
        "key or to FF_API_KEY. Unset: reads are open.",
    )

    # Product limits on what a submitted run may ask for.
    max_layers: int = Field(8, ge=1, description="Most hidden layers a submitted run may have.")
    max_units: int = Field(4096, ge=1, description="Widest hidden layer a submitted run may have.")
    max_epochs: int = Field(1000, ge=1, description="Most epochs a submitted run may have.")
    max_state_mb: int = Field(
        400,
        ge=1,
        le=500,
        description="Largest training state (weights and optimizer buffers) a submitted run may need, in MB: "
        "a run checkpoints it to Redis as one value, and Redis takes at most 512 MB in one.",
    )
    max_queued: int = Field(
        1000, ge=1, description="Most runs that may wait in the queue; submitting more is answered 429."
    )
    max_trials: int = Field(
        200,
        ge=1,
        le=1000,
        description="Most settings a submitted experiment may try (grid size or max_trials).",
    )

    # Run store sizes and timings.
    metrics_maxlen: int = Field(
        100_000, ge=1000, description="Approximate cap on the metric records kept per run."
    )
    lease_ttl_s: float = Field(
        30.0, gt=0, description="A run whose worker sent no heartbeat for this long is taken up again."
    )
    heartbeat_interval_s: float = Field(5.0, gt=0, description="How often a worker renews its leases.")
    max_attempts: int = Field(
        3,
        ge=1,
        description="How many failed attempts a run may have (its worker lost: killed, out of memory, "
        "machine lost; or Redis unusable for FF_REDIS_WAIT_S, the run handed back); the one that reaches "
        "it ends the run failed with the reason instead of requeueing it.",
    )
    redis_wait_s: float = Field(
        300.0,
        gt=0,
        allow_inf_nan=False,
        description="How long a worker waits out Redis trouble (stalled, restarting, out of memory) on one "
        "step of a run before its attempt gives up and hands the run back to the queue.",
    )
    metrics_every_steps: int = Field(
        25, ge=1, description="Training steps between two metric records streamed to Redis."
    )
    checkpoint_interval_s: float = Field(
        10.0,
        ge=0,
        description="Least time between two checkpoints of a run (its training state and model, written "
        "to Redis at an epoch end; the first epoch end and the last always write one). A worker lost "
        "mid-run repeats at most about this much training (plus an epoch), and a running run's /predict "
        "answers with a model at most about this old. 0: every epoch end.",
    )

    # The worker (`python -m worker`; its --name, --device and --threads override these).
    worker_name: str | None = Field(
        None, description="Worker name, unique among live workers; unset: HOST-DEVICE-PID."
    )
    worker_device: str = Field(
        "auto",
        description="Where the worker trains: 'auto' (the first GPU, else the CPU), 'cpu', 'cuda', 'cuda:N'.",
    )
    git_commit: str | None = Field(
        None,
        description="The code's git commit, recorded in each run's provenance; unset: `git rev-parse HEAD` "
        "of the worker's checkout when it is one, else unknown.",
    )
    worker_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads PyTorch may use for training; unset: PyTorch's choice (all cores).",
    )

    # The local stack without Docker (`make up`, scripts/local_redis.py).
    redis_data_dir: str | None = Field(
        None,
        description="Where the local redis-server keeps its append-only files; unset: "
        "~/.local/state/fflab/redis-PORT.",
    )

    # HTTP
    api_host: str = Field("127.0.0.1", description="Address `python -m api` listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `python -m api` listens on.")
    api_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Server processes `python -m api` runs (uvicorn's workers, sharing its port). One "
        "process computes in one thread at a time (Python's GIL); more serve more predictions at once, on "
        "more cores, each with its own loaded models and an equal share of FF_MAX_STREAMS, "
        "FF_MAX_STREAMS_PER_CLIENT and FF_MAX_CONCURRENT_DECODES (at least one each).",
    )
    published_host: str | None = Field(
        None,
        description="The address clients reach the API on when it differs from FF_API_HOST: in "
        "docker-compose.yml, the host address its port is published on (default 127.0.0.1).",
    )
    insecure_open_without_key: bool = Field(
        False,
        description="Let `python -m api` be reachable beyond loopback without FF_API_KEY: anyone who reaches "
        "it can queue, delete and download runs. Only behind something else that guards it.",
    )
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Largest request body the API accepts.")
    max_streams: int = Field(
        200,
        ge=1,
        description="Most event streams (GET /runs/{id}/events) open at once; more are answered 503.",
    )
    max_streams_per_client: int = Field(
        10, ge=1, description="Most event streams one client address may hold open; more are answered 429."
    )
    max_image_pixels: int = Field(
        4_000_000,
        ge=784,
        description="Largest uploaded picture (width x height) /predict decodes; larger ones are "
        "refused 422.",
    )
    max_concurrent_decodes: int = Field(
        2, ge=1, description="Uploaded pictures decoded at once; the others wait their turn."
    )
    retention_days: float | None = Field(
        None,
        gt=0,
        description="When set, finished runs (and experiments) older than this many days are deleted "
        "with all their data by the workers' reaper. Unset: nothing expires.",
    )
    redis_socket_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long any Redis command may take before the client gives up (a passing stall is "
        "retried by the worker).",
    )
    model_cache_size: int = Field(8, ge=1, description="Trained models the API keeps loaded (per process).")

    def process_share(self, cap: int) -> int:
        """One API process's share of a server-wide cap: each process counts only the streams and the
        decodes it serves itself, so each applies an equal share (at least one) and together they keep
        the cap (unless it is smaller than FF_API_PROCESSES)."""
        return max(1, cap // self.api_processes)


@lru_cache
def get_settings() -> Settings:
    return Settings()
