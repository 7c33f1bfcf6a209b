"""CP1 passes: issue -> read round trips, signatures, key ids, rotation, issuer checks, PNG."""

from __future__ import annotations

import zlib
from datetime import UTC, date, datetime, timedelta

import base45
import pytest
from conftest import ID_KEY

from edge.passes.cp1 import CP1_KINDS, issue_cp1, read_cp1
from edge.passes.credential import PassKind, Recovery, TestResult, Vaccination
from edge.passes.issuer import IssuerKey, IssuerKeyError
from edge.passes.trust import TrustStore
from edge.verdict import PassRejected, Reason
from sync.wire.identifiers import holder_hash

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _key(alg: str = "EdDSA", issuer: str = "HN-POLICE", **kw) -> IssuerKey:
    kw.setdefault("not_before", NOW - timedelta(days=30))
    return IssuerKey.generate(issuer, alg, **kw)


def _issue(key: IssuerKey, kind=PassKind.RESIDENT, **kw) -> str:
    kw.setdefault("issued_at", NOW - timedelta(hours=1))
    kw.setdefault("expires_at", NOW + timedelta(days=7))
    return issue_cp1(key, kind, holder_hash("001099012345", ID_KEY), **kw)


def _reject(text: str, trust: TrustStore, now=NOW) -> PassRejected:
    with pytest.raises(PassRejected) as info:
        read_cp1(text, trust, now)
    return info.value


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
@pytest.mark.parametrize("kind", sorted(CP1_KINDS))
def test_every_kind_round_trips(alg: str, kind: PassKind) -> None:
    key = _key(alg)
    vacc = Vaccination(2, 2, date(2026, 1, 2), "VN-VAX")
    test = TestResult(NOW - timedelta(hours=3), True, "PCR")
    rec = Recovery(date(2026, 1, 1), date(2026, 1, 12), date(2026, 6, 30))
    text = _issue(key, kind, zones=["hn-zone-1", "hn-zone-2"], vaccination=vacc, test=test, recovery=rec,
                  pass_id="P-42")
    assert text.startswith("CP1:")
    cred = read_cp1(text, TrustStore([key.trusted_key()]), NOW)
    assert (cred.kind, cred.pass_id, cred.issuer, cred.kid) == (kind, "P-42", "HN-POLICE", key.kid)
    assert cred.holder_hash == holder_hash("001099012345", ID_KEY) and cred.risk_keys == (cred.holder_hash,)
    assert cred.vaccination == vacc and cred.test == TestResult(test.taken_at.replace(microsecond=0), True, "PCR")
    assert cred.recovery == rec and cred.zones == ("hn-zone-1", "hn-zone-2")
    assert cred.expires_at == (NOW + timedelta(days=7)).replace(microsecond=0)


def test_plain_citizen_id_never_in_the_pass() -> None:
    text = _issue(_key())
    raw = zlib.decompress(base45.b45decode(text[4:]))
    assert b"001099012345" not in raw and holder_hash("001099012345", ID_KEY) in raw


def test_holder_must_be_a_hash_and_kind_a_cp1_kind() -> None:
    key = _key()
    with pytest.raises(ValueError, match="16-byte"):
        issue_cp1(key, PassKind.RESIDENT, b"001099012345", expires_at=NOW)
    with pytest.raises(ValueError, match="not a CP1"):
        issue_cp1(key, PassKind.DCC_TEST, holder_hash("1", ID_KEY), expires_at=NOW)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_forged_signature_is_bad_signature(alg: str) -> None:
    real, forger = _key(alg), _key(alg)
    # the forger signs with its own key but claims the real key's kid
    forged = IssuerKey(real.issuer, real.kid, alg, forger.private_key, real.not_before, real.not_after)
    assert _reject(_issue(forged), TrustStore([real.trusted_key()])).reason == Reason.BAD_SIGNATURE


def test_tampered_payload_is_bad_signature() -> None:
    key = _key()
    raw = bytearray(zlib.decompress(base45.b45decode(_issue(key, pass_id="AAAA")[4:])))
    at = raw.index(b"AAAA")
    raw[at:at + 4] = b"BBBB"
    text = "CP1:" + base45.b45encode(zlib.compress(bytes(raw))).decode()
    assert _reject(text, TrustStore([key.trusted_key()])).reason == Reason.BAD_SIGNATURE


def test_unknown_kid_and_wrong_issuer_name() -> None:
    key, other = _key(), _key(issuer="HCM-POLICE")
    assert _reject(_issue(key), TrustStore([other.trusted_key()])).reason == Reason.UNKNOWN_ISSUER
    # a trusted key of one issuer cannot sign passes in another issuer's name
    impostor = IssuerKey("HN-POLICE", other.kid, "EdDSA", other.private_key, other.not_before, other.not_after)
    rej = _reject(_issue(impostor), TrustStore([other.trusted_key()]))
    assert rej.reason == Reason.UNKNOWN_ISSUER and "HCM-POLICE" in rej.detail


def test_colliding_kids_try_every_key() -> None:
    a, b = _key(), _key()
    b_same_kid = IssuerKey(b.issuer, a.kid, b.algorithm, b.private_key, b.not_before, b.not_after)
    trust = TrustStore([a.trusted_key(), b_same_kid.trusted_key()])
    assert len(trust.candidates(a.kid)) == 2
    assert read_cp1(_issue(b_same_kid), trust, NOW).kid == a.kid
    assert read_cp1(_issue(a), trust, NOW).kid == a.kid


def test_key_rotation_old_key_verifies_until_its_end_date() -> None:
    old = _key(not_before=NOW - timedelta(days=400), valid_days=401)  # ends NOW + 1 day
    new = _key(not_before=NOW - timedelta(days=1))
    trust = TrustStore([old.trusted_key(), new.trusted_key()])
    old_pass, new_pass = _issue(old), _issue(new)
    assert read_cp1(old_pass, trust, NOW).kid == old.kid
    assert read_cp1(new_pass, trust, NOW).kid == new.kid
    later = NOW + timedelta(days=2)
    assert _reject(old_pass, trust, later).reason == Reason.ISSUER_KEY_EXPIRED
    assert read_cp1(new_pass, trust, later).kid == new.kid
    # a pass dated before its key's validity began is refused too
    early = _issue(new, issued_at=NOW - timedelta(days=3))
    assert _reject(early, trust).reason == Reason.ISSUER_KEY_EXPIRED


def test_key_file_round_trip(tmp_path) -> None:
    key = _key("ES256")
    key.save(tmp_path / "k.json")
    assert (tmp_path / "k.json").stat().st_mode & 0o777 == 0o600
    loaded = IssuerKey.load(tmp_path / "k.json")
    assert (loaded.kid, loaded.issuer, loaded.algorithm, loaded.not_after) == (
        key.kid, key.issuer, key.algorithm, key.not_after)
    assert read_cp1(_issue(loaded), TrustStore([key.trusted_key()]), NOW).kid == key.kid
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(IssuerKeyError):
        IssuerKey.load(tmp_path / "bad.json")
    with pytest.raises(IssuerKeyError, match="not found"):
        IssuerKey.load(tmp_path / "missing.json")


def test_png_decodes_back_to_the_text(tmp_path) -> None:
    import cv2

    from edge.devtools.qr import write_png
    from edge.scan.decode import Decoder

    text = _issue(_key(), vaccination=Vaccination(2, 2))
    png = write_png(text, tmp_path / "p.png")
    # read by the appliance's own decoder (QR only): zxing-cpp with every format on may also find a
    # stray linear barcode in some random modules, which the appliance never looks for
    assert Decoder().decode(cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)) == [text]
