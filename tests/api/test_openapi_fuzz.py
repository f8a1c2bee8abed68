"""Fuzz every operation of the OpenAPI document against the real server: no input may cause a 5xx.

Schemathesis generates valid and invalid requests from the schema (bounded examples per operation).
Half of the generated run ids are replaced by a real finished run with a model, so that the checks
reach past the 404 into metrics, events, prediction and model download.

The server is fuzzed three times: open (no keys); with FF_API_KEY and requests that carry no key; with
FF_API_KEY and FF_READ_KEY and requests that carry the read-only key, so that reads go deep and changes
are refused. With a key guarding changes, DELETE and every other change are aimed at the known run and
experiment too: they must survive.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from ffcore.experiment import ExperimentSpec
from fflab.store.keys import TrialEntry
from tests.support.api import RunningApi, start_api
from tests.support.fakes import tiny_model_bytes
from tests.support.store import TestStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MAX_EXAMPLES = 25
KEY = "fuzz-api-key"
READ_KEY = "fuzz-read-key"


@dataclass
class Access:
    """How the fuzzed server is keyed, and the headers every fuzzed request carries."""

    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def changes_guarded(self) -> bool:
        """The requests never carry the key that changes things: aim them at what must survive."""
        return "FF_API_KEY" in self.env


ACCESS = {
    "open": Access(),
    "keyless": Access(env={"FF_API_KEY": KEY}),
    "read_key": Access(env={"FF_API_KEY": KEY, "FF_READ_KEY": READ_KEY}, headers={"X-API-Key": READ_KEY}),
}


@dataclass
class FuzzedApi:
    api: RunningApi
    access: Access

    @property
    def url(self) -> str:
        return self.api.url


@pytest.fixture(scope="module", params=list(ACCESS))
def fuzzed_api(request, redis_server) -> Iterator[FuzzedApi]:
    url = f"redis://{redis_server.host}:{redis_server.port}/0"
    access = ACCESS[request.param]
    with start_api(url, env={"FF_MAX_BODY_BYTES": "100000"} | access.env) as api:
        yield FuzzedApi(api, access)


@pytest.fixture(scope="module")
def known_run(fuzzed_api: FuzzedApi, redis_server) -> str:
    store = TestStore.from_url(f"redis://{redis_server.host}:{redis_server.port}/0")
    store.redis.flushdb()
    from ffcore.config import RunConfig

    run_id = store.create_run(RunConfig.from_preset("quick"), preset="quick").id
    store.append_metrics(run_id, [{"kind": "train", "step": 10, "epoch": 0.1, "layers": []}])
    store.save_model(run_id, tiny_model_bytes())
    store.set_status(run_id, "succeeded")
    return run_id


@pytest.fixture(scope="module")
def known_experiment(known_run: str, redis_server) -> str:
    """An ended experiment whose one run is the known run."""
    store = TestStore.from_url(f"redis://{redis_server.host}:{redis_server.port}/0")
    experiment = store.experiments.create(
        ExperimentSpec.model_validate({"params": {"lr": {"values": [1e-3]}}})
    )
    store.experiments.save_trial(
        experiment.id, TrialEntry(number=0, setting=0, params={"lr": 1e-3}, told=True)
    )
    store.experiments.save_run_id(experiment.id, 0, 0, known_run)
    store.experiments.finish(experiment.id, "succeeded")
    return experiment.id


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_request_causes_a_server_error(
    fuzzed_api: FuzzedApi, known_run: str, known_experiment: str, mode: GenerationMode
) -> None:
    access = fuzzed_api.access
    # Hypothesis drives each operation's strategy directly (schemathesis' pytest plugin predates pytest 9).
    schema = schemathesis.openapi.from_url(f"{fuzzed_api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    tested_without_inputs: list[str] = []
    aimed_deletes: list[str] = []  # DELETEs sent to the known run or experiment

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            # Open, a DELETE of the known run would succeed. With changes guarded every change is aimed at
            # the known run and experiment (it must be refused), and half of the reads.
            changes = case.method != "GET"
            for name, known in (("run_id", known_run), ("experiment_id", known_experiment)):
                generated = (case.path_parameters or {}).get(name)
                if generated is None or (case.method == "DELETE" and not access.changes_guarded):
                    continue
                if (access.changes_guarded and changes) or hash(generated) % 2 == 0:
                    case.path_parameters[name] = known
                    if case.method == "DELETE":
                        aimed_deletes.append(case.operation.label)
            if access.headers:  # instead of the generated X-API-Key, whatever its case
                kept = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
                case.headers = kept | access.headers
            case.call_and_validate(
                base_url=fuzzed_api.url,
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
                timeout=30,
            )

        try:
            check()
        except Unsatisfiable:
            # Only a free-form path parameter (or no input at all, /healthz): no invalid request exists.
            assert mode is GenerationMode.NEGATIVE, operation.label
            tested_without_inputs.append(operation.label)
    with_constrained_inputs = {
        "POST /api/v1/runs", "GET /api/v1/runs", "GET /api/v1/runs/{run_id}/metrics",
        "GET /api/v1/runs/{run_id}/events", "POST /api/v1/runs/{run_id}/predict",
    }  # fmt: skip
    assert not with_constrained_inputs & set(tested_without_inputs)
    if access.changes_guarded:  # every DELETE that was sent at all was aimed at the known ones at least once
        deletes = {"DELETE /api/v1/runs/{run_id}", "DELETE /api/v1/experiments/{experiment_id}"}
        assert deletes - set(tested_without_inputs) <= set(aimed_deletes)
        assert mode is GenerationMode.NEGATIVE or deletes <= set(aimed_deletes)


def test_the_known_run_survived_the_fuzzing(
    fuzzed_api: FuzzedApi, known_run: str, known_experiment: str
) -> None:
    # Invalid requests, and with a key guarding changes every keyless change, must not have damaged what
    # was stored.
    base_url, headers = fuzzed_api.api.base_url, fuzzed_api.access.headers
    run = httpx.get(f"{base_url}/runs/{known_run}", headers=headers, timeout=10).json()
    assert run["status"] == "succeeded" and run["has_model"] is True
    if fuzzed_api.access.changes_guarded:  # no keyless PATCH got through either
        assert (run["tags"], run["note"]) == ([], None)
    experiment = httpx.get(f"{base_url}/experiments/{known_experiment}", headers=headers, timeout=10).json()
    assert (
        experiment["status"] == "succeeded"
        and experiment["table"]["settings"][0]["runs"][0]["run_id"] == known_run
    )
