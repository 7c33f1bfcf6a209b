"""The Verifier: every decision path, its never-raise guarantee and atomic hot swaps."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import ID_KEY

from edge.devtools.memory_risk import MemoryRiskList
from edge.lists.policy import default_policy
from edge.passes.cp1 import issue_cp1
from edge.passes.credential import PassKind, TestResult, Vaccination
from edge.passes.issuer import IssuerKey
from edge.passes.trust import TrustStore
from edge.scan.clock import FixedClock
from edge.scan.verifier import Verifier
from edge.verdict import Decision, Reason
from sync.wire.identifiers import holder_hash
from sync.wire.risk.types import RiskEntry, RiskStatus

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
CITIZEN = "001099012345"


@pytest.fixture(scope="module")
def key() -> IssuerKey:
    return IssuerKey.generate("HN-POLICE", "EdDSA", not_before=NOW - timedelta(days=30))


def _risk(entries=None, age_hours: float = 1) -> MemoryRiskList:
    return MemoryRiskList(entries or {}, version=7, published_at=NOW - timedelta(hours=age_hours))


def _verifier(key: IssuerKey, *, risk="fresh", trusted: bool = True, revoked=(), policy=None) -> Verifier:
    return Verifier(trust=TrustStore([key.trusted_key()], revoked), risk=_risk() if risk == "fresh" else risk,
                    policy=policy or default_policy(), clock=FixedClock(NOW, trusted=trusted))


def _pass(key: IssuerKey, kind=PassKind.RESIDENT, citizen: str = CITIZEN, **kw) -> str:
    kw.setdefault("issued_at", NOW - timedelta(days=1))
    kw.setdefault("expires_at", NOW + timedelta(days=7))
    kw.setdefault("zones", ["hn-zone-1"])
    if "test" not in kw and "recovery" not in kw:
        kw.setdefault("vaccination", Vaccination(2, 2, date(2026, 1, 1)))
    return issue_cp1(key, kind, holder_hash(citizen, ID_KEY), **kw)


def test_valid_pass_passes_with_details(key: IssuerKey) -> None:
    v = _verifier(key).verify(_pass(key, pass_id="P1"))
    assert (v.decision, v.reason) == (Decision.PASS, Reason.OK)
    assert (v.format, v.kind, v.pass_id, v.issuer) == ("CP1", "resident", "P1", "HN-POLICE")
    assert v.holder_hash == holder_hash(CITIZEN, ID_KEY)
    assert v.to_json()["verdict"] == "PASS" and CITIZEN not in str(v.to_json())


@pytest.mark.parametrize(("status", "reason"), [(RiskStatus.F0, Reason.RISK_F0), (RiskStatus.F1, Reason.RISK_F1),
                                                (RiskStatus.REVOKED, Reason.RISK_REVOKED)])
def test_risk_hits_refuse(key: IssuerKey, status: RiskStatus, reason: Reason) -> None:
    risk = _risk({holder_hash(CITIZEN, ID_KEY): status})
    v = _verifier(key, risk=risk).verify(_pass(key))
    assert (v.decision, v.reason) == (Decision.REFUSE, reason)
    # even a stale list or an untrusted clock does not hide a listed holder
    assert _verifier(key, risk=_risk({holder_hash(CITIZEN, ID_KEY): status}, 500), trusted=False).verify(
        _pass(key)).reason == reason
    assert _verifier(key, risk=risk).verify(_pass(key, citizen="other")).decision == Decision.PASS


def test_expired_risk_entry_no_longer_refuses(key: IssuerKey) -> None:
    risk = _risk({holder_hash(CITIZEN, ID_KEY): RiskEntry(RiskStatus.F1, until=date(2026, 2, 27))})
    assert _verifier(key, risk=risk).verify(_pass(key)).decision == Decision.PASS


@pytest.mark.parametrize(("risk", "trusted", "reason"), [
    (None, True, Reason.RISK_LIST_MISSING),
    (MemoryRiskList({}, published_at=NOW - timedelta(hours=25)), True, Reason.RISK_LIST_STALE),
    (MemoryRiskList({}, published_at=None), True, Reason.RISK_LIST_STALE),
    ("fresh", False, Reason.CLOCK_UNTRUSTED),
])
def test_doubt_is_check_never_pass(key: IssuerKey, risk, trusted: bool, reason: Reason) -> None:
    v = _verifier(key, risk=risk, trusted=trusted).verify(_pass(key))
    assert (v.decision, v.reason) == (Decision.CHECK, reason)


def test_definite_refusals_beat_a_missing_risk_list(key: IssuerKey) -> None:
    expired = _pass(key, expires_at=NOW - timedelta(minutes=1))
    assert _verifier(key, risk=None).verify(expired).reason == Reason.EXPIRED
    # but with an untrusted clock an "expired" pass is only a doubt
    assert _verifier(key, trusted=False).verify(expired).reason == Reason.CLOCK_UNTRUSTED


def test_time_window(key: IssuerKey) -> None:
    v = _verifier(key)
    assert v.verify(_pass(key, expires_at=NOW - timedelta(seconds=1))).reason == Reason.EXPIRED
    assert v.verify(_pass(key, valid_from=NOW + timedelta(hours=1))).reason == Reason.NOT_YET_VALID


def test_issuer_revocation_by_pass_id(key: IssuerKey) -> None:
    v = _verifier(key, revoked=["BAD-1"]).verify(_pass(key, pass_id="BAD-1"))
    assert (v.decision, v.reason) == (Decision.REFUSE, Reason.PASS_REVOKED)


def test_policy_outcomes(key: IssuerKey) -> None:
    v = _verifier(key)
    assert v.verify(_pass(key, zones=["hn-zone-2"])).reason == Reason.ZONE_NOT_ALLOWED
    assert v.verify(_pass(key, zones=["*"])).reason == Reason.OK
    assert v.verify(_pass(key, vaccination=Vaccination(1, 2))).reason == Reason.INSUFFICIENT_VACCINATION
    old_test = TestResult(NOW - timedelta(hours=80), True)
    assert v.verify(_pass(key, PassKind.GOODS_DRIVER, test=old_test)).reason == Reason.TEST_TOO_OLD
    positive = TestResult(NOW - timedelta(hours=2), False)
    assert v.verify(_pass(key, PassKind.GOODS_DRIVER, test=positive)).reason == Reason.TEST_POSITIVE
    assert v.verify(_pass(key, PassKind.OFFICIAL)).reason == Reason.OK


def test_no_rule_is_check_and_unaccepted_kind_is_refuse(key: IssuerKey) -> None:
    base = default_policy()
    no_rule = base.model_copy(update={"rules": [r for r in base.rules if r.kind != PassKind.STUDENT]})
    v = _verifier(key, policy=no_rule).verify(_pass(key, PassKind.STUDENT))
    assert (v.decision, v.reason) == (Decision.CHECK, Reason.NO_RULE)
    narrow = base.model_copy(update={"accepted_kinds": [PassKind.OFFICIAL]})
    v = _verifier(key, policy=narrow).verify(_pass(key, PassKind.STUDENT))
    assert (v.decision, v.reason) == (Decision.REFUSE, Reason.KIND_NOT_ACCEPTED)
    no_cp1 = base.model_copy(update={"accepted_formats": ["HC1"]})
    assert _verifier(key, policy=no_cp1).verify(_pass(key)).reason == Reason.FORMAT_NOT_ACCEPTED


def test_red_area_admits_only_marked_kinds(key: IssuerKey) -> None:
    red = default_policy("hn-red")
    v = _verifier(key, policy=red)
    assert v.verify(_pass(key, zones=["*"])).reason == Reason.ZONE_NOT_ALLOWED
    assert v.verify(_pass(key, PassKind.OFFICIAL, zones=["hn-red"])).reason == Reason.OK


@pytest.mark.parametrize(("text", "decision", "reason"), [
    ("https://example.com", Decision.CHECK, Reason.NOT_A_PASS),
    ("CP1:", Decision.REFUSE, Reason.MALFORMED),
    ("CP1:abc", Decision.REFUSE, Reason.MALFORMED),
    ("CP1:" + "A" * 5000, Decision.REFUSE, Reason.TOO_LARGE),
])
def test_garbage_gets_a_reason(key: IssuerKey, text: str, decision: Decision, reason: Reason) -> None:
    v = _verifier(key).verify(text)
    assert (v.decision, v.reason) == (decision, reason)


def test_internal_error_becomes_check(key: IssuerKey, caplog) -> None:
    class Broken(MemoryRiskList):
        def lookup(self, key, today=None):
            raise RuntimeError("disk on fire")

    v = _verifier(key, risk=Broken()).verify(_pass(key))
    assert (v.decision, v.reason) == (Decision.CHECK, Reason.INTERNAL_ERROR)
    assert "event=verify_internal_error" in caplog.text
    assert _verifier(key).verify(None).reason == Reason.MALFORMED  # type: ignore[arg-type]


def test_install_swaps_atomically_while_verifying(key: IssuerKey) -> None:
    new_key = IssuerKey.generate("HN-POLICE", "ES256", not_before=NOW - timedelta(days=1))
    verifier = _verifier(key)
    assert verifier.verify(_pass(new_key)).reason == Reason.UNKNOWN_ISSUER
    old_text, new_text = _pass(key), _pass(new_key)
    stop, seen = threading.Event(), []

    def scan() -> None:
        while not stop.is_set():
            seen.append(verifier.verify(old_text).reason)

    worker = threading.Thread(target=scan)
    worker.start()
    for version in range(2, 6):
        verifier.install(trust=TrustStore([key.trusted_key(), new_key.trusted_key()], version=version),
                         policy=default_policy(version=version),
                         risk=MemoryRiskList({}, version=version, published_at=NOW))
    stop.set()
    worker.join()
    assert set(seen) == {Reason.OK}
    assert (verifier.policy_version, verifier.trust_version, verifier.risk_version) == (5, 5, 5)
    assert verifier.verify(new_text).decision == Decision.PASS
