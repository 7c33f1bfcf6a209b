"""Property tests: a record hashes the same on the device and after the JSON trip to the server."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.protocol import GENESIS, PushBatch, canonical_fields, record_hash

text = st.text(max_size=16)
records = st.fixed_dictionaries({
    "seq": st.integers(1, 2**53), "wall_time": st.text(max_size=40),
    "monotonic": st.floats(allow_nan=False, allow_infinity=False), "boot_id": st.text(max_size=64),
    "clock_trusted": st.booleans(), "format": st.none() | text, "kind": st.none() | text,
    "holder_enc": st.none() | st.binary(min_size=76, max_size=76).map(bytes.hex),
    "decision": st.sampled_from(["PASS", "REFUSE", "CHECK"]), "reason": st.text(max_size=48),
    "policy_version": st.none() | text, "risk_version": st.none() | text,
})


@settings(max_examples=200, deadline=None)
@given(records)
def test_hash_survives_the_wire(rec):
    digest = record_hash(GENESIS, canonical_fields(rec))
    wire = {**rec, "prev_hash": GENESIS.hex(), "hash": digest.hex()}
    body = json.dumps({"device_id": "d", "records": [wire]}).encode()
    parsed = PushBatch.model_validate_json(body).records[0]
    assert record_hash(GENESIS, canonical_fields(parsed)) == digest


@settings(max_examples=100, deadline=None)
@given(records, st.sampled_from(["seq", "wall_time", "decision", "reason", "holder_enc", "clock_trusted"]))
def test_any_field_change_changes_the_hash(rec, name):
    changed = dict(rec)
    value = rec[name]
    if isinstance(value, bool):
        changed[name] = not value
    elif isinstance(value, int):
        changed[name] = value + 1
    else:
        changed[name] = (value or "") + "x"
    assert canonical_fields(changed) != canonical_fields(rec)
