"""The end-to-end demo path, in-process: server on loopback, device, daemon, sync."""

import io
from pathlib import Path

from edge.cli.demo import run_demo
from edge.verdict import Decision, Reason
from sync.server.settings import IDENTIFIER_KEY, ServerSettings
from sync.server.storage import open_storage
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
    # the F1 trace: the F0 case's visit found, contacts from this run's scans, published as F1 through
    # the signed risk list, and the resident who passed before is refused at the next scan
    traced = outcome.trace
    assert traced is not None and traced.problems == [] and traced.visits == 1
    assert traced.contacts[0] != "F0 case" and "vaccinated resident" in traced.contacts
    assert "F1 close contact" in traced.contacts and "not a pass (a web link)" not in traced.contacts  # no holder
    assert "vaccinated resident" in traced.dry_run_new and traced.risk_version == 2
    assert set(traced.unlistable) == {"VN vaccine passport (DCC)", "F0 case's vaccine passport",
                                      "DE passport (list: not DE)"}
    assert ("risk", 2) in traced.installed
    assert [(e.shown, e.verdict.reason) for e in traced.rescans] == [(Decision.REFUSE, Reason.RISK_F1)]
    first = next(e for e in outcome.events if e.text == traced.rescans[0].text)
    assert first.shown is Decision.PASS  # the same pass was green before the trace
    storage = open_storage(ServerSettings.from_data_dir(tmp_path / "server").db_url)
    try:
        trail = [(e.actor, e.action, e.outcome) for e in storage.audit_log(50)]
    finally:
        storage.close()
    assert ("user:tracer", "trace", "ok") in trail and ("user:tracer", "publish_f1", "dry_run") in trail
    assert ("user:tracer", "publish_f1", "ok") in trail
    assert "[6/7] F1 tracing" in text and "now REFUSE/risk_f1" in text
