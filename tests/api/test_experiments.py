"""The experiment routes on a real redis-server with a recording Celery app (no worker): what is
accepted, what is refused and how, and what cancel and delete do to the stored experiment and runs."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api import deps
from api.main import create_app
from ffcore.config import RunConfig
from fflab.limits import limit_problems
from fflab.queue import ADVANCE_TASK_NAME
from fflab.settings import Settings
from tests.support.fakes import RecordingCelery
from tests.support.store import TestStore

BASE = {"preset": "quick", "overrides": {"epochs": 2}}
LR = {"lr": {"values": [1e-3, 2e-3]}}


@pytest.fixture
def client(redis_url: str, celery: RecordingCelery):
    settings = Settings(redis_url=redis_url, api_key=None, max_trials=10, max_units=2000)
    app = create_app(settings)
    app.dependency_overrides[deps.get_celery] = lambda: celery
    with TestClient(app, base_url="http://testserver/api/v1") as test_client:
        yield test_client


def test_a_submitted_experiment_is_recorded_and_handed_to_the_workers(client, celery):
    answer = client.post("/experiments", json={"name": "lr", "base": BASE, "params": LR, "seeds": [0, 1]})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["name"], body["status"], body["search"], body["params"]) == ("lr", "running", "grid", ["lr"])
    assert body["progress"]["settings_planned"] == 2 and body["table"]["settings"] == []
    assert celery.sent == [(ADVANCE_TASK_NAME, [body["id"]], None)]
    assert client.get(f"/experiments/{body['id']}").json()["spec"] == body["spec"]
    assert [e["id"] for e in client.get("/experiments").json()["experiments"]] == [body["id"]]
    assert client.get("/experiments", params={"status": "succeeded"}).json()["total"] == 0
    assert client.get(f"/experiments/{body['id']}/table.csv").text.startswith("trial,status,lr,runs,")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"base": BASE, "params": {}}, "params: name at least one setting to vary"),
        (
            {"base": BASE, "params": {"lr": {"values": [1e-3 * i for i in range(1, 12)]}}},
            "params: the grid has 11 settings; at most 10 allowed (FF_MAX_TRIALS)",
        ),
        (
            {"base": BASE, "params": {"lr": {"low": 1e-4, "high": 1e-2}}, "search": "tpe", "max_trials": 11},
            "max_trials: at most 10 settings allowed, got 11 (FF_MAX_TRIALS)",
        ),
        (
            {"base": BASE, "params": {"learning_rate": {"values": [1]}}},
            "params: unknown setting 'learning_rate'",
        ),
        ({"base": BASE, "params": {"lr": {"values": [-1.0]}}}, "params.lr: {'lr': -1.0} is not allowed"),
        (
            {"base": BASE, "params": {"hidden": {"values": [[3000, 3000]]}}},
            "at most 2000 units per layer allowed, got 3000",
        ),
        (
            {
                "base": BASE,
                "params": {"optimizer": {"low": 0, "high": 1}},
                "search": "random",
                "max_trials": 2,
            },
            "params.optimizer: a range needs a numeric setting",
        ),
        ({"base": BASE, "params": LR, "seeds": [1, 1]}, "seeds: each seed may appear once, got [1, 1]"),
        ({"base": BASE, "params": LR, "seeds": []}, "seeds: List should have at least 1 item"),
        (
            {"base": {"preset": "quick", "overrides": {"data_dir": "/etc"}}, "params": LR},
            "base: data_dir: set by the server (FF_DATA_DIR); leave it out",
        ),
        (
            {"base": {"preset": "quick", "overrides": {"validation": "none"}}, "params": LR},
            "base: validation='none' leaves no validation set",
        ),
        (
            {
                "base": BASE,
                "params": {"epochs": {"values": [1, 2]}},
                "search": "random",
                "max_trials": 2,
                "start_with": [{"epochs": 1.0}],
            },
            "start_with[0].epochs: 1.0 is not one of the listed values [1, 2]",
        ),
        (
            {
                "base": BASE,
                "params": {
                    n: {"values": [1e-3 * i for i in range(1, 60)]}
                    for n in ("lr", "head_lr", "momentum", "weight_decay", "head_weight_decay")
                },
            },
            "params: the grid has 714924299 settings; at most 1000 allowed",
        ),
        (
            {"base": BASE, "params": LR, "max_parallel": 0},
            "max_parallel: Input should be greater than or equal to 1",
        ),
        ({"base": BASE, "params": LR, "name": "x" * 81}, "name: String should have at most 80 characters"),
        # Values that differ only in how they are written are the same setting.
        (
            {"base": BASE, "params": {"epochs": {"values": [1, "1"]}}},
            "params.epochs: 1 and '1' are the same epochs",
        ),
        (
            {"base": BASE, "params": {"epochs": {"values": [1, True]}}},
            "params.epochs: 1 and True are the same",
        ),
        (
            {"base": BASE, "params": {"hidden": {"values": [[10, 10], [10.0, 10]]}}},
            "params.hidden: [10, 10] and [10.0, 10] are the same hidden ([10, 10])",
        ),
        (
            {
                "base": BASE,
                "params": {"epochs": {"low": 1, "high": 3}},
                "search": "random",
                "max_trials": 2,
                "start_with": [{"epochs": True}],
            },
            "start_with[0].epochs: True is outside 1.0..3.0",
        ),
        # A nested check's message names its place once.
        ({"base": {"preset": "nope"}, "params": LR}, "base.preset: unknown preset 'nope'"),
    ],
)
def test_a_bad_spec_gets_a_422_that_says_what_is_wrong(client, celery, spec, message):
    answer = client.post("/experiments", json=spec)
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["detail"]
    assert "base: base" not in answer.json()["detail"]  # a nested check's message names its place once
    assert celery.sent == [] and client.get("/experiments").json()["total"] == 0


@pytest.mark.parametrize("path", ["/experiments/nope", "/experiments/0123456789ab", "/experiments/x:trials"])
def test_unknown_and_malformed_ids_are_not_found(client, path):
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json()["detail"] == f"experiment {path.removeprefix('/experiments/')!r} not found"


def test_cancel_stops_its_runs_and_delete_waits_for_them(client, celery, redis_url):
    store = TestStore.from_url(redis_url)
    experiment_id = client.post("/experiments", json={"base": BASE, "params": LR}).json()["id"]
    assert client.delete(f"/experiments/{experiment_id}").status_code == 409  # running
    # Two runs as the coordinator makes them: one queued, one training.
    queued = store.runs.create_run(store_config(), run_id="aaaaaaaaaaaa", experiment=experiment_id, setting=0)
    running = store.runs.create_run(
        store_config(), run_id="bbbbbbbbbbbb", experiment=experiment_id, setting=1
    )
    store.experiments.save_run_id(experiment_id, 0, 0, queued.id)
    store.experiments.save_run_id(experiment_id, 1, 0, running.id)
    store.set_status(running.id, "running")

    cancelled = client.post(f"/experiments/{experiment_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert store.get_run(queued.id).status == "cancelled" and celery.revoked == [queued.id]
    assert store.redis.exists(f"ff:run:{running.id}:cancel")
    answer = client.delete(f"/experiments/{experiment_id}")
    assert answer.status_code == 409 and "still stopping (bbbbbbbbbbbb)" in answer.json()["detail"]

    store.set_status(running.id, "cancelled")
    with store.experiments.lock(experiment_id):  # a coordinator's pass that began before the cancel
        answer = client.delete(f"/experiments/{experiment_id}")
        assert answer.status_code == 409 and "is being advanced" in answer.json()["detail"]
    assert client.delete(f"/experiments/{experiment_id}").status_code == 204
    assert store.get_run(queued.id) is None and store.get_run(running.id) is None
    assert client.get(f"/experiments/{experiment_id}").status_code == 404
    assert client.post(f"/experiments/{experiment_id}/cancel").status_code == 404


def store_config() -> RunConfig:
    return RunConfig.from_preset("quick", epochs=2)


def test_cancel_and_delete_also_reach_a_run_the_coordinator_made_but_never_recorded(client, redis_url):
    # The coordinator sent this run's task and died before recording it in the experiment.
    store = TestStore.from_url(redis_url)
    experiment_id = client.post("/experiments", json={"base": BASE, "params": LR}).json()["id"]
    unrecorded = store.runs.create_run(
        store_config(), run_id="cccccccccccc", experiment=experiment_id, setting=0
    )
    client.post(f"/experiments/{experiment_id}/cancel")
    assert store.get_run(unrecorded.id).status == "cancelled"
    assert client.delete(f"/experiments/{experiment_id}").status_code == 204
    assert store.get_run(unrecorded.id) is None


def test_an_infinite_range_gets_a_422_not_a_500(client):
    body = '{"search": "random", "max_trials": 2, "params": {"epochs": {"low": 1, "high": 1e400}}}'
    answer = client.post("/experiments", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["detail"] == "params.epochs.high: Input should be a finite number"


def test_a_full_queue_refuses_a_new_experiment_with_429(redis_url: str, celery: RecordingCelery):
    app = create_app(Settings(redis_url=redis_url, max_queued=1))
    app.dependency_overrides[deps.get_celery] = lambda: celery
    with TestClient(app) as client:
        queued = client.post("/api/v1/runs", json={"preset": "quick"}).json()["id"]
        grid = {"base": BASE, "params": LR}
        refused = client.post("/api/v1/experiments", json=grid)
        assert refused.status_code == 429 and "FF_MAX_QUEUED" in refused.json()["detail"]
        assert client.get("/api/v1/experiments").json()["total"] == 0
        client.post(f"/api/v1/runs/{queued}/cancel")
        assert client.post("/api/v1/experiments", json=grid).status_code == 201


def test_a_random_search_is_refused_when_values_it_may_draw_together_are_over_a_limit(client, celery):
    """Each value alone fits (1000 units with Adam, 2000 units with SGD), but a random search may draw
    2000 units with Adam, whose training state the server could never checkpoint."""
    params = {"hidden": {"values": [[1000, 1000], [2000, 2000]]}, "optimizer": {"values": ["sgd", "adam"]}}
    base = {"preset": "quick", "overrides": {"epochs": 2, "optimizer": "sgd"}}
    spec = {"base": base, "params": params, "search": "random", "max_trials": 4}
    settings = Settings(redis_url="redis://unused", max_units=2000, max_state_mb=50)
    alone = [{"hidden": [2000, 2000], "optimizer": "sgd"}, {"hidden": [1000, 1000], "optimizer": "adam"}]
    configs = [RunConfig.from_preset("quick", epochs=2, **setting) for setting in alone]
    assert [limit_problems(config, settings) for config in configs] == [[], []]

    client.app.dependency_overrides[deps.get_settings] = lambda: settings
    answer = client.post("/experiments", json=spec)

    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert (
        "params: {'hidden': [2000, 2000], 'optimizer': 'adam'}: hidden: this network's training state"
        in detail
    )
    assert "'sgd'" not in detail and "[1000, 1000]" not in detail  # only the combination over the limit
    assert celery.sent == [] and client.get("/experiments").json()["total"] == 0


def test_a_refused_base_is_said_once(client):
    spec = {"base": {"preset": "quick", "overrides": {"data_dir": "/etc"}}, "params": LR}
    detail = client.post("/experiments", json=spec).json()["detail"]
    assert detail.count("data_dir") == 1, detail
