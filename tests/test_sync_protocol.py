"""Property tests: a record hashes the same on the device and after the JSON trip to the server."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sync.wire.protocol import GENESIS, PushBatch, canonical_fields, parse_push, record_hash


def _records(chars: st.SearchStrategy[str]) -> st.SearchStrategy[dict]:
    text = st.text(chars, max_size=16)
    return st.fixed_dictionaries({
        "seq": st.integers(1, 2**53), "wall_time": st.text(chars, max_size=40),
        "monotonic": st.floats(allow_nan=False, allow_infinity=False), "boot_id": st.text(chars, max_size=64),
        "clock_trusted": st.booleans(), "format": st.none() | text, "kind": st.none() | text,
        "holder_enc": st.none() | st.binary(min_size=76, max_size=76).map(bytes.hex),
        "decision": st.sampled_from(["PASS", "REFUSE", "CHECK"]), "reason": st.text(chars, max_size=48),
        "policy_version": st.none() | text, "risk_version": st.none() | text,
    })


#: any text (the hash encoding must be exact for all of it) and the printable ASCII the wire accepts
records = _records(st.characters())
wire_records = _records(st.characters(min_codepoint=0x20, max_codepoint=0x7E))


@settings(max_examples=200, deadline=None)
@given(wire_records)
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


any_text = st.text()
odd_records = st.fixed_dictionaries({
    "seq": st.integers(-2**70, 2**70) | st.booleans() | st.floats(), "wall_time": any_text,
    "monotonic": st.floats() | st.integers(-2**60, 2**60), "boot_id": any_text | st.integers(),
    "clock_trusted": st.booleans() | st.integers(), "format": st.none() | any_text, "kind": st.none() | any_text,
    "holder_enc": st.none() | any_text, "decision": any_text, "reason": any_text | st.none(),
    "policy_version": st.none() | any_text | st.integers(), "risk_version": st.none() | any_text | st.floats(),
})


@settings(max_examples=400, deadline=None)
@given(odd_records)
def test_canonical_fields_is_exactly_the_json_encoding(rec):
    """The fast formatter is byte for byte the json module's encoding of the field list, whatever the values."""
    fields = [rec["seq"], rec["wall_time"], float(rec["monotonic"]), rec["boot_id"], bool(rec["clock_trusted"]),
              rec["format"], rec["kind"], rec["holder_enc"], rec["decision"], rec["reason"], rec["policy_version"],
              rec["risk_version"]]
    assert canonical_fields(rec) == json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({
    "device_id": st.text(max_size=130), "records": st.lists(records.map(lambda r: {
        **r, "prev_hash": GENESIS.hex(), "hash": GENESIS.hex()}), max_size=3)}),
    st.sampled_from([None, "seq", "wall_time", "extra", "prev_hash", "decision"]), st.integers(-3, 300))
def test_server_parser_accepts_exactly_what_the_model_accepts(batch, field, value):
    """parse_push (plain dicts, used on ingest) and PushBatch (the model) enforce the same limits."""
    if field is not None and batch["records"]:
        batch["records"][0][field] = value if field in ("seq", "extra") else "x" * max(value, 0)
    body = json.dumps(batch).encode()
    try:
        model = PushBatch.model_validate_json(body)
    except ValidationError:
        model = None
    try:
        parsed = parse_push(body)
    except ValidationError:
        parsed = None
    assert (model is None) == (parsed is None)
    if model is not None:
        assert [canonical_fields(r) for r in model.records] == [canonical_fields(r) for r in parsed["records"]]


def test_control_characters_are_refused_before_storage():
    """PostgreSQL text refuses NUL: such a batch must be a 422 at parsing, never a 500 at COPY."""
    import pytest

    rec = {"seq": 1, "wall_time": "2026-01-01T00:00:00+00:00", "monotonic": 1.0, "boot_id": "b",
           "clock_trusted": True, "decision": "PASS", "reason": "ok", "prev_hash": GENESIS.hex(),
           "hash": GENESIS.hex()}
    parse_push(json.dumps({"device_id": "d", "records": [rec]}).encode())
    for bad in ("ok\u0000", "ok\n", "tiếng"):
        body = json.dumps({"device_id": "d", "records": [{**rec, "reason": bad}]}).encode()
        with pytest.raises(ValidationError):
            parse_push(body)
        with pytest.raises(ValidationError):
            PushBatch.model_validate_json(body)
