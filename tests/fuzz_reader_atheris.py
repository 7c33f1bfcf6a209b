"""Coverage-guided atheris fuzzing of the pass reader (CP1 and HC1), run by tests/test_fuzz_atheris.py.

Usage: python tests/fuzz_reader_atheris.py CORPUS_DIR [libFuzzer flags such as -runs=N -max_total_time=S].
The seed corpus (the inner COSE bytes of a valid CP1 and a valid HC1 pass) is written to CORPUS_DIR
first. Every input is wrapped as QR text in one of four ways (chosen by its first byte) and must
yield a verdict with a reason: PassRejected from the reader, never another exception, and never
INTERNAL_ERROR from the verifier. An uncaught exception or a slow input makes libFuzzer fail.
"""

from __future__ import annotations

import contextlib
import sys
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import atheris
import base45

with atheris.instrument_imports(include=["edge"]):
    from edge.devtools.hc1_issuer import DocumentSigner, issue_hc1, vaccination_payload
    from edge.devtools.memory_risk import MemoryRiskList
    from edge.lists.policy import default_policy
    from edge.passes import hc1  # noqa: F401  (the reader imports it lazily: instrument it here)
    from edge.passes.cp1 import issue_cp1
    from edge.passes.credential import PassKind, Vaccination
    from edge.passes.issuer import IssuerKey
    from edge.passes.reader import read_pass
    from edge.passes.trust import TrustStore
    from edge.scan.clock import FixedClock
    from edge.scan.verifier import Verifier
    from edge.verdict import PassRejected, Reason
    from sync.wire.identifiers import IdentifierKey, holder_hash
    ID_KEY = IdentifierKey.generate()

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CP1_KEY = IssuerKey.generate("HN", "EdDSA", not_before=NOW - timedelta(days=1))
DSC = DocumentSigner.generate("VN", "ES256", not_before=NOW - timedelta(days=30))
TRUST = TrustStore([CP1_KEY.trusted_key(), DSC.trusted_key()])
VERIFIER = Verifier(trust=TRUST, risk=MemoryRiskList({}, published_at=NOW), policy=default_policy(),
                    clock=FixedClock(NOW))
PREFIXES = ("CP1:", "HC1:")


def seeds() -> list[bytes]:
    """The inner (decompressed) COSE bytes of one valid pass per format, tagged for mode 0 / 1."""
    cp1 = issue_cp1(CP1_KEY, PassKind.RESIDENT, holder_hash("1", ID_KEY), issued_at=NOW,
                    expires_at=NOW + timedelta(days=1), zones=["*"], vaccination=Vaccination(2, 2))
    hc1 = issue_hc1(DSC, vaccination_payload(family_name="Nguyen", given_name="An", date_of_birth=date(1985, 4, 2),
                                             dose=2, series=2, last_dose=date(2026, 1, 10)),
                    issued_at=NOW - timedelta(days=1))
    return [bytes([mode]) + zlib.decompress(base45.b45decode(text[4:])) for mode, text in enumerate((cp1, hc1))]


def to_text(data: bytes) -> str:
    """Mode = first byte % 4: CP1 / HC1 with zlib, HC1 without zlib, or the bytes as text."""
    mode, body = data[0] % 4, data[1:]
    if mode < 2:
        return PREFIXES[mode] + base45.b45encode(zlib.compress(body)).decode()
    if mode == 2:
        return "HC1:" + base45.b45encode(body).decode()
    return body.decode("utf-8", "replace")


def one_input(data: bytes) -> None:
    if not data:
        return
    text = to_text(data)
    with contextlib.suppress(PassRejected):
        read_pass(text, TRUST, NOW)
    verdict = VERIFIER.verify(text)
    if verdict.reason == Reason.INTERNAL_ERROR:
        raise AssertionError(f"verifier hit an internal error: {verdict.detail}")


def main() -> None:
    corpus = Path(sys.argv[1])
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
