"""EU value sets: coded DCC fields outside the shipped sets are a doubt (CHECK), never a PASS."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.devtools.dgc_testdata import dgc_testdata_dir
from edge.passes import hc1
from edge.passes.valuesets import CHECKED_FIELDS, RAPID_ANTIGEN, unknown_codes, value_sets
from edge.verdict import Decision, PassRejected, Reason, refuse_or_check


def test_sets_are_loaded_with_their_known_members() -> None:
    sets = value_sets()
    assert set(CHECKED_FIELDS.values()) <= sets.keys()
    assert {"VN", "PL", "XK"} <= sets["country-2-codes"] and "XY" not in sets["country-2-codes"]
    assert "ORG-100030215" in sets["vaccines-covid-19-auth-holders"]
    assert "1232" in sets["covid-19-lab-test-manufacturer-and-name"]


def _dcc(group: str, **entry: str) -> dict:
    return {"ver": "1.3.0", group: [{"co": "VN", **entry}]}


@pytest.mark.parametrize(("dcc", "bad"), [
    (_dcc("v", ma="ORG-100030215"), []),
    (_dcc("v", ma="ORG-99999999"), ["v/0/ma"]),
    (_dcc("r", co="XY"), ["r/0/co"]),
    (_dcc("t", tt=RAPID_ANTIGEN, ma="9999"), ["t/0/ma"]),
    (_dcc("t", tt=RAPID_ANTIGEN, ma="1232"), []),
    (_dcc("t", tt="LP6464-4", ma=""), []),  # NAAT: no device from the rapid-antigen list
    (_dcc("t", tt=RAPID_ANTIGEN, ma="9999", co="XY"), ["t/0/co", "t/0/ma"]),
    ({"v": "not a list"}, []),
])
def test_unknown_codes(dcc: dict, bad: list[str]) -> None:
    assert sorted(u.split(" ")[0] for u in unknown_codes(dcc)) == bad


def test_unknown_code_is_a_check() -> None:
    with pytest.raises(PassRejected) as exc:
        hc1.check_codes(_dcc("v", ma="ORG-99999999"))
    assert exc.value.reason == Reason.UNKNOWN_CODE
    assert refuse_or_check(Reason.UNKNOWN_CODE) == Decision.CHECK
    hc1.check_codes(_dcc("v", ma="ORG-100001699"))  # AstraZeneca: known, no error


PL7 = str(dgc_testdata_dir() / "PL/1.3.0/2DCode/raw/7.json")


@pytest.mark.dgc
def test_signed_pass_with_unknown_device_gets_check_not_pass() -> None:
    import base64
    import json
    from datetime import datetime

    from edge.devtools.memory_risk import MemoryRiskList
    from edge.lists.policy import default_policy
    from edge.passes.trust import TrustedKey, TrustStore
    from edge.scan.clock import FixedClock
    from edge.scan.verifier import Verifier

    case = json.loads(Path(PL7).read_text(encoding="utf-8-sig"))
    at = datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"].replace("Z", "+00:00"))
    trust = TrustStore([TrustedKey.from_certificate(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))])
    verifier = Verifier(trust=trust, risk=MemoryRiskList({}, published_at=at), policy=default_policy(),
                        clock=FixedClock(at))
    verdict = verifier.verify(case["PREFIX"])
    assert (verdict.decision, verdict.reason) == (Decision.CHECK, Reason.UNKNOWN_CODE), verdict
    assert verdict.detail == "t/0/ma not in covid-19-lab-test-manufacturer-and-name"  # the field, not its text
