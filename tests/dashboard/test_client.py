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
        (401, {"detail": "missing or wrong X-API-Key"}, "Set FF_API_KEY"),
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
