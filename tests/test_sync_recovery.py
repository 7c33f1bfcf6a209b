"""Sync when state goes backwards or an answer lies: a lying server (a proxy that rewrites or forges
answers), a server database restored from a backup or emptied, a device card restored from an older
backup, gaps filled in any order. Real HTTP on loopback, SQLite and PostgreSQL; every scenario ends
with zero records lost and zero doubled."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import requests
from conftest import PG_DSN, append_samples, sample_verdict, token_for
from faultproxy import Fault, FaultProxy
from test_server_admin import _password_hash, bearer
from test_sync_push import make_client

from edge.device.sync_client import SyncError
from edge.scan.scanlog import ScanLog
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.server.storage import open_storage
from sync.wire.keyfiles import save_private_key

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def append_timed(log: ScanLog, n: int) -> None:
    """``n`` records one minute apart (after the ones already there)."""
    start = log.head_seq
    for i in range(start, start + n):
        log.append(sample_verdict(i), wall_time=T0 + timedelta(minutes=i), monotonic=float(i), clock_trusted=True,
                   policy_version=3, risk_version=12)


def lost_and_doubled(storage, log: ScanLog) -> tuple[int, int]:
    """Records this device still holds that the server lacks, and records the server holds twice."""
    held = [r["hash"].hex() for r in storage.records(log.device_id)]
    device = {r["hash"] for r in log.records()}
    return len(device - set(held)), len(held) - len(set(held))


def assert_chain_matches(storage, log: ScanLog) -> None:
    """The server's view of the device's chain holds every record the device holds, once."""
    chain = {r["seq"]: r["hash"].hex() for r in storage.chain_records(log.device_id)}
    for rec in log.records():
        assert chain.get(rec["seq"]) == rec["hash"], f"seq {rec['seq']} missing or different on the server"
    assert lost_and_doubled(storage, log) == (0, 0)
    assert storage.acked_seq(log.device_id) == log.head_seq == log.acked_seq


class Backup:
    """A copy of the server's database taken now, put back later (as an operator restores one)."""

    TABLES = ("devices", "records", "epochs", "lost_records")

    def __init__(self, db_url: str, tmp_path: Path):
        self.db_url, self.tmp_path = db_url, tmp_path

    def take(self) -> Backup:
        if self.db_url.startswith("sqlite:///"):
            src = sqlite3.connect(self.db_url.removeprefix("sqlite:///"))
            dst = sqlite3.connect(self.tmp_path / "backup.sqlite")
            src.backup(dst)
            src.close()
            dst.close()
        else:
            schema = self.db_url.split("schema=")[1]
            self.copy = f"b_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_DSN, autocommit=True) as db:
                db.execute(f'CREATE SCHEMA "{self.copy}"')
                for table in self.TABLES:
                    db.execute(f'CREATE TABLE "{self.copy}".{table} AS TABLE "{schema}".{table}')
        return self

    def restore(self) -> None:
        """Put the copy back (the server is stopped)."""
        if self.db_url.startswith("sqlite:///"):
            path = Path(self.db_url.removeprefix("sqlite:///"))
            for extra in ("-wal", "-shm"):
                Path(f"{path}{extra}").unlink(missing_ok=True)
            shutil.copy(self.tmp_path / "backup.sqlite", path)
            return
        schema = self.db_url.split("schema=")[1]
        with psycopg.connect(PG_DSN, autocommit=True) as db, db.transaction():
            for table in self.TABLES:
                db.execute(f'TRUNCATE "{schema}".{table}')
                db.execute(f'INSERT INTO "{schema}".{table} SELECT * FROM "{self.copy}".{table}')
            db.execute(f'DROP SCHEMA "{self.copy}" CASCADE')


