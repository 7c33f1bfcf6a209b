"""Policy: validation, signed envelopes and the evidence rules."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.lists.policy import PolicyError, default_policy, parse_policy, parse_policy_envelope, sign_policy
from edge.passes.credential import Credential, PassFormat, PassKind, Recovery, TestResult, Vaccination
from edge.verdict import Reason

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _cred(kind=PassKind.DCC_VACCINATION, fmt=PassFormat.HC1, **kw) -> Credential:
    return Credential(format=fmt, kind=kind, pass_id="x", issuer="VN", kid=b"k" * 8, holder_hash=b"h" * 16, **kw)


def test_envelope_round_trip_and_forgery(publisher_key: Ed25519PrivateKey) -> None:
    policy = default_policy("hn-zone-2", version=3)
    blob = sign_policy(policy, publisher_key)
    assert parse_policy_envelope(blob, [publisher_key.public_key()], None) == policy
    with pytest.raises(PolicyError, match="pinned"):
        parse_policy_envelope(blob, [Ed25519PrivateKey.generate().public_key()], None)
    with pytest.raises(PolicyError):
        parse_policy_envelope(blob[:-5], [publisher_key.public_key()], None)


def test_unknown_fields_and_bad_zone_are_rejected() -> None:
    doc = json.loads(default_policy().to_json_bytes())
    doc["dose_required"] = 3
    with pytest.raises(PolicyError, match="dose_required"):
        parse_policy(json.dumps(doc).encode())
    doc = json.loads(default_policy().to_json_bytes())
    doc["checkpoint_zone"] = "hcm-1"
    with pytest.raises(PolicyError, match="checkpoint_zone"):
        parse_policy(json.dumps(doc).encode())


def test_envelope_version_must_match(publisher_key: Ed25519PrivateKey) -> None:
    from sync.wire.envelope import sign_envelope

    blob = sign_envelope("policy", 9, default_policy(version=1).to_json_bytes(), publisher_key)
    with pytest.raises(PolicyError, match="version"):
        parse_policy_envelope(blob, [publisher_key.public_key()], None)


@pytest.mark.parametrize(("vacc", "reason"), [
    (Vaccination(2, 2, date(2026, 1, 1)), Reason.OK),
    (Vaccination(1, 1, date(2026, 1, 1)), Reason.OK),          # completed one-dose series
    (Vaccination(1, 2, date(2026, 1, 1)), Reason.INSUFFICIENT_VACCINATION),
    (Vaccination(2, 2, date(2026, 2, 20)), Reason.INSUFFICIENT_VACCINATION),  # < 14 days ago
    (Vaccination(0, 0), Reason.INSUFFICIENT_VACCINATION),
    (None, Reason.INSUFFICIENT_VACCINATION),
])
def test_vaccination_rule(vacc, reason: Reason) -> None:
    assert default_policy().evaluate(_cred(vaccination=vacc), NOW) == reason


@pytest.mark.parametrize(("hours_ago", "negative", "reason"), [
    (1, True, Reason.OK), (71, True, Reason.OK), (73, True, Reason.TEST_TOO_OLD),
    (-1, True, Reason.TEST_TOO_OLD), (1, False, Reason.TEST_POSITIVE)])
def test_test_rule(hours_ago: float, negative: bool, reason: Reason) -> None:
    test = TestResult(NOW - timedelta(hours=hours_ago), negative)
    assert default_policy().evaluate(_cred(PassKind.DCC_TEST, test=test), NOW) == reason


@pytest.mark.parametrize(("rec", "reason"), [
    (Recovery(date(2026, 1, 1), date(2026, 1, 12), date(2026, 6, 30)), Reason.OK),
    (Recovery(date(2025, 1, 1), date(2025, 1, 12), date(2026, 6, 30)), Reason.RECOVERY_NOT_VALID),  # > 180 d
    (Recovery(date(2026, 1, 1), date(2026, 3, 5), date(2026, 6, 30)), Reason.RECOVERY_NOT_VALID),
    (Recovery(None, None, None), Reason.RECOVERY_NOT_VALID),
])
def test_recovery_rule(rec: Recovery, reason: Reason) -> None:
    assert default_policy().evaluate(_cred(PassKind.DCC_RECOVERY, recovery=rec), NOW) == reason


def test_any_accepted_evidence_suffices_and_the_present_one_is_blamed() -> None:
    policy = default_policy()
    ok_test = TestResult(NOW - timedelta(hours=2), True)
    cred = _cred(PassKind.RESIDENT, PassFormat.CP1, zones=("hn-zone-1",), test=ok_test)
    assert policy.evaluate(cred, NOW) == Reason.OK
    old = _cred(PassKind.RESIDENT, PassFormat.CP1, zones=("hn-zone-1",), test=TestResult(NOW - timedelta(days=9), True))
    assert policy.evaluate(old, NOW) == Reason.TEST_TOO_OLD


def test_hc1_passes_are_not_zone_bound_but_red_areas_apply() -> None:
    cred = _cred(vaccination=Vaccination(2, 2, date(2026, 1, 1)))
    assert default_policy("hn-zone-3").evaluate(cred, NOW) == Reason.OK
    assert default_policy("hn-red").evaluate(cred, NOW) == Reason.ZONE_NOT_ALLOWED
