"""The key layout and the run record's encoding (fflab.store.keys), without Redis."""

from __future__ import annotations

from ffcore.config import RunConfig
from fflab.store.keys import Provenance, RunRecord, all_run_keys, decode_record, encode_fields, status_event


def test_a_status_event_carries_only_the_fields_given():
    assert status_event("queued", 1.5) == {"kind": "status", "status": "queued", "at": 1.5}
    assert status_event("failed", 2.0, error="boom", reason=None, worker="") == {
        "kind": "status", "status": "failed", "at": 2.0, "error": "boom"
    }  # fmt: skip
    assert status_event("running", 3.0, worker="w1")["worker"] == "w1"
    assert status_event("queued", 4.0, reason="lease expired")["reason"] == "lease expired"


def test_a_record_survives_encoding_into_a_hash_and_back():
    record = RunRecord(
        id="abc",
        status="running",
        config=RunConfig.from_preset("quick"),
        created_at=1.0,
        step=5,
        has_model=True,
        tags=["a", "b=1"],
        note="a note",
        provenance=Provenance(fflab_version="0.1.0", torch_version="2.0", device="cpu", cpu_threads=4),
    )
    raw = {
        k.encode(): v.encode()
        for k, v in encode_fields(record.model_dump() | {"config": record.config}).items()
    }
    assert decode_record(raw) == record
    bare = RunRecord(id="x", status="queued", config=RunConfig(), created_at=1.0)
    raw = {k.encode(): v.encode() for k, v in encode_fields(bare.model_dump()).items()}
    assert decode_record(raw) == bare and bare.tags == [] and bare.note is None and bare.provenance is None


def test_every_key_of_a_run_lives_under_its_prefix():
    assert all(key.startswith("ff:run:abc") for key in all_run_keys("abc"))
    assert len(set(all_run_keys("abc"))) == 7
