"""The end-to-end demo path, in-process: server on loopback, device, daemon, sync."""

import io
from pathlib import Path

from edge.cli.demo import run_demo
from edge.verdict import Decision
from sync.server.settings import IDENTIFIER_KEY
from sync.wire.identifiers import IdentifierKey, keyed_certificate


def test_demo_end_to_end(tmp_path: Path):
    out = io.StringIO()
    outcome = run_demo(tmp_path, out)
    text = out.getvalue()
    assert outcome.mismatches == [], text
    assert len(outcome.events) == len(outcome.travellers) == 9
    assert {e.shown for e in outcome.events} == {Decision.PASS, Decision.REFUSE, Decision.CHECK}
    # the server holds exactly the device's records, and it could decrypt every holder hash
    assert [r["seq"] for r in outcome.server_records] == list(range(1, 10))
    holders = {e.verdict.holder_hash for e in outcome.events if e.verdict.holder_hash}
    # CP1 passes carry keyed values already; the server keys the DCC certificate hashes on ingest,
    # so its database holds no value that enumeration of ids or UCIs could match without the key
    id_key = IdentifierKey.load(tmp_path / "server" / IDENTIFIER_KEY)
    stored = {e.verdict.holder_hash if e.verdict.format == "CP1" else keyed_certificate(e.verdict.holder_hash, id_key)
              for e in outcome.events if e.verdict.holder_hash}
    assert {bytes(r["holder_hash"]) for r in outcome.server_records if r["holder_hash"]} == stored
    dcc_refs = {e.verdict.holder_hash for e in outcome.events if e.verdict.format == "HC1"}
    assert len(dcc_refs) == 3 and not dcc_refs & stored
    # the device log never holds a readable holder hash
    for record in outcome.device_records:
        assert all(h.hex() not in str(record) for h in holders)
    assert "the server holds exactly the device's records" in text
