"""GET /run-options: the presets in full and RunConfig's schema with the server's limits, the ones
POST /runs enforces."""

from __future__ import annotations

import json

import jsonschema
import pytest
from fastapi.testclient import TestClient

from ffcore.config import PRESETS, RunConfig
from fflab.settings import Settings
from tests.support.api import API

MAX_LAYERS, MAX_UNITS, MAX_EPOCHS = 3, 300, 5


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """A server with small limits (FF_MAX_LAYERS, FF_MAX_UNITS, FF_MAX_EPOCHS); `client` is built on it."""
    return Settings(
        redis_url=redis_url, api_key=None, max_layers=MAX_LAYERS, max_units=MAX_UNITS, max_epochs=MAX_EPOCHS
    )


def run_options(client: TestClient) -> dict:
    response = client.get(f"{API}/run-options")
    assert response.status_code == 200, response.text
    return response.json()


def test_the_schema_carries_the_servers_limits(client: TestClient) -> None:
    fields = run_options(client)["config_schema"]["properties"]
    assert fields["hidden"]["maxItems"] == MAX_LAYERS
    assert fields["hidden"]["items"] == {"type": "integer", "minimum": 1, "maximum": MAX_UNITS}
    assert fields["epochs"]["maximum"] == MAX_EPOCHS
    assert fields["epochs"]["minimum"] == 1
    assert fields["data_dir"]["type"] == "null"  # the server picks the data's folder


def test_a_limit_looser_than_runconfigs_own_leaves_runconfigs(redis_url: str) -> None:
    from api.main import create_app

    loose = Settings(redis_url=redis_url, max_layers=100, max_epochs=1_000_000)
    with TestClient(create_app(loose)) as client:
        fields = run_options(client)["config_schema"]["properties"]
    own = RunConfig.model_json_schema()["properties"]
    assert fields["hidden"]["maxItems"] == own["hidden"]["maxItems"]
    assert fields["epochs"]["maximum"] == own["epochs"]["maximum"]


def test_presets_come_fully_expanded_with_the_default_preset(client: TestClient) -> None:
    options = run_options(client)
    assert list(options["presets"]) == list(PRESETS)
    for name, config in options["presets"].items():
        assert config == json.loads(RunConfig.from_preset(name).model_dump_json()), name
        assert RunConfig.model_validate(config) == RunConfig.from_preset(name)
    assert options["default_preset"] in PRESETS
    # The default is what POST /runs uses when the request names no preset.
    created = client.post(f"{API}/runs", json={"overrides": {"hidden": [10, 10], "epochs": 1}}).json()
    assert created["preset"] == options["default_preset"]


def test_a_config_the_schema_allows_is_accepted_and_its_bounds_are_the_ones_enforced(
    client: TestClient,
) -> None:
    schema = run_options(client)["config_schema"]
    fields = schema["properties"]
    widest = [fields["hidden"]["items"]["maximum"]] * fields["hidden"]["maxItems"]
    at_bounds = {"hidden": widest, "epochs": fields["epochs"]["maximum"]}
    jsonschema.validate(at_bounds, schema)
    assert client.post(f"{API}/runs", json={"config": at_bounds}).status_code == 201

    past_each_bound = {
        "layers": ({"hidden": [*widest, 10]}, f"at most {MAX_LAYERS} layers"),
        "units": ({"hidden": [MAX_UNITS + 1, 10]}, f"at most {MAX_UNITS} units per layer"),
        "epochs": ({"hidden": [10, 10], "epochs": MAX_EPOCHS + 1}, f"at most {MAX_EPOCHS} allowed"),
    }
    for bound, (config, message) in past_each_bound.items():
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(config, schema)
        response = client.post(f"{API}/runs", json={"config": config})
        assert response.status_code == 422, bound
        assert message in response.json()["detail"], (bound, response.json())


def test_the_route_is_documented(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][f"{API}/run-options"]["get"]
    assert operation["summary"] and operation["description"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RunOptionsOut"
    }
