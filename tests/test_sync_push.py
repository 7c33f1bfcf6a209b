"""Push path end to end over real HTTP on loopback, against SQLite and PostgreSQL storage."""

import json

import pytest
import requests
from conftest import append_samples, sample_verdict, token_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.device.sync_client import SyncClient, SyncError
from edge.scan.scanlog import ScanLog
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.server.storage import open_storage
from sync.wire.protocol import API, HEADER_DEVICE, HEADER_SIGNATURE, b64, request_signing_bytes


@pytest.fixture
def server(db_url, server_x25519, publisher_key):
    settings = ServerSettings(db_url=db_url, encryption_key=server_x25519, publisher_key=publisher_key)
    with ServerThread(create_app(settings)) as srv:
        srv.storage = srv._server.config.app.state.storage
        srv.token = token_for(db_url, "dev-1")  # what provisioning wrote into dev-1's bundle
        yield srv


def make_client(url, scanlog, key, **kw) -> SyncClient:
    opts = {"batch_size": 7, "timeout_s": 5, "backoff_base_s": 0.01, "backoff_max_s": 0.2, **kw}
    return SyncClient(url, scanlog, key, **opts)


def assert_server_matches(storage, log: ScanLog, holders: dict[int, bytes] | None = None):
    """The server holds exactly the device's records: same seqs, same hashes, no gap or duplicate."""
    device = log.records()
    held = storage.records(log.device_id)
    assert [r["seq"] for r in held] == [r["seq"] for r in device] == list(range(1, len(device) + 1))
    assert [r["hash"].hex() for r in held] == [r["hash"] for r in device]
    assert storage.acked_seq(log.device_id) == log.head_seq
    for rec in held:
        if holders is not None:
            assert rec["holder_hash"] == holders.get(rec["seq"])


def test_enroll_push_idempotent_and_decrypted(server, scanlog, device_key):
    client = make_client(server.url, scanlog, device_key)
    assert client.enroll(server.token) == 0
    append_samples(scanlog, 30)
    result = client.run_once()
    assert result.pushed == 30 and result.acked_seq == 30 and scanlog.pending() == 0
    holders = {i + 1: sample_verdict(i).holder_hash for i in range(30)}
    assert_server_matches(server.storage, scanlog, holders)
    # nothing twice: resending everything changes nothing and is answered with the same ack
    body = json.dumps({"device_id": "dev-1", "records": scanlog.records()}).encode()
    sig = b64(device_key.sign(request_signing_bytes("POST", f"{API}/push", body)))
    resp = requests.post(server.url + f"{API}/push", data=body, timeout=5,
                         headers={HEADER_DEVICE: "dev-1", HEADER_SIGNATURE: sig})
    assert resp.status_code == 200 and resp.json()["acked_seq"] == 30 and resp.json()["stored"] == 0
    assert resp.json()["duplicates"] == 30
    assert_server_matches(server.storage, scanlog, holders)
    fleet = server.storage.fleet()
    assert fleet[0].records == 30 and fleet[0].verdicts == {"PASS": 10, "REFUSE": 10, "CHECK": 10}


def test_enrollment_rules(server, scanlog, device_key):
    client = make_client(server.url, scanlog, device_key)
    with pytest.raises(SyncError) as err:
        client.enroll("wrong-but-long-enough-" + "x" * 20)
    assert err.value.status == 401
    append_samples(scanlog, 2)
    with pytest.raises(SyncError) as err:
        client.push()  # not enrolled
    assert err.value.status == 401 and scanlog.pending() == 2
    client.enroll(server.token)
    client.enroll(server.token)  # the same key again (an answer lost on the way): fine
    other = make_client(server.url, scanlog, Ed25519PrivateKey.generate())
    with pytest.raises(SyncError) as err:
        other.enroll(server.token)  # the token is spent: another key gets nothing
    assert err.value.status == 401
    with pytest.raises(SyncError) as err:
        other.push()  # impostor signature
    assert err.value.status == 401 and scanlog.pending() == 2


