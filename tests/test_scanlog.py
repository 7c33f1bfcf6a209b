import itertools
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from conftest import append_samples, sample_verdict

from edge.scan.scanlog import ScanLog, ScanLogError
from sync.wire.protocol import GENESIS, WireRecord, canonical_fields, record_hash
from sync.wire.sealed import HolderOpener, holder_aad


def test_append_is_durable_chained_and_sealed(scanlog, server_x25519, tmp_path):
    seqs = append_samples(scanlog, 5)
    assert seqs == [1, 2, 3, 4, 5]
    assert scanlog.verify_chain() == 5
    recs = scanlog.records()
    assert bytes.fromhex(recs[0]["prev_hash"]) == GENESIS
    for a, b in itertools.pairwise(recs):
        assert b["prev_hash"] == a["hash"]
    for rec in recs:
        WireRecord.model_validate(rec)
        assert record_hash(bytes.fromhex(rec["prev_hash"]), canonical_fields(rec)).hex() == rec["hash"]
        assert rec["boot_id"] == "boot-a" and rec["policy_version"] == "3" and rec["risk_version"] == "12"
    # the server (and only the server) can read the holder hash back
    expected = sample_verdict(0).holder_hash
    assert HolderOpener(server_x25519).open(bytes.fromhex(recs[0]["holder_enc"]), holder_aad("dev-1", 1)) == expected
    assert recs[2]["holder_enc"] is None  # NOT_A_PASS has no holder
    raw = (tmp_path / "scanlog.sqlite").read_bytes() + (tmp_path / "scanlog.sqlite-wal").read_bytes()
    assert expected not in raw
    # a second connection (another process) sees the committed record at once
    other = sqlite3.connect(tmp_path / "scanlog.sqlite")
    assert other.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 5
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_records_are_append_only(scanlog, tmp_path):
    append_samples(scanlog, 3)
    db = sqlite3.connect(tmp_path / "scanlog.sqlite", isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE records SET decision='PASS' WHERE seq=2")
    with pytest.raises(sqlite3.IntegrityError, match="not acknowledged"):
        db.execute("DELETE FROM records WHERE seq=1")
    with pytest.raises(sqlite3.IntegrityError, match="backwards"):
        scanlog.acknowledge(2)
        db.execute("UPDATE sync_state SET acked_seq=1")
    db.execute("DELETE FROM records WHERE seq=1")  # acknowledged: allowed
    assert [r["seq"] for r in scanlog.records()] == [2, 3]


def test_tampering_is_detected(scanlog, tmp_path):
    append_samples(scanlog, 4)
    db = sqlite3.connect(tmp_path / "scanlog.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER records_append_only")
    db.execute("UPDATE records SET decision='PASS' WHERE seq=3")
    with pytest.raises(ScanLogError, match="altered"):
        scanlog.verify_chain()


def test_ack_moves_forward_only_and_not_past_head(scanlog):
    append_samples(scanlog, 10)
    assert scanlog.pending() == 10
    assert scanlog.acknowledge(4) == 4
    assert scanlog.acknowledge(2) == 4
    assert scanlog.acknowledge(99) == 10
    assert scanlog.pending() == 0 and scanlog.unsent() == []
    assert scanlog.last_success_at() is not None


def test_unsent_batches_in_order(scanlog):
    append_samples(scanlog, 7)
    scanlog.acknowledge(2)
    assert [r["seq"] for r in scanlog.unsent(3)] == [3, 4, 5]


def test_reopen_continues_sequence_and_rejects_other_device(tmp_path, server_x25519):
    path = tmp_path / "log.sqlite"
    with ScanLog(path, device_id="d", boot_id="b1", server_encryption_key=server_x25519.public_key()) as log:
        append_samples(log, 3)
    with ScanLog(path, device_id="d", boot_id="b2", server_encryption_key=server_x25519.public_key()) as log:
        assert append_samples(log, 2) == [4, 5]
        assert log.verify_chain() == 5
        assert log.records()[-1]["boot_id"] == "b2"
    with pytest.raises(ScanLogError, match="belongs to device"):
        ScanLog(path, device_id="other", boot_id="b", server_encryption_key=server_x25519.public_key())


def test_retention_prunes_only_acknowledged_and_keeps_head(scanlog):
    append_samples(scanlog, 6)  # wall time 2026-03-01
    later = datetime(2026, 6, 1, tzinfo=UTC)
    res = scanlog.prune(retention_days=30, min_free_mb=0, now=later)
    assert res.deleted == 0  # nothing acknowledged yet
    scanlog.acknowledge(4)
    res = scanlog.prune(retention_days=30, min_free_mb=0, now=later)
    assert res.deleted == 4 and [r["seq"] for r in scanlog.records()] == [5, 6]
    scanlog.acknowledge(6)
    scanlog.prune(retention_days=30, min_free_mb=0, now=later)
    assert [r["seq"] for r in scanlog.records()] == [6]  # the head anchors the chain
    assert append_samples(scanlog, 1) == [7]
    assert scanlog.verify_chain() == 2
    # records younger than the retention stay
    assert scanlog.prune(retention_days=365, min_free_mb=0, now=later).deleted == 0


def test_retention_never_prunes_from_the_middle(scanlog):
    """A wall clock that went back and forth: retention deletes only the oldest records by sequence,
    up to the first one still within retention, never a record in the middle of the log."""
    base = datetime(2026, 3, 1, tzinfo=UTC)
    offsets_days = [0, 1, 2, 40, 3, -30, 41, 42]  # seq 4 and 7.. are recent; seq 6 came from a clock set back
    for i, days in enumerate(offsets_days):
        scanlog.append(sample_verdict(i), wall_time=base + timedelta(days=days), monotonic=float(i),
                       clock_trusted=False)
    scanlog.acknowledge(8)
    res = scanlog.prune(retention_days=10, min_free_mb=0, now=base + timedelta(days=45))
    assert [r["seq"] for r in scanlog.records()] == [4, 5, 6, 7, 8] and res.deleted == 3
    assert scanlog.verify_chain() == 5


def test_ack_rewinds_only_on_purpose(scanlog):
    """The server proved it lost records: the acknowledgement goes back (records are resent and kept
    from pruning); any other backwards write is refused by the log itself."""
    append_samples(scanlog, 10)
    scanlog.acknowledge(8)
    assert scanlog.rewind_ack(3) == 3 and scanlog.pending() == 7
    assert scanlog.prune(retention_days=0, min_free_mb=0, now=datetime(2027, 1, 1, tzinfo=UTC)).deleted == 3
    assert [r["seq"] for r in scanlog.unsent(100)] == list(range(4, 11))
    db = sqlite3.connect(scanlog.path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="cannot go backwards"):
        db.execute("UPDATE sync_state SET acked_seq = 1")
    db.close()


def test_disk_low_prunes_oldest_acked_then_flags(tmp_path, server_x25519, caplog):
    free = {"bytes": 0}
    log = ScanLog(tmp_path / "l.sqlite", device_id="d", boot_id="b",
                  server_encryption_key=server_x25519.public_key(), free_bytes=lambda _p: free["bytes"])
    append_samples(log, 20)
    log.acknowledge(8)
    res = log.prune(retention_days=3650, min_free_mb=10**6, now=datetime(2026, 3, 2, tzinfo=UTC), chunk=3)
    assert res.deleted == 8 and res.disk_low and log.disk_low
    assert next(r["seq"] for r in log.records()) == 9 and log.count() == 12
    assert "event=scanlog_disk_low" in caplog.text
    assert log.health()["disk_low"] is True
    free["bytes"] = 10**12
    assert not log.prune(retention_days=3650, min_free_mb=1, now=datetime(2026, 3, 2, tzinfo=UTC)).disk_low
    log.close()


def test_concurrent_threads_get_unique_contiguous_seqs(scanlog):
    import threading
    out: list[int] = []
    lock = threading.Lock()

    def work():
        for s in append_samples(scanlog, 25):
            with lock:
                out.append(s)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == list(range(1, 101))
    assert scanlog.verify_chain() == 100


def test_naive_wall_time_is_taken_as_utc(scanlog):
    scanlog.append(sample_verdict(0), wall_time=datetime(2026, 1, 2, 3, 4, 5), monotonic=1.0,
                   clock_trusted=False)
    rec = scanlog.records()[0]
    assert rec["wall_time"] == "2026-01-02T03:04:05.000000+00:00" and rec["clock_trusted"] is False
    assert datetime.fromisoformat(rec["wall_time"]) - datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) == timedelta(0)


