"""The end-to-end demo path, in-process: server on loopback, device, daemon, sync."""

import io
from pathlib import Path

from edge.cli.demo import run_demo
from edge.verdict import Decision


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
    assert {bytes(r["holder_hash"]) for r in outcome.server_records if r["holder_hash"]} == holders
    # the device log never holds a readable holder hash
    for record in outcome.device_records:
        assert all(h.hex() not in str(record) for h in holders)
    assert "the server holds exactly the device's records" in text
