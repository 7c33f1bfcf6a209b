"""The fast paths agree with the reference implementations: base45 vs the ``base45`` package,
the compiled DCC schemas (jsonschema-rs, on the bounded CBOR) vs the reference ``jsonschema``."""

from __future__ import annotations

import copy
import functools
import json
from datetime import date
from pathlib import Path

import base45
import cbor2
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.devtools.dgc_testdata import dgc_testdata_dir
from edge.passes import hc1
from edge.passes.codec import b45decode
from edge.passes.cose import Sign1
from edge.verdict import PassRejected, Reason

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
COMMON = dgc_testdata_dir() / "common/2DCode/raw"


@PROPS
@given(st.binary(min_size=1, max_size=1500))
def test_b45decode_inverts_the_reference_encoder(raw: bytes) -> None:
    assert b45decode(base45.b45encode(raw).decode(), "HC1") == raw


@PROPS
@given(st.text(alphabet=ALPHABET + "a~é\x00", min_size=1, max_size=40))
def test_b45decode_accepts_exactly_what_the_reference_decoder_accepts(text: str) -> None:
    try:
        expected = base45.b45decode(text)
    except (ValueError, KeyError):  # the reference rejects this text
        expected = None
    if expected is None:
        with pytest.raises(PassRejected) as exc:
            b45decode(text, "HC1")
        assert exc.value.reason == Reason.MALFORMED
    else:
        assert b45decode(text, "HC1") == expected


@pytest.mark.parametrize("text", ["GGW", ":::", "::", "A", "ZZZZZZ"])
def test_b45decode_out_of_range_and_bad_length(text: str) -> None:
    with pytest.raises(PassRejected) as exc:
        b45decode(text, "HC1")
    assert exc.value.reason == Reason.MALFORMED


@functools.lru_cache(maxsize=8)
def _ecma_reference(name: str) -> jsonschema.protocols.Validator:
    """The reference jsonschema validator with ECMA-262 anchors: JSON Schema patterns are ECMA-262,
    whose ``$`` matches only at the end (Python's also before a final newline; jsonschema-rs follows
    the spec, so "ABC\\n" is no valid ``fnt``)."""
    schema = json.loads((Path(hc1.__file__).parent / "schemas" / name).read_text(encoding="utf-8"))

    def fix(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and isinstance(value, str) and value.endswith("$"):
                    node[key] = value[:-1] + "\\Z"
                else:
                    fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)

    fix(schema)
    return jsonschema.validators.validator_for(schema)(schema)


@pytest.mark.dgc
def test_ecma_anchor_is_enforced() -> None:
    dcc = copy.deepcopy(_payloads()[0])
    dcc["nam"]["fnt"] = "ABC\n"
    with pytest.raises(PassRejected) as exc:
        hc1.validate_payload(dcc)
    assert exc.value.reason == Reason.SCHEMA_INVALID and "fnt" in exc.value.detail


def _payloads() -> list[dict]:
    out = []
    for name in ("CO1", "CO3", "CO19", "CO20"):
        case = json.loads((COMMON / f"{name}.json").read_text(encoding="utf-8-sig"))
        _, dcc = hc1.read_claims(hc1.decode_hc1(case["PREFIX"]))
        out.append(dcc)
    return out


def _msg(dcc: object) -> Sign1:
    payload = cbor2.dumps({1: "AT", 4: 1_900_000_000, 6: 1_600_000_000, -260: {1: dcc}})
    return Sign1(b"", hc1.ES256, b"\0" * 8, payload, b"")


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-10, 10**6) | st.text(max_size=12)
                       | st.sampled_from(["2021-02-18", "1.3.0", "AT", "A<B", "ABC\n", "1990\n", "840539006",
                                         "260415000"]),
                       lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
                       max_leaves=8)
CBOR_ONLY = st.sampled_from([b"\x01", date(2021, 2, 18), cbor2.CBORTag(99, "x"), 2**70])


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += _paths(value, (*prefix, i))
    return found


@pytest.mark.dgc
@PROPS
@given(st.data())
def test_compiled_schema_on_decoded_cbor_agrees_with_reference_jsonschema(data) -> None:
    dcc = copy.deepcopy(data.draw(st.sampled_from(_payloads())))
    for _ in range(data.draw(st.integers(0, 3))):
        path = data.draw(st.sampled_from(_paths(dcc)))
        if not path:
            continue
        parent = dcc
        for step in path[:-1]:
            parent = parent[step]
        action = data.draw(st.sampled_from(["replace", "delete", "cbor"]))
        if action == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(CBOR_ONLY if action == "cbor" else JSONISH)
    msg = _msg(dcc)
    decoded = cbor2.loads(msg.payload)[-260][1]  # what the reader sees
    plain = _is_json(decoded)
    if plain:
        name = hc1.schema_file(decoded.get("ver") if isinstance(decoded, dict) else None)
        reference_ok = not list(_ecma_reference(name).iter_errors(decoded)) and (
            not isinstance(decoded, dict) or sum(g in decoded for g in "vtr") == 1)
    try:
        _, checked = hc1.checked_payload(msg)
        ok = True
    except PassRejected as exc:
        # a CBOR-only value (tag, date, bytes, big or float number, non-text key) is refused before
        # the schema is asked; a plain payload is refused by the schema alone
        assert exc.reason == (Reason.SCHEMA_INVALID if plain else Reason.MALFORMED), exc
        ok = False
    if not plain:
        assert not ok
        return
    assert ok == reference_ok
    if ok:
        assert checked == decoded


def _is_json(value: object) -> bool:
    """Whether ``value`` is what a JSON document holds (text keys; text, integers, bool, null)."""
    if isinstance(value, dict):
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    return value is None or type(value) in (str, bool) or (type(value) is int and abs(value) < 2**64)