def test_kill_9_during_writes_loses_no_shown_record(tmp_path, server_x25519):
    """A writer prints each seq only after append() returned (= lamp shown); kill -9 it mid-stream."""
    from sync.wire.keyfiles import save_public_key
    key_path = tmp_path / "srv.pem"
    save_public_key(key_path, server_x25519.public_key())
    script = textwrap.dedent(f"""
        from datetime import datetime, UTC
        from sync.wire.keyfiles import load_x25519_public
        from edge.scan.scanlog import ScanLog
        from edge.verdict import Verdict, Decision, Reason
        log = ScanLog({str(tmp_path / 'k.sqlite')!r}, device_id='d', boot_id='b',
                      server_encryption_key=load_x25519_public(__import__('pathlib').Path({str(key_path)!r})))
        i = 0
        while True:
            seq = log.append(Verdict(Decision.PASS, Reason.OK, holder_hash=bytes(16)),
                             wall_time=datetime.now(UTC), monotonic=float(i), clock_trusted=True)
            print(seq, flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    shown = []
    assert proc.stdout is not None
    for line in proc.stdout:
        shown.append(int(line))
        if len(shown) >= 150:
            proc.kill()
            break
    proc.wait(timeout=10)
    shown += [int(x) for x in proc.stdout.read().split()]
    log = ScanLog(tmp_path / "k.sqlite", device_id="d", boot_id="b2", server_encryption_key=server_x25519.public_key())
    on_disk = {r["seq"] for r in log.records()}
    assert set(shown) <= on_disk
    assert log.verify_chain() == len(on_disk) == log.head_seq
    log.close()
