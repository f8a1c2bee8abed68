"""POST/GET/DELETE /runs and cancel, with the real redis-server (the broker is recorded, not consumed)."""

from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient

from api import deps
from api.main import create_app
from fflab.queue import TRAIN_TASK_NAME
from fflab.settings import Settings
from tests.support.api import API
from tests.support.fakes import RecordingCelery
from tests.support.store import TestStore


def test_a_preset_with_overrides_is_queued_and_sent_to_the_worker(
    client: TestClient, celery: RecordingCelery, store: TestStore
) -> None:
    response = client.post(f"{API}/runs", json={"preset": "quick", "overrides": {"epochs": 3, "seed": 7}})

    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "queued" and run["preset"] == "quick"
    assert run["config"]["epochs"] == 3 and run["config"]["hidden"] == [500, 500]
    assert celery.sent == [(TRAIN_TASK_NAME, [run["id"]], run["id"])]
    stored = store.get_run(run["id"])
    assert stored is not None and stored.config.seed == 7
    assert client.get(f"{API}/runs/{run['id']}").json() == run


def test_a_full_configuration_is_accepted(client: TestClient) -> None:
    response = client.post(f"{API}/runs", json={"config": {"hidden": [64, 32], "epochs": 1}})
    assert response.status_code == 201
    assert response.json()["preset"] is None
    assert response.json()["config"]["hidden"] == [64, 32]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"preset": "quick", "overrides": {"hidden": [100] * 9}}, "hidden: at most 8 layers allowed, got 9"),
        ({"preset": "quick", "overrides": {"hidden": [5000, 10]}}, "hidden: at most 4096 units per layer"),
        ({"config": {"epochs": 1001}}, "epochs: at most 1000 allowed, got 1001"),
        (  # 8 x 4096 is within the layer limits, but its state could never be checkpointed
            {"preset": "reference", "overrides": {"hidden": [4096] * 8}},
            "hidden: this network's training state (weights and sgd buffers) would be 968 MB, more than the "
            "400 MB a run may checkpoint (FF_MAX_STATE_MB)",
        ),
        ({"preset": "quick", "overrides": {"lr": "fast"}}, "lr: Input should be a valid number"),
        ({"preset": "quick", "overrides": {"lr": -1}}, "lr: Input should be greater than 0"),
        (
            {"preset": "quick", "overrides": {"dropout": 0.5}},
            "overrides: 'dropout' is not a run setting; the settings: dataset, ",
        ),
        # Keys that are names of from_preset's own arguments are settings no more than any other key.
        ({"preset": "quick", "overrides": {"preset": 1}}, "overrides: 'preset' is not a run setting"),
        ({"preset": "quick", "overrides": {"cls": 1, "x": 2}}, "overrides: 'cls', 'x' are not run settings"),
        (
            {"preset": "quick", "overrides": {"threshold": 3.5e38}},
            "threshold: Input should be less than or equal to 1000000",
        ),
        ({"preset": "nope"}, "preset: unknown preset 'nope'; choose one of reference, paper, quick"),
        ({"preset": ""}, "preset: unknown preset ''; choose one of reference, paper, quick"),
        (
            {"preset": "quick", "config": {}},
            "body: give either `config` or `preset` with `overrides`, not both",
        ),
        ({"config": {"epochs": 1, "scan_layers": [5]}}, "scan_layers: layers [5] do not exist"),
        ({"config": {"data_dir": "/etc"}}, "data_dir: set by the server"),
        ({"config": {"lr": "NaN"}}, "config.lr"),
        ({"preset": "quick", "overrides": []}, "overrides: Input should be a valid dictionary"),
    ],
)
def test_invalid_runs_get_422_saying_what_is_wrong(
    client: TestClient, celery: RecordingCelery, body: dict, message: str
) -> None:
    response = client.post(f"{API}/runs", json=body)

    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert celery.sent == []
    assert client.get(f"{API}/runs").json()["total"] == 0


