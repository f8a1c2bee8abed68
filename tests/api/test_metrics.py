"""GET /runs/{id}/metrics (cursor pages, thinned series) and GET /runs/{id}/events (SSE, real server)."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from ffcore.config import RunConfig
from tests.support.api import API, RunningApi
from tests.support.events import read_events
from tests.support.store import TestStore


def train_record(step: int) -> dict:
    return {
        "kind": "train",
        "step": step,
        "epoch": step / 100,
        "head_loss": 1.0 / step,
        "layers": [{"layer": 0, "goodness_pos": 2.0 * step, "goodness_neg": 1.0 * step, "threshold": 500.0}],
    }


def eval_record(epoch: int) -> dict:
    return {"kind": "eval", "step": epoch * 100, "epoch": epoch, "split": "val", "error_scan": 0.1 / epoch}


@pytest.fixture
def seeded_run(store: TestStore) -> str:
    """A running run with 100 train records (every 10 steps) and an eval record every 100 steps."""
    run_id = store.create_run(RunConfig.from_preset("quick")).id
    store.set_status(run_id, "running")
    records = []
    for step in range(10, 1001, 10):
        records.append(train_record(step))
        if step % 100 == 0:
            records.append(eval_record(step // 100))
    store.append_metrics(run_id, records)
    return run_id


def test_pages_by_cursor_cover_every_record_once(
    client: TestClient, store: TestStore, seeded_run: str
) -> None:
    seen, cursor = [], None
    while True:
        params = {"limit": 30} | ({"after": cursor} if cursor else {})
        page = client.get(f"{API}/runs/{seeded_run}/metrics", params=params).json()
        if not page["records"]:
            assert page["next"] == cursor  # nothing new: the cursor stays put
            break
        seen.extend(page["records"])
        cursor = page["next"]
        assert cursor == page["records"][-1]["id"]

    assert len(seen) == store.count_metrics(seeded_run) == 2 + 100 + 10
    assert len({r["id"] for r in seen}) == len(seen)
    assert [r["step"] for r in seen if r["kind"] == "train"] == list(range(10, 1001, 10))
    assert [r["status"] for r in seen if r["kind"] == "status"] == ["queued", "running"]

    # Records written later come after the same cursor.
    store.append_metrics(seeded_run, [train_record(1010)])
    page = client.get(f"{API}/runs/{seeded_run}/metrics", params={"after": cursor}).json()
    assert [r["step"] for r in page["records"]] == [1010]


def test_a_thinned_series_keeps_every_eval_and_status_record(client: TestClient, seeded_run: str) -> None:
    page = client.get(f"{API}/runs/{seeded_run}/metrics", params={"max_points": 12}).json()

    train = [r["step"] for r in page["records"] if r["kind"] == "train"]
    assert page["thinned"] is True
    assert len(train) == 12 and train[0] == 10 and train[-1] == 1000
    assert train == sorted(train)
    assert max(b - a for a, b in zip(train, train[1:], strict=False)) <= 100  # evenly spread
    assert len([r for r in page["records"] if r["kind"] == "eval"]) == 10
    assert len([r for r in page["records"] if r["kind"] == "status"]) == 2
    # The cursor points past everything read, so live updates continue from there.
    full = client.get(f"{API}/runs/{seeded_run}/metrics", params={"limit": 10_000}).json()
    assert page["next"] == full["next"]

    whole = client.get(f"{API}/runs/{seeded_run}/metrics", params={"max_points": 500}).json()
    assert whole["thinned"] is False and len(whole["records"]) == 112


def test_records_can_be_filtered_by_kind(client: TestClient, seeded_run: str) -> None:
    page = client.get(f"{API}/runs/{seeded_run}/metrics", params={"kind": "eval", "limit": 10_000}).json()
    assert [r["epoch"] for r in page["records"]] == list(range(1, 11))


def test_the_csv_export_holds_every_record_as_the_json_does(client: TestClient, seeded_run: str) -> None:
    response = client.get(f"{API}/runs/{seeded_run}/metrics.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f"ff-{seeded_run}-metrics.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    records = client.get(f"{API}/runs/{seeded_run}/metrics", params={"limit": 10_000}).json()["records"]
    assert [row["id"] for row in rows] == [record["id"] for record in records]
    for row, record in zip(rows, records, strict=True):
        assert row["kind"] == record["kind"]
        if record["kind"] == "train":
            layer = record["layers"][0]
            assert float(row["step"]) == record["step"] and float(row["head_loss"]) == record["head_loss"]
            assert float(row["layer0_goodness_pos"]) == layer["goodness_pos"]
            assert float(row["layer0_threshold"]) == layer["threshold"]
            assert row["error_scan"] == ""
        elif record["kind"] == "eval":
            assert (row["split"], float(row["error_scan"])) == ("val", record["error_scan"])
            assert row["layer0_goodness_pos"] == ""
        else:
            assert row["status"] == record["status"]


def test_the_csv_export_filters_by_kind_and_refuses_unknown_runs(client: TestClient, seeded_run: str) -> None:
    text = client.get(f"{API}/runs/{seeded_run}/metrics.csv", params={"kind": "eval"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(row["epoch"]) for row in rows] == list(range(1, 11))
    assert "layer0_goodness_pos" not in rows[0]  # only the columns eval records have
    missing = client.get(f"{API}/runs/nope/metrics.csv")
    assert (missing.status_code, missing.json()["detail"]) == (404, "run 'nope' not found")
    assert client.get(f"{API}/runs/{seeded_run}/metrics.csv?kind=loss").status_code == 422


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"after": "yesterday"}, "after: 'yesterday' is not a cursor"),
        ({"after": "1-2-3"}, "is not a cursor"),
        ({"after": "99999999999999999999999-0"}, "is not a cursor"),
        ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
        ({"max_points": 1}, "max_points: Input should be greater than or equal to 2"),
        ({"kind": "loss"}, "kind: Input should be 'train', 'eval', 'status' or 'rewind'"),
    ],
)
def test_bad_parameters_get_422(client: TestClient, seeded_run: str, params: dict, message: str) -> None:
    response = client.get(f"{API}/runs/{seeded_run}/metrics", params=params)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_a_cursor_at_the_end_of_the_id_space_reads_nothing(client: TestClient, seeded_run: str) -> None:
    end = "18446744073709551615-18446744073709551615"
    page = client.get(f"{API}/runs/{seeded_run}/metrics", params={"after": end}).json()
    assert page == {"records": [], "next": end, "thinned": False}


# --- Server-Sent Events, through the real uvicorn server -------------------------------------------


@pytest.fixture
def api(api_server: RunningApi, redis_url: str) -> RunningApi:
    return api_server


@pytest.mark.timeout(60)
def test_events_stream_live_records_and_end_after_the_run_finished(
    api, store: TestStore, seeded_run: str
) -> None:
    def train_on() -> None:
        time.sleep(0.5)
        store.append_metrics(seeded_run, [train_record(1010), eval_record(11)])
        time.sleep(0.3)
        store.set_status(seeded_run, "succeeded")

    writer = threading.Thread(target=train_on)
    events = []
    with httpx.stream("GET", f"{api.base_url}/runs/{seeded_run}/events", timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        writer.start()
        events = list(read_events(response))  # returns because the server ends the stream
    writer.join()

    assert [e["event"] for e in events[:2]] == ["status", "status"]
    metrics = [json.loads(e["data"]) for e in events if e["event"] == "metric"]
    assert [m["step"] for m in metrics if m["kind"] == "train"] == [*range(10, 1001, 10), 1010]
    assert [m["epoch"] for m in metrics if m["kind"] == "eval"] == list(range(1, 12))
    assert events[-2]["event"] == "status" and json.loads(events[-2]["data"])["status"] == "succeeded"
    assert events[-1]["event"] == "end" and json.loads(events[-1]["data"]) == {"status": "succeeded"}
    ids = [e["id"] for e in events[:-1]]
    assert ids == [r[0] for r in store.read_metrics(seeded_run, limit=10_000)[0]]


@pytest.mark.timeout(60)
def test_events_resume_after_last_event_id(api, store: TestStore, seeded_run: str) -> None:
    entries, _ = store.read_metrics(seeded_run, limit=10_000)
    resume_after = entries[50][0]
    store.set_status(seeded_run, "cancelled")

    with httpx.stream(
        "GET",
        f"{api.base_url}/runs/{seeded_run}/events",
        headers={"Last-Event-ID": resume_after},
        timeout=30,
    ) as response:
        events = list(read_events(response))

    assert [e["id"] for e in events[:-1]] == [eid for eid, _ in entries[51:]] + [events[-2]["id"]]
    assert json.loads(events[-2]["data"])["status"] == "cancelled"
    assert events[-1]["event"] == "end"

    # Reconnecting after the end sends nothing but the end again.
    with httpx.stream(
        "GET",
        f"{api.base_url}/runs/{seeded_run}/events",
        headers={"Last-Event-ID": events[-1]["id"]},
        timeout=30,
    ) as response:
        assert [e["event"] for e in read_events(response)] == ["end"]


@pytest.mark.timeout(60)
def test_events_refuse_unknown_runs_and_bad_event_ids(api, seeded_run: str) -> None:
    missing = httpx.get(f"{api.base_url}/runs/nope/events", timeout=10)
    assert missing.status_code == 404
    bad = httpx.get(f"{api.base_url}/runs/{seeded_run}/events", headers={"Last-Event-ID": "abc"}, timeout=10)
    assert bad.status_code == 422
    assert "Last-Event-ID: 'abc' is not a cursor" in bad.json()["detail"]
