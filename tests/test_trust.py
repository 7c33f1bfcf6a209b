"""Trust store: CP1 keys and EU DSCs, kid index, envelopes, bad entries."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest
from conftest import require_dgc_testdata
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.devtools.dgc_testdata import dgc_testdata_dir
from edge.passes.issuer import IssuerKey
from edge.passes.trust import TrustedKey, TrustError, TrustStore, build_trust_envelope, kid_for, load_trust_file
from sync.wire.envelope import EnvelopeError

DGC = dgc_testdata_dir()


def _case(rel: str) -> dict:
    return json.loads((DGC / rel).read_text(encoding="utf-8-sig"))


@pytest.fixture(scope="module")
def dsc_der() -> bytes:
    require_dgc_testdata()
    return base64.b64decode(_case("common/2DCode/raw/CO20.json")["TESTCTX"]["CERTIFICATE"])


def test_dsc_fields_from_the_certificate(dsc_der: bytes) -> None:
    key = TrustedKey.from_certificate(dsc_der)
    assert key.kid == kid_for(dsc_der) and key.source == "dsc"
    assert key.not_before == datetime(2021, 5, 3, 18, tzinfo=UTC)
    assert key.usages == frozenset("tvr")
    assert key.valid_at(datetime(2021, 5, 10, tzinfo=UTC)) and not key.valid_at(datetime(2021, 7, 1, tzinfo=UTC))


def test_envelope_round_trip(publisher_key: Ed25519PrivateKey, dsc_der: bytes, tmp_path: Path) -> None:
    cp1 = IssuerKey.generate("HN-POLICE", "ES256")
    blob = build_trust_envelope([cp1.trusted_key(), TrustedKey.from_certificate(dsc_der)], publisher_key, 4,
                                revoked_pass_ids=["P-9"])
    (tmp_path / "trust.cpenv").write_bytes(blob)
    store = load_trust_file(tmp_path / "trust.cpenv", [publisher_key.public_key()])
    assert store.version == 4 and len(store) == 2 and store.is_revoked("P-9") and not store.is_revoked("P-8")
    (got,) = store.candidates(cp1.kid)
    assert (got.issuer, got.algorithm, got.not_after) == ("HN-POLICE", "ES256", cp1.not_after)
    assert store.candidates(kid_for(dsc_der))[0].usages == frozenset("tvr")
    with pytest.raises(EnvelopeError):
        TrustStore.from_envelope(blob, [Ed25519PrivateKey.generate().public_key()])
    with pytest.raises(TrustError, match="cannot read"):
        load_trust_file(tmp_path / "missing", [publisher_key.public_key()])


def test_unusable_entries_are_skipped_with_a_log(caplog) -> None:
    good = IssuerKey.generate("A").trusted_key()
    payload = cbor2.dumps({"keys": [good.to_record(), {"src": "dsc", "der": b"junk"}, {"src": "x"}, 5],
                           "revoked": []})
    store = TrustStore.from_payload(payload)
    assert len(store) == 1 and caplog.text.count("event=trust_entry_skipped") == 1  # one line per load
    assert "count=3" in caplog.text
    with pytest.raises(TrustError):
        TrustStore.from_payload(b"\xff")


def test_cp1_key_type_must_match_algorithm() -> None:
    ed = IssuerKey.generate("A", "EdDSA")
    with pytest.raises(TrustError, match="does not match"):
        TrustedKey.for_cp1("A", ed.public_der(), "ES256", None, None)