def empty_database(db_url: str) -> None:
    """The server's database lost everything: a new one in its place (``checkpoint server init``)."""
    if db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for extra in ("", "-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)
    else:
        schema = db_url.split("schema=")[1]
        with psycopg.connect(PG_DSN, autocommit=True) as db:
            db.execute(f'DROP SCHEMA "{schema}" CASCADE')
    open_storage(db_url, create=True).close()


@pytest.fixture
def settings(db_url, server_x25519, publisher_key):
    return ServerSettings(db_url=db_url, encryption_key=server_x25519, publisher_key=publisher_key,
                          secure_cookies=False)


def serve(settings):
    srv = ServerThread(create_app(settings)).start()
    srv.storage = srv._server.config.app.state.storage
    return srv


def as_viewer(srv) -> dict[str, str]:
    """Headers of a logged-in viewer (the fleet API and the dashboard need a login)."""
    srv.storage.put_user("viewer", _password_hash(srv.storage), "viewer")
    return bearer(srv.url, "viewer")


def device_client(url, log, device_key, tmp_path, publisher_key, **kw):
    return make_client(url, log, device_key, publisher_keys=[publisher_key.public_key()],
                       certificate_path=tmp_path / "enrollment_certificate.txt", **kw)


# -- a lying server -----------------------------------------------------------------------------------

def _beyond_sent(request: bytes, answer: bytes | None) -> bytes:
    body = json.loads(answer)
    body["acked_seq"] = json.loads(request)["records"][-1]["seq"] + 1000
    return json.dumps(body).encode()


def _wrong_hash(request: bytes, answer: bytes | None) -> bytes:
    body = json.loads(answer)
    body["acked_hash"] = "ab" * 32
    return json.dumps(body).encode()


def _forged(request: bytes, answer: bytes | None) -> bytes:
    """A man in the middle who saw the records answers for a server that never got them."""
    batch = json.loads(request)
    last = batch["records"][-1]
    return json.dumps({"device_id": batch["device_id"], "acked_seq": last["seq"], "acked_hash": last["hash"],
                       "stored": len(batch["records"])}).encode()


LIES = {
    "ack_beyond_sent": ("rewrite", _beyond_sent, False),
    "ack_beyond_sent_pinned": ("rewrite", _beyond_sent, True),
    "wrong_hash": ("rewrite", _wrong_hash, False),
    "forged_without_server": ("forge", _forged, True),
}


@pytest.mark.parametrize("name", sorted(LIES))
def test_lying_answer_never_acknowledges(name, settings, scanlog, device_key, publisher_key, tmp_path):
    action, lie, pinned = LIES[name]
    srv = serve(settings)
    try:
        with FaultProxy("127.0.0.1", srv.port) as proxy:
            client = make_client(proxy.url, scanlog, device_key, batch_size=10,
                                 publisher_keys=[publisher_key.public_key()] if pinned else [])
            client.enroll(token_for(settings.db_url, "dev-1"))
            append_samples(scanlog, 44)
            proxy.add(Fault(action, match="POST /v1/push", lie=lie))
            with pytest.raises(SyncError, match="push answer refused"):
                client.push()
            assert len(proxy.applied) == 1
            # believed nothing beyond what the server really holds
            assert scanlog.acked_seq <= srv.storage.acked_seq("dev-1")
            assert scanlog.pending() == 44 - scanlog.acked_seq
            client.sync_until_done(deadline_s=30, sleep=lambda _s: None)  # retried later: converges
            assert_chain_matches(srv.storage, scanlog)
    finally:
        srv.stop()


# -- the server's database restored or emptied -----------------------------------------------------------

@pytest.mark.parametrize("device_pruned", [False, True], ids=["card_kept_all", "card_pruned"])
@pytest.mark.parametrize("loss", ["backup_after_enroll", "backup_before_enroll", "emptied"])
def test_server_database_goes_back(loss, device_pruned, settings, db_url, scanlog, device_key, publisher_key,
                                   tmp_path):
    """The server lost records: it tells the device what it holds, the device resends what it still
    has, and what the device pruned before the server got it back is flagged lost for good."""
    backup = Backup(db_url, tmp_path)
    srv = serve(settings)
    client = device_client(srv.url, scanlog, device_key, tmp_path, publisher_key, batch_size=25)
    if loss == "backup_before_enroll":
        backup.take()
    client.enroll(token_for(settings.db_url, "dev-1"))
    append_timed(scanlog, 60)
    client.sync_until_done(deadline_s=30, sleep=lambda _s: None)
    if loss == "backup_after_enroll":
        backup.take()
    append_timed(scanlog, 100)
    client.sync_until_done(deadline_s=30, sleep=lambda _s: None)
    assert scanlog.acked_seq == 160
    if device_pruned:  # retention removed acknowledged records 1..100 from the card
        scanlog.prune(retention_days=1, min_free_mb=0, now=T0 + timedelta(minutes=100, days=1))
        assert scanlog.oldest_seq == 101
    srv.stop()
    if loss == "emptied":
        empty_database(db_url)
    else:
        backup.restore()
    srv = serve(settings)
    try:
        client.server_url = srv.url
        append_timed(scanlog, 20)  # scans go on
        client.sync_until_done(deadline_s=30, sleep=lambda _s: None)
        assert_chain_matches(srv.storage, scanlog)
        viewer = as_viewer(srv)
        fleet = requests.get(f"{srv.url}/admin/api/fleet", headers=viewer, timeout=5).json()[0]
        held_before = 60 if loss == "backup_after_enroll" else 0
        expected_lost = (100 - held_before) if device_pruned else 0
        assert fleet["lost_for_good"] == expected_lost
        assert [r["seq"] for r in srv.storage.records("dev-1")] == \
            [*range(1, held_before + 1), *range(101 if device_pruned else held_before + 1, 181)]
        page = requests.get(srv.url + "/", headers=viewer, timeout=5).text
        assert f"{expected_lost} records lost for good" in page
        if expected_lost:
            assert f"seq {held_before + 1}-100: {expected_lost} pruned on the device before upload" in page
    finally:
        srv.stop()


# -- the device's card restored from an older backup --------------------------------------------------------

def test_restored_card_forks_a_new_epoch(settings, db_url, tmp_path, server_x25519, device_key, publisher_key):
    path = tmp_path / "card" / "scanlog.sqlite"
    log = ScanLog(path, device_id="dev-1", boot_id="a", server_encryption_key=server_x25519.public_key())
    srv = serve(settings)
    try:
        client = device_client(srv.url, log, device_key, tmp_path, publisher_key, batch_size=30)
        client.enroll(token_for(settings.db_url, "dev-1"))
        append_samples(log, 50)
        client.sync_until_done(deadline_s=30, sleep=lambda _s: None)
        log.close()
        shutil.copy(path, tmp_path / "card-backup.sqlite")  # last night's image of the card
        log = ScanLog(path, device_id="dev-1", boot_id="a", server_encryption_key=server_x25519.public_key())
        append_samples(log, 50, start=50)
        client = device_client(srv.url, log, device_key, tmp_path, publisher_key, batch_size=30)
        client.sync_until_done(deadline_s=30, sleep=lambda _s: None)
        before = [r["hash"] for r in srv.storage.records("dev-1")]
        assert len(before) == 100
        log.close()
        shutil.copy(tmp_path / "card-backup.sqlite", path)  # the card is re-imaged from the backup
        log = ScanLog(path, device_id="dev-1", boot_id="b", server_encryption_key=server_x25519.public_key())
        append_samples(log, 20, start=1000)  # different scans under seqs 51..70
        client = device_client(srv.url, log, device_key, tmp_path, publisher_key, batch_size=30)
        client.sync_until_done(deadline_s=30, sleep=lambda _s: None)  # no endless 409
        assert_chain_matches(srv.storage, log)
        assert [r["hash"] for r in srv.storage.records("dev-1", epoch=0)] == before  # nothing lost
        assert [r["seq"] for r in srv.storage.records("dev-1", epoch=1)] == list(range(51, 71))
        viewer = as_viewer(srv)
        fleet = requests.get(f"{srv.url}/admin/api/fleet", headers=viewer, timeout=5).json()[0]
        assert fleet["open_forks"] == 1 and fleet["epoch"] == 1 and fleet["forks"][0]["base_seq"] == 50
        assert "OPEN: log went back" in requests.get(srv.url + "/", headers=viewer, timeout=5).text
        append_samples(log, 5, start=2000)  # it keeps syncing in its new epoch
        client.sync_until_done(deadline_s=30, sleep=lambda _s: None)
        assert_chain_matches(srv.storage, log)
    finally:
        srv.stop()
    server_dir = tmp_path / "server"
    save_private_key(server_dir / "keys/server_x25519.pem", server_x25519)
    out = subprocess.run([sys.executable, "-m", "edge.cli", "server", "--data-dir", str(server_dir), "--db", db_url,
                          "resolve-fork", "dev-1", "--by", "ops-anna"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "resolved 1 chain fork(s) of dev-1" in out.stdout
    storage = open_storage(db_url)
    try:
        summary = storage.fleet()[0]
        assert summary.open_forks == 0 and summary.forks[0].resolved_by == "ops-anna"
        assert len(storage.records("dev-1")) == 125  # both versions kept
    finally:
        storage.close()
    log.close()


# -- chain links whichever order the records arrive ---------------------------------------------------------

@contextlib.contextmanager
def _server_with_a_gap(db_url, server_x25519, tmp_path: Path, *, shared: int, real_after: int,
                       other_after: int) -> Iterator[tuple]:
    """Two cards of dev-1 with the same first ``shared`` records, then different ones (the other
    card an image of the real one taken after ``shared``), and a server holding the real card's
    seqs 1-3 and 20-21 (4-19 not yet): yields (storage, the real records, the other card,
    ``ingest(records, **kw)`` into that server)."""
    from sync.server.ingest import ingest
    from sync.wire.sealed import HolderOpener
    key = server_x25519.public_key()
    real = ScanLog(tmp_path / "real.sqlite", device_id="dev-1", boot_id="a", server_encryption_key=key)
    append_samples(real, shared)
    real.close()
    shutil.copy(tmp_path / "real.sqlite", tmp_path / "other.sqlite")
    real = ScanLog(tmp_path / "real.sqlite", device_id="dev-1", boot_id="a", server_encryption_key=key)
    other = ScanLog(tmp_path / "other.sqlite", device_id="dev-1", boot_id="b", server_encryption_key=key)
    append_samples(real, real_after, start=shared)
    append_samples(other, other_after, start=500)
    storage = open_storage(db_url)
    opener = HolderOpener(server_x25519)
    try:
        storage.enroll("dev-1", b"k" * 32)
        recs = real.records()
        assert ingest(storage, opener, "dev-1", recs[:3]).acked_seq == 3
        assert ingest(storage, opener, "dev-1", recs[19:21]).acked_seq == 3  # 20-21 first, beyond a gap
        yield storage, recs, other, lambda records, **kw: ingest(storage, opener, "dev-1", records, **kw)
    finally:
        storage.close()
        real.close()
        other.close()


def test_gap_filled_by_records_that_do_not_lead_on_is_refused(db_url, server_x25519, tmp_path):
    from sync.server.ingest import IngestError
    with _server_with_a_gap(db_url, server_x25519, tmp_path, shared=3, real_after=18, other_after=16) as (
            storage, recs, other, ingest):
        with pytest.raises(IngestError) as err:
            ingest(other.records(start=4))  # 4..19 follow seq 3 but not the real 20
        assert (err.value.status, err.value.error) == (409, "chain_broken")
        assert storage.acked_seq("dev-1") == 3 and len(storage.records("dev-1")) == 5
        assert ingest(recs[3:19]).acked_seq == 21  # the real ones close the gap


@pytest.fixture
def gap_then_restored_card(db_url, server_x25519, tmp_path):
    """The server with a gap, and a re-imaged card that agrees with the real one up to 19 and
    differs from 20 on (20-25)."""
    with _server_with_a_gap(db_url, server_x25519, tmp_path, shared=19, real_after=2, other_after=6) as parts:
        yield parts


def test_a_fork_beyond_a_gap_starts_at_the_contiguous_head(gap_then_restored_card):
    """The re-imaged card's 4-25 once forked at 19: acked_seq claimed 4-19 (never held) and the
    retry filed them under the new epoch below its base, where no chain view looks. The fork is now
    at 3, the last seq the chains are proven to share, and a batch that does not reach back to it
    is answered with what is held."""
    storage, recs, restored, ingest = gap_then_restored_card
    # starting past the head, the batch proves nothing about 4..9: nothing stored, the device rewinds
    early = ingest(restored.records(start=10))
    assert (early.acked_seq, early.stored, early.epoch) == (3, 0, 0) and len(storage.records("dev-1")) == 5
    result = ingest(restored.records(start=4))
    assert (result.acked_seq, result.epoch, result.acked_hash) == (25, 1, restored.records()[-1]["hash"])
    fork = storage.fleet()[0].forks[0]
    assert fork.base_seq == 3
    chain = {r["seq"]: r["hash"].hex() for r in storage.chain_records("dev-1")}
    assert chain == {r["seq"]: r["hash"] for r in restored.records()}  # every record of the card, once
    held_before = {(r["seq"], r["hash"]) for r in storage.records("dev-1", epoch=0)}
    assert held_before == {(r["seq"], bytes.fromhex(r["hash"])) for r in recs[:3] + recs[19:21]}  # kept
    assert all(r["seq"] > fork.base_seq for r in storage.records("dev-1", epoch=1))


def test_a_card_that_pruned_before_a_fork_beyond_a_gap_notes_the_pruned_seqs_lost(gap_then_restored_card):
    """As above, from a card that no longer holds seqs 1-9: it cannot resend from the head, so the
    fork starts there and 4-9 are noted lost in the new epoch; nothing is asked of it again."""
    storage, recs, restored, ingest = gap_then_restored_card
    result = ingest(restored.records(start=10), pruned_through=9)
    assert (result.acked_seq, result.epoch) == (25, 1)
    summary = storage.fleet()[0]
    assert summary.forks[0].base_seq == 3 and summary.lost_for_good == 6
    chain = {r["seq"]: r["hash"].hex() for r in storage.chain_records("dev-1")}
    assert chain == {**{r["seq"]: r["hash"] for r in recs[:3]},
                     **{r["seq"]: r["hash"] for r in restored.records(start=10)}}


def test_readmission_needs_the_certified_key(settings, db_url, scanlog, device_key, publisher_key, tmp_path):
    """A copied certificate is useless without the device's key, and a certificate the server's
    publisher key did not sign is refused: re-admission is no way around enrollment."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sync.server.app import enrollment_certificate
    srv = serve(settings)
    try:
        client = device_client(srv.url, scanlog, device_key, tmp_path, publisher_key)
        client.enroll(token_for(settings.db_url, "dev-1"))
        stolen = (tmp_path / "enrollment_certificate.txt").read_text()
    finally:
        srv.stop()
    empty_database(db_url)
    srv = serve(settings)
    try:
        client.server_url = srv.url
        thief_dir = tmp_path / "thief"
        thief_dir.mkdir()
        (thief_dir / "enrollment_certificate.txt").write_text(stolen)
        thief = device_client(srv.url, scanlog, Ed25519PrivateKey.generate(), thief_dir, publisher_key)
        assert not thief._readmit()
        other = ServerSettings(db_url=settings.db_url, encryption_key=settings.encryption_key,
                               publisher_key=Ed25519PrivateKey.generate())
        raw = device_key.public_key().public_bytes_raw()
        (tmp_path / "enrollment_certificate.txt").write_text(enrollment_certificate(other, "dev-1", raw))
        assert not client._readmit()  # signed by someone else's publisher key
        assert srv.storage.device_key("dev-1") is None
        (tmp_path / "enrollment_certificate.txt").write_text(stolen)
        assert client._readmit() and srv.storage.device_key("dev-1") == raw
    finally:
        srv.stop()


OLD_SCHEMA = """
CREATE TABLE devices (device_id TEXT PRIMARY KEY, public_key {blob} NOT NULL, enrolled_at TEXT NOT NULL,
    last_seen TEXT, acked_seq BIGINT NOT NULL DEFAULT 0, records BIGINT NOT NULL DEFAULT 0);
CREATE TABLE records (device_id TEXT NOT NULL, seq BIGINT NOT NULL, wall_time TEXT NOT NULL,
    monotonic {real} NOT NULL, boot_id TEXT NOT NULL, clock_trusted {bool} NOT NULL, format TEXT, kind TEXT,
    holder_hash {blob}, holder_enc {blob}, decision TEXT NOT NULL, reason TEXT NOT NULL, policy_version TEXT,
    risk_version TEXT, prev_hash {blob} NOT NULL, hash {blob} NOT NULL, PRIMARY KEY (device_id, seq));
"""


def test_database_from_before_epochs_is_upgraded(db_url, server_x25519, scanlog):
    """A server database made before chain epochs keeps its records and goes on ingesting."""
    from sync.server.ingest import ingest
    from sync.wire.sealed import HolderOpener
    append_samples(scanlog, 8)
    recs = scanlog.records()
    # as that server left it: no epochs, and no schema_migrations (it came before migrations)
    drop = ("DROP TABLE devices; DROP TABLE records; DROP TABLE epochs; DROP TABLE lost_records; "
            "DROP TABLE schema_migrations;")
    if db_url.startswith("sqlite:///"):
        db = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        db.executescript(drop + OLD_SCHEMA.format(blob="BLOB", real="REAL", bool="INTEGER"))
        put = db.execute
    else:
        schema = db_url.split("schema=")[1]
        db = psycopg.connect(PG_DSN, autocommit=True)
        db.execute(f'SET search_path TO "{schema}"')
        db.execute(drop + OLD_SCHEMA.format(blob="BYTEA", real="DOUBLE PRECISION", bool="BOOLEAN"))

        def put(sql, params):
            return db.execute(sql.replace("?", "%s"), params)
    put("INSERT INTO devices (device_id, public_key, enrolled_at, acked_seq, records) VALUES (?, ?, ?, ?, ?)",
        ("dev-1", b"k" * 32, "2026-03-01T00:00:00+00:00", 5, 5))
    for r in recs[:5]:
        put("INSERT INTO records (device_id, seq, wall_time, monotonic, boot_id, clock_trusted, decision, reason, "
            "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("dev-1", r["seq"], r["wall_time"], r["monotonic"], r["boot_id"], r["clock_trusted"], r["decision"],
             r["reason"], bytes.fromhex(r["prev_hash"]), bytes.fromhex(r["hash"])))
    if isinstance(db, sqlite3.Connection):
        db.commit()
    db.close()
    storage = open_storage(db_url)
    try:
        assert [r["epoch"] for r in storage.records("dev-1")] == [0] * 5
        assert ingest(storage, HolderOpener(server_x25519), "dev-1", recs[3:]).acked_seq == 8  # links to the old rows
        assert [r["hash"].hex() for r in storage.chain_records("dev-1")] == [r["hash"] for r in recs]
    finally:
        storage.close()
