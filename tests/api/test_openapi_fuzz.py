"""Fuzz every operation of the OpenAPI document against the real server: no input may cause a 5xx.

Schemathesis generates valid and invalid requests from the schema (bounded examples per operation).
Half of the generated run ids are replaced by a real finished run with a model, so that the checks
reach past the 404 into metrics, events, prediction and model download.
"""

from __future__ import annotations

from collections.abc import Iterator

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


@pytest.fixture(scope="module")
def fuzzed_api(redis_server) -> Iterator[RunningApi]:
    url = f"redis://{redis_server.host}:{redis_server.port}/0"
    with start_api(url, env={"FF_MAX_BODY_BYTES": "100000"}) as api:
        yield api


@pytest.fixture(scope="module")
def known_run(fuzzed_api: RunningApi, redis_server) -> str:
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
    fuzzed_api: RunningApi, known_run: str, known_experiment: str, mode: GenerationMode
) -> None:
    # Hypothesis drives each operation's strategy directly (schemathesis' pytest plugin predates pytest 9).
    schema = schemathesis.openapi.from_url(f"{fuzzed_api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    tested_without_inputs: list[str] = []

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
            run_id = (case.path_parameters or {}).get("run_id")
            if run_id is not None and case.method != "DELETE" and hash(run_id) % 2 == 0:
                case.path_parameters["run_id"] = known_run
            experiment_id = (case.path_parameters or {}).get("experiment_id")
            if experiment_id is not None and case.method != "DELETE" and hash(experiment_id) % 2 == 0:
                case.path_parameters["experiment_id"] = known_experiment
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


def test_the_known_run_survived_the_fuzzing(
    fuzzed_api: RunningApi, known_run: str, known_experiment: str
) -> None:
    # Invalid requests must not have damaged what was stored.
    run = httpx.get(f"{fuzzed_api.base_url}/runs/{known_run}", timeout=10).json()
    assert run["status"] == "succeeded" and run["has_model"] is True
    experiment = httpx.get(f"{fuzzed_api.base_url}/experiments/{known_experiment}", timeout=10).json()
    assert (
        experiment["status"] == "succeeded"
        and experiment["table"]["settings"][0]["runs"][0]["run_id"] == known_run
    )
