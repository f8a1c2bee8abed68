"""ApiClient without a server: how responses and failures become values and readable ApiErrors.

The same client runs against the real API in test_pages.py and test_browser.py.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from dashboard.client import ApiClient, ApiError


def client_answering(handler) -> ApiClient:
    return ApiClient("http://api.test/", api_key="secret", transport=httpx.MockTransport(handler))


def test_requests_go_under_api_v1_with_the_key_and_parse_into_models():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "abc", "status": "queued", "preset": "quick",
                                         "config": {"hidden": [500, 500], "epochs": 2}})  # fmt: skip

    run = client_answering(handler).create_run("quick", {"epochs": 3})
    assert run.id == "abc" and run.architecture == "2x500" and run.epochs == 2
    (request,) = seen
    assert request.url.path == "/api/v1/runs"
    assert request.headers["X-API-Key"] == "secret"
    assert json.loads(request.content) == {"preset": "quick", "overrides": {"epochs": 3}}


def test_tags_and_notes_travel_in_bodies_and_the_tag_filter_as_a_parameter():
    seen = []
    run = {"id": "abc", "status": "queued", "tags": ["a"], "note": "n", "provenance": {"device": "cpu"}}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"runs": [run], "total": 1})
        return httpx.Response(200, json=run)

    client = client_answering(handler)
    created = client.create_run("quick", {}, tags=["a"], note="n")
    assert (created.tags, created.note, created.provenance) == (["a"], "n", {"device": "cpu"})
    client.edit_run("abc", tags=[], note="")
    client.list_runs(tag="a")
    create, edit, listing = seen
    assert json.loads(create.content) == {"preset": "quick", "overrides": {}, "tags": ["a"], "note": "n"}
    assert (edit.method, edit.url.path, json.loads(edit.content)) == (
        "PATCH",
        "/api/v1/runs/abc",
        {"tags": [], "note": ""},
    )
    assert listing.url.params["tag"] == "a"


def test_metrics_passes_cursor_and_thinning_parameters():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        return httpx.Response(200, json={"records": [{"id": "5-0", "kind": "train"}], "next": "5-0"})

    client = client_answering(handler)
    page = client.metrics("abc", max_points=400)
    assert page.next == "5-0" and page.records[0]["kind"] == "train"
    client.metrics("abc", after="5-0", limit=1000, kind="eval")
    assert seen == [{"max_points": "400"}, {"after": "5-0", "limit": "1000", "kind": "eval"}]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (422, {"detail": "epochs: at most 1000 allowed, got 5000"}, "epochs: at most 1000 allowed, got 5000"),
        (404, {"detail": "run 'nope' not found"}, "run 'nope' not found"),
        (
            422,
            {
                "detail": [
                    {"loc": ["body", "overrides", "lr"], "msg": "must be > 0"},
                    {"loc": ["query"], "msg": "x"},
                ]
            },
            "overrides.lr: must be > 0; x",
        ),
        (401, {"detail": "missing or wrong X-API-Key"}, "This API needs a key to show anything: enter it in"),
        (500, "Internal Server Error", "The API failed (HTTP 500)"),
    ],
)
def test_error_responses_become_readable_api_errors(status, body, expected):
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    with pytest.raises(ApiError) as caught:
        client_answering(handler).get_run("nope")
    assert expected in str(caught.value)
    assert caught.value.status_code == status
    assert "Traceback" not in str(caught.value)


def test_an_unreachable_api_is_an_api_error_that_says_where_it_looked():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ApiClient(f"http://127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(ApiError) as caught:
        client.list_runs()
    assert caught.value.unreachable
    assert f"127.0.0.1:{port}" in str(caught.value) and "make up" in str(caught.value)


EXPERIMENT = {
    "id": "e1", "name": "lr", "status": "running", "created_at": 1.0, "search": "grid",
    "objective": "val_error_scan", "params": ["lr"], "seeds": [0, 1],
    "progress": {"settings_planned": 2, "settings_started": 1, "settings_finished": 0, "runs_queued": 1,
                 "runs_running": 1, "runs_finished": 0},
    "best": None, "best_params": None, "best_objective": None,
    "spec": {"params": {"lr": {"values": [0.001]}}},
    "table": {"settings": [{"trial": 0, "params": {"lr": 0.001}, "status": "running",
                            "runs": [{"seed": 0, "status": "running", "run_id": "r1"}],
                            "stats": {"val_error_scan": {"mean": None, "std": None, "n": 0}}}], "best": None},
    "a_field_the_dashboard_does_not_know": 1,
}  # fmt: skip


def test_experiment_routes_send_the_spec_and_parse_experiments():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path.endswith("/table.csv"):
            return httpx.Response(200, text="trial,status,lr\n0,running,0.001\n")
        if request.method == "DELETE":
            return httpx.Response(204)
        if path == "/api/v1/experiments" and request.method == "GET":
            summary = {k: v for k, v in EXPERIMENT.items() if k not in ("spec", "table")}
            return httpx.Response(200, json={"experiments": [summary], "total": 1, "offset": 0, "limit": 5})
        return httpx.Response(201 if request.method == "POST" else 200, json=EXPERIMENT)

    client = client_answering(handler)
    spec = {"base": {"preset": "quick"}, "params": {"lr": {"values": [0.001]}}, "seeds": [0, 1]}
    created = client.create_experiment(spec, name="lr")
    assert created.id == "e1" and created.is_running and created.progress.runs_running == 1
    assert created.table.settings[0].runs[0].run_id == "r1"
    assert created.table.settings[0].stat("test_error_scan").mean is None  # a statistic it lacks: empty
    page = client.list_experiments(status="running", limit=5)
    assert (page.total, page.experiments[0].label) == (1, "lr (e1) · grid over lr")
    assert client.get_experiment("e1").spec["params"] == {"lr": {"values": [0.001]}}
    assert client.experiment_table_csv("e1").splitlines() == ["trial,status,lr", "0,running,0.001"]
    client.cancel_experiment("e1")
    client.delete_experiment("e1")
    create, listing, get, table, cancel, delete = seen
    assert (create.method, create.url.path) == ("POST", "/api/v1/experiments")
    assert json.loads(create.content) == spec | {"name": "lr"}
    assert "name" not in spec  # the caller's spec is left as it was
    assert dict(listing.url.params) == {"status": "running", "offset": "0", "limit": "5"}
    assert (get.url.path, table.url.path) == ("/api/v1/experiments/e1", "/api/v1/experiments/e1/table.csv")
    assert (cancel.method, cancel.url.path) == ("POST", "/api/v1/experiments/e1/cancel")
    assert (delete.method, delete.url.path) == ("DELETE", "/api/v1/experiments/e1")
    assert all(request.headers["X-API-Key"] == "secret" for request in seen)


def test_a_refused_spec_is_an_api_error_with_the_apis_words():
    def handler(request: httpx.Request) -> httpx.Response:
        detail = "params.lr: grid search takes listed values only; give `values`, or use search 'random'"
        return httpx.Response(422, json={"detail": detail})

    with pytest.raises(ApiError) as caught:
        client_answering(handler).create_experiment({"params": {"lr": {"low": 0.1, "high": 1}}})
    assert caught.value.status_code == 422
    assert str(caught.value).startswith("params.lr: grid search takes listed values only")


def test_runs_filter_by_experiment_and_rerun_posts_to_the_runs_rerun_route():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            run = {"id": "r1", "status": "succeeded", "experiment": "e1", "setting": 1}
            return httpx.Response(200, json={"runs": [run], "total": 1})
        return httpx.Response(201, json={"id": "r2", "status": "queued", "note": "rerun of r1"})

    client = client_answering(handler)
    (run,) = client.list_runs(experiment="e1").runs
    assert (run.experiment, run.setting, run.experiment_label) == ("e1", 1, "e1 #1")
    copy = client.rerun("r1")
    assert (copy.id, copy.status, copy.note) == ("r2", "queued", "rerun of r1")
    client.rerun("r1", tags=["again"], note="check")
    listing, rerun, rerun_with_body = seen
    assert listing.url.params["experiment"] == "e1"
    assert (rerun.method, rerun.url.path, json.loads(rerun.content)) == ("POST", "/api/v1/runs/r1/rerun", {})
    assert json.loads(rerun_with_body.content) == {"tags": ["again"], "note": "check"}


def test_with_key_shares_the_pool_and_each_client_sends_only_its_own_key():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-API-Key"))
        return httpx.Response(200, json={"runs": [], "total": 0})

    pool = ApiClient("http://api.test/", transport=httpx.MockTransport(handler))
    alice, bob = pool.with_key("alice-key"), pool.with_key(None)
    alice.list_runs()
    bob.list_runs()
    pool.list_runs()
    pool.with_key("carol-key").list_runs()
    assert seen == ["alice-key", None, None, "carol-key"]
    assert alice._http is pool._http is bob._http  # one connection pool for every visitor
    assert (alice.has_key, bob.has_key, pool.has_key) == (True, False, False)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda client: client.delete_run("r1"),
            "This API needs a key to change anything: enter it in the sidebar",
        ),
        (lambda client: client.create_run("quick"), "This API needs a key to change anything"),
        (
            lambda client: client.predict_pixels("r1", [[0.0] * 28] * 28),
            "This API needs a key to show anything",
        ),
        (lambda client: client.list_runs(), "This API needs a key to show anything: enter it in the sidebar"),
    ],
)
def test_a_401_says_whether_changing_or_reading_needs_the_key_and_what_the_api_said(call, expected):
    detail = (
        "missing or wrong API key: requests that change something need the API key in the X-API-Key header"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": detail})

    with pytest.raises(ApiError) as caught:
        call(client_answering(handler))
    assert caught.value.status_code == 401
    assert str(caught.value).startswith(expected) and detail in str(caught.value)


def test_access_asks_with_the_clients_key():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("X-API-Key")))
        answer = {"writes_need_key": True, "reads_need_key": True, "can_read": True, "can_write": False}
        return httpx.Response(200, json=answer | {"a_field_the_dashboard_does_not_know": 1})

    access = client_answering(handler).access()
    assert (access.writes_need_key, access.reads_need_key, access.can_read, access.can_write) == (
        True, True, True, False,
    )  # fmt: skip
    assert seen == [("/api/v1/access", "secret")]
