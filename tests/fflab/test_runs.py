"""The API's side of the run store (fflab.store.runs) against a real redis-server."""

from __future__ import annotations

import hashlib
import json

import pytest

from ffcore.config import RunConfig
from fflab.store.keys import run_key


def test_create_get_list_and_delete(store):
    runs = store.runs
    first = runs.create_run(RunConfig.from_preset("quick"), preset="quick")
    second = runs.create_run(RunConfig.from_preset("quick", epochs=3))
    got = runs.get_run(second.id)
    assert got.status == "queued" and got.config.epochs == 3 and got.preset is None
    listed, total = runs.list_runs()
    assert total == 2 and [r.id for r in listed] == [second.id, first.id]
    store.update_run(first.id, status="running")
    listed, total = runs.list_runs(status="running")
    assert total == 1 and listed[0].id == first.id
    assert store.attempts.running_run_ids() == [first.id]
    assert runs.delete_run(first.id) and runs.get_run(first.id) is None
    assert not runs.delete_run(first.id)


def test_a_new_run_starts_its_stream_with_a_queued_status_event(store):
    record = store.runs.create_run(RunConfig.from_preset("quick"))
    (_, event), *_ = store.runs.read_metrics(record.id)[0]
    assert event == {"kind": "status", "status": "queued", "at": record.created_at}


def test_metrics_cursor_reads_only_newer_records(store, run_id):
    store.append_metrics(run_id, [{"kind": "train", "step": s} for s in (25, 50, 75)])
    records, cursor = store.runs.read_metrics(run_id, limit=2)
    assert [r.get("status") or r["step"] for _, r in records] == ["queued", 25]
    records, cursor = store.runs.read_metrics(run_id, after=cursor)
    assert [r["step"] for _, r in records] == [50, 75]
    assert store.runs.read_metrics(run_id, after=cursor) == ([], cursor)


@pytest.mark.parametrize(
    ("before", "after", "flag"),
    [("queued", "cancelled", True), ("running", "running", True), ("succeeded", "succeeded", False)],
)
def test_cancel_stops_a_queued_run_at_once_and_flags_a_running_one(store, run_id, before, after, flag):
    if before != "queued":
        store.set_status(run_id, before)
    assert store.runs.cancel_run(run_id) == before
    assert store.runs.get_run(run_id).status == after
    assert store.attempts.control_flags(run_id, "w1")[1] is flag
    last = store.runs.read_metrics(run_id)[0][-1][1]
    assert last["status"] == after and set(last) == {"kind", "status", "at"}
    assert store.runs.cancel_run("nope") is None


def test_models_and_their_fingerprint(store, run_id):
    assert store.runs.load_model(run_id) is None and store.runs.model_fingerprint(run_id) is None
    store.save_model(run_id, b"model bytes")
    assert store.runs.load_model(run_id) == b"model bytes"
    assert store.runs.model_fingerprint(run_id) == hashlib.sha1(b"model bytes").hexdigest()


def test_scripts_are_registered_once_not_per_call(store, run_id, monkeypatch):
    registered = []
    monkeypatch.setattr(store.redis, "register_script", lambda script: registered.append(script))
    store.runs.cancel_run(run_id)
    store.runs.model_fingerprint(run_id)
    assert registered == []


def test_tags_and_note_are_stored_edited_and_filtered_on(store):
    runs = store.runs
    first = runs.create_run(RunConfig.from_preset("quick"), tags=["baseline", "lr=1e-3"], note="first try")
    second = runs.create_run(RunConfig.from_preset("quick"), tags=["baseline"])
    runs.create_run(RunConfig.from_preset("quick"))
    got = runs.get_run(first.id)
    assert got.tags == ["baseline", "lr=1e-3"] and got.note == "first try" and got.provenance is None
    assert json.loads(store.redis.hget(run_key(first.id), "tags")) == ["baseline", "lr=1e-3"]

    listed, total = runs.list_runs(tag="baseline", limit=1)
    assert total == 2 and [r.id for r in listed] == [second.id]
    listed, total = runs.list_runs(tag="baseline", offset=1)
    assert total == 2 and [r.id for r in listed] == [first.id]
    store.update_run(first.id, status="running")
    assert [r.id for r in runs.list_runs(tag="baseline", status="running")[0]] == [first.id]
    assert runs.list_runs(tag="nope") == ([], 0)

    edited = runs.edit_run(first.id, tags=[], note="better")
    assert edited.tags == [] and edited.note == "better" and edited.status == "running"
    assert runs.edit_run(first.id, clear_note=True).note is None
    assert runs.edit_run(first.id, note="kept").tags == []
    assert runs.list_runs(tag="baseline")[1] == 1


def test_editing_a_missing_run_writes_nothing(store):
    assert store.runs.edit_run("gone", tags=["x"], note="y") is None
    assert not store.redis.exists(run_key("gone"))