def test_tampered_record_refused_and_nothing_acked(server, scanlog, device_key, tmp_path):
    import sqlite3
    client = make_client(server.url, scanlog, device_key)
    client.enroll(server.token)
    append_samples(scanlog, 10)
    db = sqlite3.connect(tmp_path / "scanlog.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER records_append_only")
    db.execute("UPDATE records SET decision='PASS' WHERE seq=3")
    with pytest.raises(SyncError) as err:
        client.run_once()
    assert err.value.status == 409 and "record_altered" in str(err.value)
    assert scanlog.acked_seq == 0 and server.storage.acked_seq("dev-1") == 0


def test_restart_mid_batch_resends_and_converges(server, scanlog, device_key, tmp_path, server_x25519):
    client = make_client(server.url, scanlog, device_key, batch_size=5)
    client.enroll(server.token)
    append_samples(scanlog, 12)
    # the server stored a batch, but the device "crashed" before recording the answer
    body = json.dumps({"device_id": "dev-1", "records": scanlog.unsent(5)}).encode()
    sig = b64(device_key.sign(request_signing_bytes("POST", f"{API}/push", body)))
    requests.post(server.url + f"{API}/push", data=body, headers={HEADER_DEVICE: "dev-1", HEADER_SIGNATURE: sig},
                  timeout=5).raise_for_status()
    scanlog.close()
    log2 = ScanLog(tmp_path / "scanlog.sqlite", device_id="dev-1", boot_id="boot-b",
                   server_encryption_key=server_x25519.public_key())
    assert log2.acked_seq == 0
    append_samples(log2, 3, start=12)
    result = make_client(server.url, log2, device_key, batch_size=5).run_once()
    assert result.acked_seq == 15
    assert_server_matches(server.storage, log2)
    log2.close()


def test_storage_answers_highest_contiguous(db_url, server_x25519, scanlog):
    from sync.server.ingest import ingest
    from sync.wire.protocol import WireRecord
    from sync.wire.sealed import HolderOpener
    storage = open_storage(db_url)
    storage.enroll("dev-1", b"k" * 32)
    append_samples(scanlog, 9)
    recs = [WireRecord.model_validate(r) for r in scanlog.records()]
    opener = HolderOpener(server_x25519)
    assert ingest(storage, opener, "dev-1", recs[5:9]).acked_seq == 0  # held beyond a gap
    assert storage.fleet()[0].held_beyond_gap == 4
    assert ingest(storage, opener, "dev-1", recs[0:3]).acked_seq == 3
    res = ingest(storage, opener, "dev-1", recs[2:6])  # 3 and 6 are held already: 4 and 5 fill the gap
    assert (res.acked_seq, res.stored, res.duplicates) == (9, 2, 2)
    assert storage.fleet()[0].held_beyond_gap == 0 and storage.fleet()[0].records == 9
    storage.close()


def test_undecryptable_holder_is_kept_sealed(db_url, scanlog):
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from sync.server.ingest import ingest
    from sync.wire.protocol import WireRecord
    from sync.wire.sealed import HolderOpener
    storage = open_storage(db_url)
    storage.enroll("dev-1", b"k" * 32)
    append_samples(scanlog, 2)
    recs = [WireRecord.model_validate(r) for r in scanlog.records()]
    res = ingest(storage, HolderOpener(X25519PrivateKey.generate()), "dev-1", recs)
    assert res.acked_seq == 2 and res.undecryptable == 2
    held = storage.records("dev-1")
    assert held[0]["holder_hash"] is None and held[0]["holder_enc"].hex() == recs[0].holder_enc
    storage.close()