def test_malformed_json_gets_a_readable_422(client: TestClient) -> None:
    response = client.post(
        f"{API}/runs", content=b'{"preset": "quick",', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body: not valid JSON")


@pytest.mark.parametrize(
    ("content", "content_type", "status", "message"),
    [
        # Another JSON value than an object, or a body that is not JSON at all.
        (b"[]", "application/json", 422, "body: send a JSON object, with Content-Type: application/json"),
        (b"null", "application/json", 422, "body: send a JSON object, with Content-Type: application/json"),
        (b'{"preset": "quick"}', "text/plain", 422, "body: send a JSON object, with Content-Type"),
        (b"preset=quick", "application/x-www-form-urlencoded", 422, "body: send a JSON object"),
        # JSON the parser gives up on for another reason than its syntax: said, not a bare 400.
        (b'{"overrides": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "application/json", 400,
         "body: not valid JSON (it is nested too deeply)"),
        (b'{"preset": "qu\xffick"}', "application/json", 400, "body: not valid JSON (it is not UTF-8 text)"),
        (b'{"seed": ' + b"9" * 5000 + b"}", "application/json", 400,
         "body: not valid JSON (Exceeds the limit (4300 digits) for integer string conversion"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_a_json_object_says_so(
    client: TestClient, celery: RecordingCelery, content: bytes, content_type: str, status: int, message: str
) -> None:
    response = client.post(f"{API}/runs", content=content, headers={"content-type": content_type})

    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(message)
    assert celery.sent == []


def test_runs_are_listed_newest_first_paginated_and_filtered(client: TestClient, store: TestStore) -> None:
    ids = [client.post(f"{API}/runs", json={"preset": "quick"}).json()["id"] for _ in range(5)]
    store.set_status(ids[1], "running")

    page = client.get(f"{API}/runs", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 5
    assert [r["id"] for r in page["runs"]] == [ids[3], ids[2]]

    running = client.get(f"{API}/runs", params={"status": "running"}).json()
    assert running["total"] == 1 and running["runs"][0]["id"] == ids[1]

    bad = client.get(f"{API}/runs", params={"status": "sleeping", "limit": 0})
    assert bad.status_code == 422
    assert "status: Input should be 'queued'" in bad.json()["detail"]
    assert "limit: Input should be greater than or equal to 1" in bad.json()["detail"]


def test_unknown_runs_are_404_everywhere(client: TestClient) -> None:
    for method, path in [
        ("GET", "/runs/nope"),
        ("POST", "/runs/nope/cancel"),
        ("DELETE", "/runs/nope"),
        ("GET", "/runs/nope/metrics"),
        ("GET", "/runs/nope/model"),
    ]:
        response = client.request(method, f"{API}{path}")
        assert response.status_code == 404, (method, path)
        assert response.json() == {"detail": "run 'nope' not found"}


@pytest.mark.parametrize("suffix", [":metrics", ":model", ":state", ":checkpoint", "%20", "A"])
def test_an_id_that_is_no_run_id_is_404_on_every_route_never_500(client: TestClient, suffix: str) -> None:
    # "{id}:metrics" once reached the run's metrics stream as if it were a run's hash: a 500.
    run_id = client.post(f"{API}/runs", json={"preset": "quick"}).json()["id"]
    store_key_id = run_id + suffix
    for method, path in [
        ("GET", "/runs/{}"),
        ("PATCH", "/runs/{}"),
        ("POST", "/runs/{}/rerun"),
        ("POST", "/runs/{}/cancel"),
        ("DELETE", "/runs/{}"),
        ("GET", "/runs/{}/metrics"),
        ("GET", "/runs/{}/metrics.csv"),
        ("GET", "/runs/{}/events"),
        ("POST", "/runs/{}/predict"),
        ("GET", "/runs/{}/model"),
    ]:
        response = client.request(
            method, f"{API}{path.format(store_key_id)}", json={} if method != "GET" else None
        )
        assert response.status_code == 404, (method, path, response.text)
        assert "not found" in response.json()["detail"]
    assert client.get(f"{API}/runs/{run_id}").json()["status"] == "queued"


def test_cancelling_a_queued_run_cancels_it_at_once_and_revokes_its_task(
    client: TestClient, celery: RecordingCelery, store: TestStore
) -> None:
    run_id = client.post(f"{API}/runs", json={"preset": "quick"}).json()["id"]

    response = client.post(f"{API}/runs/{run_id}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert celery.revoked == [run_id]
    # The worker that would pick up the task now finds a finished run and skips it.
    assert store.claim_run(run_id, "w1", ttl_s=30, device="cpu").outcome == "finished"
    statuses = [r["status"] for r in client.get(f"{API}/runs/{run_id}/metrics").json()["records"]]
    assert statuses == ["queued", "cancelled"]
    # Cancelling again changes nothing.
    assert client.post(f"{API}/runs/{run_id}/cancel").json()["status"] == "cancelled"


def test_cancelling_a_running_run_raises_the_flag_its_worker_polls(
    client: TestClient, celery: RecordingCelery, store: TestStore
) -> None:
    run_id = client.post(f"{API}/runs", json={"preset": "quick"}).json()["id"]
    assert store.claim_run(run_id, "w1", ttl_s=30, device="cpu").outcome == "claimed"

    response = client.post(f"{API}/runs/{run_id}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "running"  # until the worker has stopped it
    assert store.control_flags(run_id, "w1") == (True, True)
    assert celery.revoked == []


def test_a_finished_run_cannot_be_cancelled(client: TestClient, finished_run: str) -> None:
    response = client.post(f"{API}/runs/{finished_run}/cancel")
    assert response.status_code == 409
    assert "already succeeded" in response.json()["detail"]


def test_deleting_needs_a_finished_run_and_removes_everything(
    client: TestClient, store: TestStore, finished_run: str
) -> None:
    active = client.post(f"{API}/runs", json={"preset": "quick"}).json()["id"]
    refused = client.delete(f"{API}/runs/{active}")
    assert refused.status_code == 409
    assert "cancel it first" in refused.json()["detail"]
    assert store.get_run(active) is not None

    assert client.delete(f"{API}/runs/{finished_run}").status_code == 204

    assert store.get_run(finished_run) is None
    assert store.load_model(finished_run) is None
    assert store.count_metrics(finished_run) == 0
    assert client.get(f"{API}/runs/{finished_run}").status_code == 404
    assert [r["id"] for r in client.get(f"{API}/runs").json()["runs"]] == [active]


def test_an_oversized_body_gets_413_and_creates_nothing(client: TestClient, celery: RecordingCelery) -> None:
    body = {"preset": "quick", "overrides": {"hidden": [1] * 100_000}}  # ~300 kB, over the 200 kB limit

    response = client.post(f"{API}/runs", json=body)

    assert response.status_code == 413
    assert response.json()["detail"] == "request body too large: at most 200000 bytes are accepted"
    assert celery.sent == [] and client.get(f"{API}/runs").json()["total"] == 0


def test_tags_and_a_note_are_set_at_submit_and_filtered_on(client: TestClient, store: TestStore) -> None:
    tagged = client.post(
        f"{API}/runs", json={"preset": "quick", "tags": ["base", "lr:1e-3", "base"], "note": "first"}
    )
    assert tagged.status_code == 201
    assert (tagged.json()["tags"], tagged.json()["note"]) == (["base", "lr:1e-3"], "first")
    assert tagged.json()["provenance"] is None
    other = client.post(f"{API}/runs", json={"preset": "quick", "tags": ["base"]}).json()
    plain = client.post(f"{API}/runs", json={"preset": "quick"}).json()
    assert (plain["tags"], plain["note"]) == ([], None)

    page = client.get(f"{API}/runs", params={"tag": "base", "limit": 1}).json()
    assert page["total"] == 2 and [r["id"] for r in page["runs"]] == [other["id"]]
    page = client.get(f"{API}/runs", params={"tag": "base", "offset": 1}).json()
    assert page["total"] == 2 and [r["id"] for r in page["runs"]] == [tagged.json()["id"]]
    store.set_status(other["id"], "running")
    page = client.get(f"{API}/runs", params={"tag": "base", "status": "queued"}).json()
    assert page["total"] == 1 and page["runs"][0]["id"] == tagged.json()["id"]
    assert client.get(f"{API}/runs", params={"tag": "none"}).json()["total"] == 0
    assert client.get(f"{API}/runs").json()["total"] == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tags": ["has space"]}, "tags.0: String should match pattern"),
        ({"tags": [""]}, "tags.0: String should have at least 1 character"),
        ({"tags": ["x" * 41]}, "tags.0: String should have at most 40 characters"),
        ({"tags": [f"t{i}" for i in range(17)]}, "tags: List should have at most 16 items"),
        ({"tags": "one"}, "tags: Input should be a valid list"),
        ({"note": "n" * 2001}, "note: String should have at most 2000 characters"),
    ],
)
def test_bad_tags_or_notes_get_422_saying_what_is_wrong(
    client: TestClient, store: TestStore, finished_run: str, body: dict, message: str
) -> None:
    created = client.post(f"{API}/runs", json={"preset": "quick", **body})
    edited = client.patch(f"{API}/runs/{finished_run}", json=body)
    for response in (created, edited):
        assert response.status_code == 422
        assert message in response.json()["detail"]
    assert store.list_runs()[1] == 1 and store.get_run(finished_run).tags == []


def test_patch_edits_tags_and_note_of_a_run_in_any_status(
    client: TestClient, store: TestStore, finished_run: str
) -> None:
    url = f"{API}/runs/{finished_run}"
    edited = client.patch(url, json={"tags": ["keep", "keep", "best"], "note": "the one"})
    assert edited.status_code == 200
    assert (edited.json()["tags"], edited.json()["note"], edited.json()["status"]) == (
        ["keep", "best"],
        "the one",
        "succeeded",
    )
    assert client.patch(url, json={"note": "changed"}).json()["tags"] == ["keep", "best"]
    assert client.patch(url, json={"tags": []}).json()["note"] == "changed"
    assert client.patch(url, json={"note": None}).json()["note"] is None
    assert client.patch(url, json={"note": "x"}).json()["note"] == "x"
    assert client.patch(url, json={"note": ""}).json()["note"] is None
    assert client.get(url).json()["tags"] == []
    assert client.patch(url, json={"status": "queued"}).status_code == 422


def test_patch_on_a_missing_run_is_404_and_creates_nothing(client: TestClient, store: TestStore) -> None:
    for body in ({"tags": ["a"], "note": "b"}, {}):
        response = client.patch(f"{API}/runs/nope", json=body)
        assert response.status_code == 404 and response.json()["detail"] == "run 'nope' not found"
    assert not store.redis.exists("ff:run:nope") and store.list_runs()[1] == 0


def test_rerun_queues_a_new_run_with_the_same_config(
    client: TestClient, celery: RecordingCelery, store: TestStore
) -> None:
    body = {"preset": "quick", "overrides": {"epochs": 2, "seed": 9}, "tags": ["seed-group"], "note": "x"}
    original = client.post(f"{API}/runs", json=body).json()
    store.set_status(original["id"], "failed", error="boom")

    again = client.post(f"{API}/runs/{original['id']}/rerun")
    assert again.status_code == 201
    rerun = again.json()
    assert rerun["id"] != original["id"] and rerun["status"] == "queued"
    assert (rerun["config"], rerun["preset"]) == (original["config"], "quick")
    assert (rerun["tags"], rerun["note"]) == (["seed-group"], f"rerun of {original['id']}")
    assert celery.sent[-1] == (TRAIN_TASK_NAME, [rerun["id"]], rerun["id"])
    assert store.get_run(original["id"]).status == "failed"

    given = client.post(f"{API}/runs/{original['id']}/rerun", json={"tags": ["b"], "note": "mine"}).json()
    assert (given["tags"], given["note"], given["config"]) == (["b"], "mine", original["config"])
    assert client.post(f"{API}/runs/nope/rerun").status_code == 404
    assert client.post(f"{API}/runs/{original['id']}/rerun", json={"tags": ["a b"]}).status_code == 422
    assert store.list_runs()[1] == 3


def test_the_queue_quota_answers_429_and_stores_nothing(redis_url: str, celery: RecordingCelery) -> None:
    app = create_app(Settings(redis_url=redis_url, max_queued=2))
    app.dependency_overrides[deps.get_celery] = lambda: celery
    with TestClient(app) as client:
        first = client.post(f"{API}/runs", json={"preset": "quick"}).json()["id"]
        client.post(f"{API}/runs", json={"preset": "quick"})
        refused = client.post(f"{API}/runs", json={"preset": "quick"})
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
        assert refused.json()["detail"].startswith("2 runs are already queued, the most this server takes")
        assert client.post(f"{API}/runs/{first}/rerun").status_code == 429
        assert client.get(f"{API}/runs").json()["total"] == 2 and len(celery.sent) == 2
        client.post(f"{API}/runs/{first}/cancel")  # one place frees up
        assert client.post(f"{API}/runs", json={"preset": "quick"}).status_code == 201


def test_a_full_redis_is_answered_503_and_loses_nothing(client: TestClient, store: TestStore) -> None:
    kept = client.post(f"{API}/runs", json={"preset": "quick"}).json()["id"]
    used = int(store.redis.info("memory")["used_memory"])
    store.redis.config_set("maxmemory-policy", "noeviction")
    store.redis.config_set("maxmemory", used)  # every write from now on is refused
    try:
        full = client.post(f"{API}/runs", json={"preset": "quick", "note": "x" * 1000})
        edit = client.patch(f"{API}/runs/{kept}", json={"note": "y" * 1000})
    finally:
        store.redis.config_set("maxmemory", 0)
    for answer in (full, edit):
        assert answer.status_code == 503 and "Redis) is full" in answer.json()["detail"], answer.text
    assert client.get(f"{API}/runs").json()["total"] == 1 and store.get_run(kept).note is None


@pytest.mark.parametrize(
    ("failure", "detail"),
    [
        (redis.ConnectionError("Connection refused"), "the task queue is unreachable; nothing was stored"),
        (  # how Celery passes on Redis's refusal when the record fitted but the task message did not
            RuntimeError(
                "Command # 1 (LLEN fflab.train) of pipeline caused error: command not allowed "
                "when used memory > 'maxmemory'."
            ),
            "Redis) is full",
        ),
    ],
)
def test_a_task_that_cannot_be_sent_leaves_no_run_or_experiment_behind(
    client: TestClient, celery: RecordingCelery, monkeypatch: pytest.MonkeyPatch, failure, detail
) -> None:
    kept = client.post(f"{API}/runs", json={"preset": "quick"}).json()["id"]

    def refuse(*args, **kwargs):
        raise failure

    monkeypatch.setattr(celery, "send_task", refuse)
    spec = {"base": {"preset": "quick"}, "params": {"lr": {"values": [1e-3]}}, "seeds": [0]}
    for path, body in (("/runs", {"preset": "quick"}), (f"/runs/{kept}/rerun", None), ("/experiments", spec)):
        answer = client.post(f"{API}{path}", json=body)
        assert answer.status_code == 503 and detail in answer.json()["detail"], (path, answer.text)
        assert answer.headers["Retry-After"]
    assert [run["id"] for run in client.get(f"{API}/runs").json()["runs"]] == [kept]
    assert client.get(f"{API}/experiments").json()["total"] == 0


def test_a_run_asking_for_cuda_is_queued_for_gpu_workers(client: TestClient, celery: RecordingCelery) -> None:
    client.post(f"{API}/runs", json={"preset": "quick"})
    client.post(f"{API}/runs", json={"preset": "quick", "overrides": {"device": "cuda"}})
    assert celery.queues == [None, "fflab.train.cuda"]  # None: the shared default queue
