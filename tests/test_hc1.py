"""EU DCC (HC1) reading on the upstream test vectors: algorithms, kids, usages, revocation hashes."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime

import pytest

from edge.devtools.dgc_testdata import dgc_testdata_dir
from edge.devtools.memory_risk import MemoryRiskList
from edge.lists.policy import default_policy
from edge.passes import hc1
from edge.passes.credential import PassKind
from edge.passes.trust import TrustedKey, TrustStore
from edge.scan.clock import FixedClock
from edge.scan.verifier import Verifier
from edge.verdict import Decision, PassRejected, Reason
from sync.wire.risk.types import RiskStatus

COMMON = dgc_testdata_dir() / "common/2DCode/raw"
pytestmark = pytest.mark.dgc


def _case(name: str) -> tuple[str, TrustStore, datetime]:
    case = json.loads((COMMON / f"{name}.json").read_text(encoding="utf-8-sig"))
    ctx = case["TESTCTX"]
    trust = TrustStore([TrustedKey.from_certificate(base64.b64decode(ctx["CERTIFICATE"]))])
    return case["PREFIX"], trust, datetime.fromisoformat(ctx["VALIDATIONCLOCK"].replace("Z", "+00:00"))


@pytest.mark.parametrize(("name", "alg"), [("CO1", hc1.PS256), ("CO2", hc1.PS256), ("CO3", hc1.ES256),
                                           ("CO19", hc1.ES256), ("CO20", hc1.ES256), ("CO28", hc1.ES256)])
def test_valid_vectors_read(name: str, alg: int) -> None:
    text, trust, at = _case(name)
    cred = hc1.read_hc1(text, trust, at)
    assert hc1.decode_hc1(text).alg == alg
    assert cred.kind in {PassKind.DCC_VACCINATION, PassKind.DCC_TEST, PassKind.DCC_RECOVERY}
    assert cred.issued_at <= at <= cred.expires_at and len(cred.holder_hash) == 16


@pytest.mark.parametrize(("name", "reason"), [
    ("CO5", Reason.BAD_SIGNATURE), ("CO6", Reason.ISSUER_KEY_USAGE), ("CO8", Reason.ISSUER_KEY_USAGE),
    ("CO22", Reason.UNKNOWN_ISSUER), ("CO23", Reason.UNKNOWN_ISSUER), ("Z2", Reason.MALFORMED),
    ("B1", Reason.MALFORMED), ("H1", Reason.NOT_A_PASS), ("CBO1", Reason.MALFORMED),
    ("DGC1", Reason.SCHEMA_INVALID), ("DGC2", Reason.SCHEMA_INVALID)])
def test_invalid_vectors_are_rejected_with_their_reason(name: str, reason: Reason) -> None:
    text, trust, at = _case(name)
    with pytest.raises(PassRejected) as info:
        hc1.read_hc1(text, trust, at)
    assert info.value.reason == reason, info.value.detail


def test_revocation_hashes_follow_the_eu_scheme() -> None:
    text, trust, at = _case("CO3")
    cred = hc1.read_hc1(text, trust, at)
    msg = hc1.decode_hc1(text)
    uci = cred.pass_id
    assert cred.risk_keys == (hashlib.sha256(uci.encode()).digest()[:16],
                              hashlib.sha256((cred.issuer + uci).encode()).digest()[:16],
                              hashlib.sha256(msg.signature[:32]).digest()[:16])


def test_verifier_on_hc1_pass_and_revocation() -> None:
    text, trust, at = _case("CO3")
    fresh = MemoryRiskList({}, published_at=at)
    verifier = Verifier(trust=trust, risk=fresh, policy=default_policy(), clock=FixedClock(at))
    verdict = verifier.verify(text)
    assert verdict.format == "HC1" and verdict.decision in {Decision.PASS, Decision.REFUSE}
    assert verdict.reason not in {Reason.BAD_SIGNATURE, Reason.UNKNOWN_ISSUER, Reason.INTERNAL_ERROR}
    key = hc1.read_hc1(text, trust, at).risk_keys[1]
    verifier.install(risk=MemoryRiskList({key: RiskStatus.REVOKED}, published_at=at))
    assert verifier.verify(text).reason == Reason.RISK_REVOKED
    # years later the DSC has expired: the pass is refused, never passed
    late = Verifier(trust=trust, risk=fresh, policy=default_policy(),
                    clock=FixedClock(datetime.fromisoformat("2030-01-01T00:00:00+00:00")))
    assert late.verify(text).decision == Decision.REFUSE
