"""Our HC1 issuer round-trips through the EU DCC reader (the path of Vietnam's vaccine passport)."""

from datetime import UTC, date, datetime, timedelta

import pytest

from edge.devtools.hc1_issuer import USAGE_TEST, DocumentSigner, issue_hc1, vaccination_payload
from edge.passes.credential import PassFormat, PassKind
from edge.passes.hc1 import read_hc1
from edge.passes.trust import TrustStore
from edge.verdict import PassRejected, Reason

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _payload() -> dict:
    return vaccination_payload(family_name="Nguyễn", given_name="Văn An", date_of_birth=date(1985, 4, 2),
                               dose=2, series=2, last_dose=date(2026, 1, 10))


@pytest.mark.parametrize("algorithm", ["PS256", "ES256"])
def test_issued_dcc_reads_back(algorithm: str):
    signer = DocumentSigner.generate("VN", algorithm, not_before=NOW - timedelta(days=30))
    text = issue_hc1(signer, _payload(), issued_at=NOW - timedelta(days=1))
    assert text.startswith("HC1:")
    cred = read_hc1(text, TrustStore([signer.trusted_key()]), NOW)
    assert cred.format == PassFormat.HC1 and cred.kind == PassKind.DCC_VACCINATION
    assert cred.issuer == "VN" and cred.kid == signer.kid
    assert cred.vaccination is not None and (cred.vaccination.doses, cred.vaccination.series_doses) == (2, 2)
    assert len(cred.risk_keys) >= 2 and all(len(k) == 16 for k in cred.risk_keys)


def test_signer_without_vaccination_usage_is_refused():
    signer = DocumentSigner.generate("VN", "ES256", not_before=NOW - timedelta(days=30), usages=(USAGE_TEST,))
    text = issue_hc1(signer, _payload(), issued_at=NOW - timedelta(days=1))
    with pytest.raises(PassRejected) as err:
        read_hc1(text, TrustStore([signer.trusted_key()]), NOW)
    assert err.value.reason == Reason.ISSUER_KEY_USAGE


def test_transliteration_follows_icao():
    payload = _payload()
    assert payload["nam"]["fnt"] == "NGUYEN" and payload["nam"]["gnt"] == "VAN<AN"