@pytest.mark.parametrize("bad_at", [0, 19, 29])
def test_batch_refused_midway_stores_nothing(db_url, server_x25519, scanlog, bad_at):
    """Rows stream into the database while later records are still being checked: a bad record
    anywhere in the batch rolls back the rows already sent, and the good batch then goes in whole."""
    from sync.server.ingest import IngestError, ingest_body
    from sync.wire.sealed import HolderOpener
    storage = open_storage(db_url)
    try:
        storage.enroll("dev-1", b"k" * 32)
        append_samples(scanlog, 30)
        recs = scanlog.records()
        bad = [dict(r) for r in recs]
        bad[bad_at]["reason"] = "edited"
        opener = HolderOpener(server_x25519)
        with pytest.raises(IngestError) as err:
            ingest_body(storage, opener, "dev-1", json.dumps({"device_id": "dev-1", "records": bad}).encode())
        assert err.value.error == "record_altered"
        assert storage.records("dev-1") == [] and storage.acked_seq("dev-1") == 0
        res = ingest_body(storage, opener, "dev-1", json.dumps({"device_id": "dev-1", "records": recs}).encode())
        assert (res.acked_seq, res.stored, res.duplicates) == (30, 30, 0)
        assert_server_matches(storage, scanlog, {i + 1: sample_verdict(i).holder_hash for i in range(30)})
    finally:
        storage.close()


def test_body_errors_are_refused_cleanly(db_url, server_x25519):
    from sync.server.ingest import IngestError, ingest_body
    from sync.wire.sealed import HolderOpener
    storage = open_storage(db_url)
    try:
        storage.enroll("dev-1", b"k" * 32)
        opener = HolderOpener(server_x25519)
        for body in (b"{", b'{"device_id": "dev-1"}', b'{"device_id": "dev-2", "records": []}',
                     json.dumps({"device_id": "dev-1", "records": [{"seq": 1}]}).encode()):
            with pytest.raises(IngestError) as err:
                ingest_body(storage, opener, "dev-1", body)
            assert (err.value.status, err.value.error) == (422, "bad_batch")
        rec = {"seq": 1, "wall_time": "t", "monotonic": 1.0, "boot_id": "b", "clock_trusted": True,
               "decision": "CHECK", "reason": "r", "prev_hash": "zz" * 32, "hash": "00" * 32}
        with pytest.raises(IngestError) as err:  # not hex: a clear refusal, not a server error
            ingest_body(storage, opener, "dev-1", json.dumps({"device_id": "dev-1", "records": [rec]}).encode())
        assert (err.value.status, err.value.error) == (422, "bad_batch")
        assert storage.records("dev-1") == []
    finally:
        storage.close()


def test_push_signature_faults_get_generic_answers(db_url, server_x25519, publisher_key, scanlog, device_key):
    """The push route answers outside FastAPI's router: its refusals still look like the API's
    (its database faults: ``test_sync_pg_reconnect``)."""
    settings = ServerSettings(db_url=db_url, encryption_key=server_x25519, publisher_key=publisher_key)
    with ServerThread(create_app(settings)) as srv:
        storage = srv._server.config.app.state.storage
        client = make_client(srv.url, scanlog, device_key)
        client.enroll(token_for(db_url, "dev-1"))
        append_samples(scanlog, 4)
        body = json.dumps({"device_id": "dev-1", "records": scanlog.records()}).encode()
        resp = requests.post(srv.url + f"{API}/push", data=body, timeout=5,
                             headers={HEADER_DEVICE: "dev-1", HEADER_SIGNATURE: "not base64!"})
        assert resp.status_code == 401 and resp.json() == {"error": "unauthorized",
                                                             "detail": "request not authenticated"}
        sig = b64(device_key.sign(request_signing_bytes("POST", f"{API}/push?x=1", body)))
        resp = requests.post(srv.url + f"{API}/push?x=1", data=body, timeout=5,  # the query is signed too
                             headers={HEADER_DEVICE: "dev-1", HEADER_SIGNATURE: sig})
        assert resp.status_code == 200 and resp.json()["acked_seq"] == 4
        client.push()  # the device learns what the server holds
        assert scanlog.pending() == 0
        assert_server_matches(storage, scanlog)
