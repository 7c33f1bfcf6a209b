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
from sync.server.publish.risk_inputs import parse_row
from sync.wire.identifiers import IdentifierKey, holder_hash
from sync.wire.risk.types import RiskStatus

#: Made-up 12-digit citizen IDs; only their keyed values (identifier key) ever leave this module.
RESIDENT_ID = "001090000001"
F1_ID = "001090000002"
F0_ID = "001090000003"
DRIVER_ID = "036085000004"
WORKER_ID = "034092000005"
#: the certificate id of the EU DCC (vaccine passport) the health authority issued to the F0 case
F0_DCC_UCI = "URN:UVCI:01:VN:7Q3K9M2X8D4F1B6C"
#: what the province's risk list covers: every CP1 issuer and Viet Nam's DCCs (not other countries')
RISK_COVERS = ("CP1:*", "HC1:VN")


@dataclass(frozen=True)
class Traveller:
    """One person at the checkpoint: what they hold up and what the lamp must show."""

    label: str
    text: str
    expected: Decision
    expected_reason: Reason


def risk_rows() -> list[dict[str, str]]:
    """The rows the province publishes (as ``checkpoint risk publish`` reads them): one F0 case,
    listed by citizen id and by the UCI of their vaccine passport, and one F1 contact."""
    return [{"id": F0_ID, "uci": F0_DCC_UCI, "status": "F0"}, {"id": F1_ID, "status": "F1"}]


def risk_entries(id_key: IdentifierKey) -> list[tuple[bytes, RiskStatus | None, date | None]]:
    """The changes of ``risk_rows`` under the identifier key (the publisher's reading of the rows)."""
    return [change for n, row in enumerate(risk_rows(), 1) for change in parse_row(row, f"demo row {n}", [id_key])]


def _dcc(dsc: DocumentSigner, now: datetime, family: str, given: str, born: date, uci: str | None = None) -> str:
    payload = vaccination_payload(family_name=family, given_name=given, date_of_birth=born, dose=2, series=2,
                                  last_dose=(now - timedelta(days=90)).date(), country=dsc.country)
    if uci is not None:
        payload["v"][0]["ci"] = uci
    return issue_hc1(dsc, payload, issued_at=now - timedelta(days=80))


def travellers(issuer: IssuerKey, dsc: DocumentSigner, foreign_dsc: DocumentSigner, now: datetime, zone: str,
               id_key: IdentifierKey) -> list[Traveller]:
    """Nine travellers covering passes, refusals and hand checks.

    CP1 passes are signed with ``issuer`` and carry the keyed holder value (``id_key``); the vaccine
    passports (EU DCC) are signed by Viet Nam's document signer ``dsc`` and, for a visitor, by a
    country the risk list does not cover (``foreign_dsc``).
    """
    def holder(citizen_id: str) -> bytes:
        return holder_hash(citizen_id, id_key)

    vaccinated = Vaccination(doses=2, series_doses=2, last_dose=(now - timedelta(days=60)).date(),
                             product="EU/1/20/1528")
    fresh_test = TestResult(taken_at=now - timedelta(hours=20), negative=True, test_type="rapid-antigen")
    in_a_year = now + timedelta(days=365)
    forger = replace(issuer, private_key=ed25519.Ed25519PrivateKey.generate())  # same kid, wrong key
    return [
        Traveller("vaccinated resident",
                  issue_cp1(issuer, PassKind.RESIDENT, holder(RESIDENT_ID), expires_at=in_a_year,
                            zones=(zone,), vaccination=vaccinated),
                  Decision.PASS, Reason.OK),
        Traveller("F1 close contact",
                  issue_cp1(issuer, PassKind.RESIDENT, holder(F1_ID), expires_at=in_a_year,
                            zones=(zone,), vaccination=vaccinated),
                  Decision.REFUSE, Reason.RISK_F1),
        Traveller("F0 case",
                  issue_cp1(issuer, PassKind.CROSS_PROVINCE_WORKER, holder(F0_ID), expires_at=in_a_year,
                            zones=(zone,), test=fresh_test),
                  Decision.REFUSE, Reason.RISK_F0),
        Traveller("expired travel permit",
                  issue_cp1(issuer, PassKind.TRAVEL_PERMIT, holder(DRIVER_ID),
                            issued_at=now - timedelta(days=30), expires_at=now - timedelta(days=2),
                            zones=(zone,), vaccination=vaccinated),
                  Decision.REFUSE, Reason.EXPIRED),
        Traveller("forged signature",
                  issue_cp1(forger, PassKind.CROSS_PROVINCE_WORKER, holder(WORKER_ID), expires_at=in_a_year,
                            zones=(zone,), vaccination=vaccinated),
                  Decision.REFUSE, Reason.BAD_SIGNATURE),
        Traveller("VN vaccine passport (DCC)", _dcc(dsc, now, "Trần", "Thị Bình", date(1990, 5, 17)),
                  Decision.PASS, Reason.OK),
        Traveller("F0 case's vaccine passport",
                  _dcc(dsc, now, "Lê", "Văn Cường", date(1988, 2, 9), uci=F0_DCC_UCI),
                  Decision.REFUSE, Reason.RISK_F0),
        Traveller("DE passport (list: not DE)", _dcc(foreign_dsc, now, "Müller", "Anna", date(1979, 11, 3)),
                  Decision.CHECK, Reason.RISK_NOT_COVERED),
        Traveller("not a pass (a web link)", "https://tokhaiyte.vn/khai-bao", Decision.CHECK, Reason.NOT_A_PASS),
    ]
