"""The demo's travellers: the passes they hold up and the verdict each one must get."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ed25519

from edge.devtools.hc1_issuer import DocumentSigner, issue_hc1, vaccination_payload
from edge.passes.cp1 import issue_cp1
from edge.passes.credential import PassKind, TestResult, Vaccination
from edge.passes.issuer import IssuerKey
from edge.verdict import Decision, Reason
from sync.wire.identifiers import holder_hash
from sync.wire.risk.types import RiskStatus

#: Made-up 12-digit citizen IDs; only their hashes ever leave this module.
RESIDENT_ID = "001090000001"
F1_ID = "001090000002"
F0_ID = "001090000003"
DRIVER_ID = "036085000004"
WORKER_ID = "034092000005"


@dataclass(frozen=True)
class Traveller:
    """One person at the checkpoint: what they hold up and what the lamp must show."""

    label: str
    text: str
    expected: Decision
    expected_reason: Reason


def risk_entries() -> list[tuple[bytes, RiskStatus, date | None]]:
    """The risk list the province publishes: one F0 case, one F1 contact."""
    return [(holder_hash(F0_ID), RiskStatus.F0, None), (holder_hash(F1_ID), RiskStatus.F1, None)]


def travellers(issuer: IssuerKey, dsc: DocumentSigner, now: datetime, zone: str) -> list[Traveller]:
    """Seven travellers covering passes, refusals and a hand check.

    CP1 passes are signed with ``issuer``; the vaccine passport (EU DCC) with the document signer ``dsc``.
    """
    vaccinated = Vaccination(doses=2, series_doses=2, last_dose=(now - timedelta(days=60)).date(),
                             product="EU/1/20/1528")
    fresh_test = TestResult(taken_at=now - timedelta(hours=20), negative=True, test_type="rapid-antigen")
    in_a_year = now + timedelta(days=365)
    forger = replace(issuer, private_key=ed25519.Ed25519PrivateKey.generate())  # same kid, wrong key
    return [
        Traveller("vaccinated resident",
                  issue_cp1(issuer, PassKind.RESIDENT, holder_hash(RESIDENT_ID), expires_at=in_a_year,
                            zones=(zone,), vaccination=vaccinated),
                  Decision.PASS, Reason.OK),
        Traveller("F1 close contact",
                  issue_cp1(issuer, PassKind.RESIDENT, holder_hash(F1_ID), expires_at=in_a_year,
                            zones=(zone,), vaccination=vaccinated),
                  Decision.REFUSE, Reason.RISK_F1),
        Traveller("F0 case",
                  issue_cp1(issuer, PassKind.CROSS_PROVINCE_WORKER, holder_hash(F0_ID), expires_at=in_a_year,
                            zones=(zone,), test=fresh_test),
                  Decision.REFUSE, Reason.RISK_F0),
        Traveller("expired travel permit",
                  issue_cp1(issuer, PassKind.TRAVEL_PERMIT, holder_hash(DRIVER_ID),
                            issued_at=now - timedelta(days=30), expires_at=now - timedelta(days=2),
                            zones=(zone,), vaccination=vaccinated),
                  Decision.REFUSE, Reason.EXPIRED),
        Traveller("forged signature",
                  issue_cp1(forger, PassKind.CROSS_PROVINCE_WORKER, holder_hash(WORKER_ID), expires_at=in_a_year,
                            zones=(zone,), vaccination=vaccinated),
                  Decision.REFUSE, Reason.BAD_SIGNATURE),
        Traveller("VN vaccine passport (DCC)",
                  issue_hc1(dsc, vaccination_payload(family_name="Trần", given_name="Thị Bình",
                                                     date_of_birth=date(1990, 5, 17), dose=2, series=2,
                                                     last_dose=(now - timedelta(days=90)).date()),
                            issued_at=now - timedelta(days=80)),
                  Decision.PASS, Reason.OK),
        Traveller("not a pass (a web link)", "https://tokhaiyte.vn/khai-bao", Decision.CHECK, Reason.NOT_A_PASS),
    ]
