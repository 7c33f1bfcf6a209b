"""Attacks on the device API over real HTTP on loopback, against SQLite and PostgreSQL.

Each test is one attack from the field: oversized and stalled bodies, senders that are not
enrolled devices, floods from one device, out-of-range protocol values, stolen, guessed or
reused enrollment tokens, revoked devices, and the admin side reached from the device side.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import requests
from conftest import append_samples, token_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_sync_push import make_client

from edge.device.sync_client import SyncError
from sync.server.app import create_app
from sync.server.enrollment import EnrollmentError, issue_token, token_digest
from sync.server.runner import ServerThread
from sync.server.settings import RequestLimits, ServerSettings
from sync.wire.protocol import API, HEADER_DEVICE, HEADER_SIGNATURE, MAX_SEQ, b64, request_signing_bytes

LIMITS = RequestLimits(max_push_bytes=1024 * 1024, body_timeout_s=1.0, header_timeout_s=1.0)


def _server(db_url, server_x25519, publisher_key, limits=LIMITS, serve="all", http="auto") -> ServerThread:
    settings = ServerSettings(db_url=db_url, encryption_key=server_x25519, publisher_key=publisher_key,
                              limits=limits)
    srv = ServerThread(create_app(settings, serve=serve), header_timeout_s=limits.header_timeout_s,
                       http=http).start()
    srv.storage = srv._server.config.app.state.storage
    return srv


@pytest.fixture
def server(db_url, server_x25519, publisher_key):
    srv = _server(db_url, server_x25519, publisher_key)
    yield srv
    srv.stop()


@pytest.fixture
def enrolled(server, db_url, scanlog, device_key):
    """dev-1 enrolled with its provisioning token."""
    client = make_client(server.url, scanlog, device_key)
    client.enroll(token_for(db_url, "dev-1"))
    return client


def _raw(port: int, head: bytes, body: bytes = b"", *, wait_s: float = 5.0, source: str | None = None) -> bytes:
    """Send a request head (and part of a body), from the loopback address ``source`` if given, then
    read whatever the server answers within wait_s."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s,
                                  source_address=(source, 0) if source else None) as s:
        s.sendall(head + body)
        s.settimeout(wait_s)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except TimeoutError:
            pass
        return data


def _signed_push(key: Ed25519PrivateKey, device_id: str, body: bytes) -> dict[str, str]:
    return {HEADER_DEVICE: device_id,
            HEADER_SIGNATURE: b64(key.sign(request_signing_bytes("POST", f"{API}/push", body)))}


# -- sizes and time, before the body is read --------------------------------------------------------

def test_declared_huge_body_is_refused_before_reading(server):
    """Content-Length 512 MiB, nobody authenticated: 413 at once, not after the server read it all."""
    head = (b"POST /v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 536870912\r\n\r\n")
    started = time.monotonic()
    answer = _raw(server.port, head, b"{" * 1000, wait_s=3.0)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert time.monotonic() - started < 3.0


def test_unknown_sender_gets_401_before_its_body_is_read(server):
    """A sender that is no enrolled device is refused on its headers: its 900 kB body is never awaited."""
    head = (b"POST /v1/push HTTP/1.1\r\nHost: x\r\nX-Device-Id: intruder\r\nX-Signature: AAAA\r\n"
            b"Content-Length: 900000\r\n\r\n")
    answer = _raw(server.port, head, wait_s=3.0)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"intruder" not in answer and b"enrolled" not in answer  # generic: says nothing about ids


def test_streamed_body_is_cut_off_at_the_cap(server, enrolled):
    """Chunked (no Content-Length) from an enrolled id: the server stops reading at the cap and closes."""
    head = (b"POST /v1/push HTTP/1.1\r\nHost: x\r\nX-Device-Id: dev-1\r\nX-Signature: AAAA\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % 65536 + b" " * 65536 + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(head)
        try:
            while sent < 64 * 1024 * 1024:  # 64 MiB offered against a 1 MiB cap
                s.sendall(chunk)
                sent += 65536
        except OSError:  # reset / broken pipe: the server closed on us
            pass
        s.settimeout(3)
        try:
            answer = s.recv(65536)
        except OSError:
            answer = b""
    assert sent < 32 * 1024 * 1024, f"the server read {sent} bytes of a body capped at 1 MiB"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_stalled_body_gets_408_and_the_socket_is_closed(server, enrolled):
    head = (b"POST /v1/push HTTP/1.1\r\nHost: x\r\nX-Device-Id: dev-1\r\nX-Signature: AAAA\r\n"
            b"Content-Length: 1000\r\n\r\n")
    started = time.monotonic()
    answer = _raw(server.port, head, b'{"device_id"', wait_s=6.0)  # then silence
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 5.0  # answered by the 1 s deadline and closed, not held open


def test_stalled_request_headers_are_closed(server):
    started = time.monotonic()
    answer = _raw(server.port, b"POST /v1/push HTTP/1.1\r\nHost: x\r\n", wait_s=6.0)  # headers never end
    assert answer == b"" and time.monotonic() - started < 5.0  # closed by the 1 s header deadline


@pytest.mark.parametrize("http", ["h11", "auto"])
def test_header_deadline_holds_on_either_protocol_and_on_kept_alive_connections(db_url, server_x25519,
                                                                                publisher_key, http):
    """A stalled first request and a stalled second request on a kept-alive connection are both
    closed by the header deadline, whichever HTTP protocol serves (httptools when installed)."""
    srv = _server(db_url, server_x25519, publisher_key, http=http)
    try:
        if http == "auto":
            from sync.server.runner import HttpToolsProtocol
            assert HttpToolsProtocol is not None, "the server extra installs httptools"
        started = time.monotonic()
        assert _raw(srv.port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n", wait_s=6.0) == b""
        assert time.monotonic() - started < 5.0
        with socket.create_connection(("127.0.0.1", srv.port), timeout=6.0) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            first = s.recv(65536)
            assert first.startswith(b"HTTP/1.1 200"), first[:200]
            started = time.monotonic()
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHo")  # the next request stalls in its headers
            rest = b""
            while chunk := s.recv(65536):
                rest += chunk
            assert rest == b"" and time.monotonic() - started < 5.0  # closed at the 1 s deadline, not 30 s
    finally:
        srv.stop()


def test_one_device_flooding_is_rate_limited_alone(db_url, server_x25519, publisher_key, scanlog, device_key,
                                                   tmp_path):
    from edge.scan.scanlog import ScanLog
    srv = _server(db_url, server_x25519, publisher_key, replace(LIMITS, device_rate="5/minute"))
    try:
        flood = make_client(srv.url, scanlog, device_key)
        flood.enroll(token_for(db_url, "dev-1"))
        statuses = []
        for _ in range(8):
            r = requests.get(srv.url + f"{API}/policy", timeout=5,
                             headers={HEADER_DEVICE: "dev-1", HEADER_SIGNATURE: b64(device_key.sign(
                                 request_signing_bytes("GET", f"{API}/policy", b"")))})
            statuses.append((r.status_code, r.headers.get("Retry-After")))
        assert [s for s, _ in statuses[:5]] == [204] * 5
        assert all(s == 429 and ra is not None and 1 <= int(ra) <= 60 for s, ra in statuses[5:]), statuses
        other_log = ScanLog(tmp_path / "other.sqlite", device_id="dev-2", boot_id="b",
                            server_encryption_key=server_x25519.public_key())
        other = make_client(srv.url, other_log, Ed25519PrivateKey.generate())
        other.enroll(token_for(db_url, "dev-2"))
        append_samples(other_log, 3)
        assert other.push() == 3  # another device is not slowed by dev-1's flood
        other_log.close()
    finally:
        srv.stop()


# -- protocol values: bounded, never a 500 --------------------------------------------------------

def _record(seq: int, **over) -> dict:
    rec = {"seq": seq, "wall_time": "2026-03-01T00:00:00+00:00", "monotonic": 1.0, "boot_id": "b",
           "clock_trusted": True, "decision": "CHECK", "reason": "not_a_pass", "prev_hash": "00" * 32,
           "hash": "00" * 32}
    rec.update(over)
    return rec


@pytest.mark.parametrize("records", [
    [_record(2**63)],                                     # seq past BIGINT / SQLite INTEGER
    [_record(2**64 + 5)],
    [_record(MAX_SEQ), _record(MAX_SEQ + 1)],             # the batch's span would pass 2^63
    [_record(MAX_SEQ), _record(1)],
    [_record(1, monotonic="NaN")],
    [_record(1, monotonic=1e400)],
    [_record(1, monotonic="-Infinity")],
], ids=["seq_2_63", "seq_2_64", "span_overflow", "span_backwards", "nan", "inf", "minus_inf"])
def test_out_of_range_values_are_422_not_500(server, enrolled, device_key, records):
    body = json.dumps({"device_id": "dev-1", "records": records}).encode()
    for name in ("NaN", "-Infinity"):  # JSON has no literal for them; a hostile sender writes one anyway
        body = body.replace(f'"{name}"'.encode(), name.encode())
    resp = requests.post(server.url + f"{API}/push", data=body, headers=_signed_push(device_key, "dev-1", body),
                         timeout=10)
    assert resp.status_code == 422, resp.text
    assert server.storage.records("dev-1") == [] and server.storage.acked_seq("dev-1") == 0


def test_odd_query_and_header_values_never_give_500(server, enrolled, device_key):
    for path in (f"{API}/risk?have=99999999999999999999999", f"{API}/trust?have=-1", f"{API}/time?nonce=" + "n" * 65,
                 f"{API}/policy?have=abc"):
        sig = b64(device_key.sign(request_signing_bytes("GET", path, b"")))
        resp = requests.get(server.url + path, headers={HEADER_DEVICE: "dev-1", HEADER_SIGNATURE: sig}, timeout=5)
        assert resp.status_code == 422, (path, resp.status_code, resp.text)
    for device_id in ("x" * 5000, "a b", "dev-1\t", ""):
        resp = requests.get(server.url + f"{API}/policy", headers={HEADER_DEVICE: device_id}, timeout=5)
        assert resp.status_code == 401, (device_id[:20], resp.status_code)
    resp = requests.post(server.url + f"{API}/push", data=b"x", headers={"Content-Length": "abc"}, timeout=5)
    assert resp.status_code in (400, 401)


# -- enrollment tokens ---------------------------------------------------------------------------

def _enroll(url: str, device_id: str, token: str, key: Ed25519PrivateKey | None = None) -> requests.Response:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    raw = (key or Ed25519PrivateKey.generate()).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return requests.post(url + f"{API}/enroll", data=json.dumps({"device_id": device_id, "public_key": b64(raw)}),
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_token_cannot_pre_enroll_another_device(server, db_url):
    """The attack: with one bundle's token, enroll a not-yet-booted device's id and lock it out."""
    stolen = token_for(db_url, "HN-CP-001")
    genuine = token_for(db_url, "HN-CP-002")
    assert _enroll(server.url, "HN-CP-002", stolen).status_code == 401
    assert _enroll(server.url, "HN-CP-002", genuine).status_code == 200  # the real device is not locked out
    assert server.storage.device_key("HN-CP-001") is None


def test_a_token_is_single_use_and_expires(server, db_url):
    token = token_for(db_url, "dev-9")
    key = Ed25519PrivateKey.generate()
    assert _enroll(server.url, "dev-9", token, key).status_code == 200
    assert _enroll(server.url, "dev-9", token, key).status_code == 200  # the same device retrying: no change
    assert _enroll(server.url, "dev-9", token).status_code == 401       # anyone else: the token is spent
    expired = issue_token(server.storage, "dev-10", ttl_s=60, now=int(time.time()) - 120)
    assert _enroll(server.url, "dev-10", expired).status_code == 401
    assert server.storage.device_key("dev-10") is None


def test_short_and_guessed_tokens_are_refused_and_rate_limited(server, db_url):
    token = token_for(db_url, "dev-7")
    assert _enroll(server.url, "dev-7", "x").status_code == 401          # one character: refused unread
    assert server.storage.enroll_token("dev-7").failures == 0
    for i in range(5):
        assert _enroll(server.url, "dev-7", f"guess-{i:02d}-" + "g" * 40).status_code == 401
    locked = _enroll(server.url, "dev-7", "guess-more-" + "g" * 40)      # a further guess waits now
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert server.storage.device_key("dev-7") is None
    # the genuine token still enrolls: whoever knows a device id could otherwise keep it locked out
    assert _enroll(server.url, "dev-7", token).status_code == 200 and server.storage.device_key("dev-7") is not None
    # and from this address, guessing at other ids soon stops being answered at all
    answers = [_enroll(server.url, f"dev-{n}", "h" * 43).status_code for n in range(100, 125)]
    assert 429 in answers and answers.index(429) <= 20


def test_revoked_device_is_refused_and_readmitted(server, enrolled, scanlog):
    append_samples(scanlog, 3)
    server.storage.revoke("dev-1", "card stolen", "test")
    with pytest.raises(SyncError) as err:
        enrolled.push()
    assert err.value.status == 401 and scanlog.pending() == 3
    with pytest.raises(EnrollmentError, match="revoked"):  # no token for its old key either
        issue_token(server.storage, "dev-1")
    server.storage.readmit("dev-1")
    assert enrolled.push() == 3


def test_a_revoked_device_comes_back_only_with_a_new_key(server, enrolled, scanlog, device_key):
    """Re-provisioning a device whose card was stolen (a token for a new key, from the CLI or the
    dashboard) once lifted the revocation at once: the stolen key pushed until the token was used."""
    server.storage.revoke("dev-1", "card stolen", "test")
    token = issue_token(server.storage, "dev-1", replace_key=True)
    append_samples(scanlog, 2)
    with pytest.raises(SyncError) as err:
        enrolled.push()  # the stolen key, while the new token waits for the new card
    assert err.value.status == 401
    assert _enroll(server.url, "dev-1", token, device_key).status_code == 401  # nor may it take the token
    assert server.storage.revocation("dev-1") is not None
    new_key = Ed25519PrivateKey.generate()
    assert _enroll(server.url, "dev-1", token, new_key).status_code == 200
    assert server.storage.revocation("dev-1") is None
    assert server.storage.device_key("dev-1") == new_key.public_key().public_bytes_raw()
    assert _enroll(server.url, "dev-1", token, new_key).status_code == 200  # its retry after a lost answer
    with pytest.raises(SyncError) as err:
        enrolled.push()
    assert err.value.status == 401 and scanlog.pending() == 2


def test_a_new_key_enrolled_before_a_crash_lifts_the_revocation_on_the_retry(server, enrolled, device_key):
    """A server stopped between enrolling the new key and lifting the revocation: the device's retry
    with the same token and key finishes the job (and the old key stays refused meanwhile)."""
    server.storage.revoke("dev-1", "card stolen", "test")
    token = issue_token(server.storage, "dev-1", replace_key=True)
    new_key = Ed25519PrivateKey.generate()
    raw = new_key.public_key().public_bytes_raw()
    assert server.storage.claim_enroll_token("dev-1", token_digest(token), int(time.time()))
    server.storage.enroll("dev-1", raw, replace=True)  # ... and the server stopped here
    assert server.storage.active_device_key("dev-1") is None
    assert _enroll(server.url, "dev-1", token, new_key).status_code == 200
    assert server.storage.active_device_key("dev-1") == raw


@contextlib.contextmanager
def _device_row_held(db_url: str, device_id: str) -> Iterator[Callable[[], None]]:
    """Hold the device's row as another writer would (PostgreSQL: its row lock; SQLite: the write
    lock) until the yielded ``revoke_and_release`` records a revocation and lets go."""
    if db_url.startswith("sqlite"):
        db = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        db.execute("BEGIN IMMEDIATE")

        def revoke_and_release() -> None:  # inside the held transaction: SQLite has one writer
            db.execute("INSERT INTO revocations (device_id, revoked_at, reason, actor) VALUES (?, ?, ?, ?)",
                       (device_id, "2026-12-03T00:00:00+00:00", "card stolen", "test"))
            db.execute("COMMIT")
        try:
            yield revoke_and_release
        finally:
            db.close()
        return
    import psycopg

    from sync.server.store_pg import split_schema
    conninfo, schema = split_schema(db_url)
    with psycopg.connect(conninfo, autocommit=True) as db, psycopg.connect(conninfo, autocommit=True) as other:
        db.execute(f'SET search_path TO "{schema}"')
        other.execute(f'SET search_path TO "{schema}"')
        lock = db.transaction()
        lock.__enter__()
        db.execute("SELECT 1 FROM devices WHERE device_id=%s FOR UPDATE", (device_id,))

        def revoke_and_release() -> None:
            deadline = time.monotonic() + 10  # the push is waiting for the row before the revocation commits
            # (asked on the other connection: the statistics views hold still within a transaction)
            while not other.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                                    "query LIKE '%FROM devices%FOR UPDATE%'").fetchone():
                assert time.monotonic() < deadline, "the push never waited for the device row"
                time.sleep(0.02)
            other.execute("INSERT INTO revocations (device_id, revoked_at, reason, actor) VALUES (%s, %s, %s, %s)",
                          (device_id, "2026-12-03T00:00:00+00:00", "card stolen", "test"))
            lock.__exit__(None, None, None)
        yield revoke_and_release


def test_a_revocation_committed_while_a_push_is_being_stored_refuses_it(server, enrolled, scanlog, db_url):
    """The ingest checks the key in its first query; a revocation committed after that and before
    the batch's transaction ends once let the batch be stored. The device row's last update now
    checks the key again, in the statement that ends the write."""
    append_samples(scanlog, 2)
    assert enrolled.push() == 2
    append_samples(scanlog, 3, start=2)
    with _device_row_held(db_url, "dev-1") as revoke_and_release:
        outcome: list = []
        pushing = threading.Thread(target=lambda: outcome.append(_push_status(enrolled)))
        pushing.start()
        time.sleep(0.5 if db_url.startswith("sqlite") else 0)  # SQLite: let it reach the write lock
        revoke_and_release()
        pushing.join(30)
    assert outcome == [401]
    assert server.storage.acked_seq("dev-1") == 2 and len(server.storage.records("dev-1")) == 2
    assert scanlog.pending() == 3


def _push_status(client) -> int:
    try:
        client.push()
    except SyncError as exc:
        return exc.status or 0
    return 200


def _policy_status(url: str, key: Ed25519PrivateKey) -> int:
    return requests.get(url + f"{API}/policy", timeout=5, headers={
        HEADER_DEVICE: "dev-1", HEADER_SIGNATURE: b64(key.sign(request_signing_bytes("GET", f"{API}/policy", b"")))
    }).status_code


@pytest.mark.parametrize("key_cache_s", [30.0, 0.0])
def test_a_remembered_key_never_lets_a_revoked_or_replaced_key_push(db_url, server_x25519, publisher_key, scanlog,
                                                                    device_key, key_cache_s):
    """The guard remembers device keys (``device_key_cache_s``); a push is checked against the
    database all the same, and a download is refused within that time."""
    srv = _server(db_url, server_x25519, publisher_key, replace(LIMITS, device_key_cache_s=key_cache_s))
    try:
        client = make_client(srv.url, scanlog, device_key)
        client.enroll(token_for(db_url, "dev-1"))
        append_samples(scanlog, 2)
        assert client.push() == 2 and _policy_status(srv.url, device_key) == 204  # the key is remembered now
        srv.storage.revoke("dev-1", "card stolen", "test")
        empty = json.dumps({"device_id": "dev-1", "records": []}).encode()  # asks only what the server holds
        answer = requests.post(srv.url + f"{API}/push", data=empty, headers=_signed_push(device_key, "dev-1", empty),
                               timeout=5)
        assert answer.status_code == 401 and "acked_seq" not in answer.json()
        assert _policy_status(srv.url, device_key) == 401  # forgotten after that refusal
        srv.storage.readmit("dev-1")
        assert _policy_status(srv.url, device_key) == 204  # remembered again
        srv.storage.revoke("dev-1", "card stolen", "test")
        append_samples(scanlog, 2, start=2)
        with pytest.raises(SyncError) as err:
            client.push()
        assert err.value.status == 401 and scanlog.pending() == 2 and srv.storage.acked_seq("dev-1") == 2
        # the refusal made this process forget the key: downloads are refused at once too
        assert _policy_status(srv.url, device_key) == 401
        # re-provisioned: the same id enrolled with a new key; the stolen key may not push
        srv.storage.readmit("dev-1")
        assert _policy_status(srv.url, device_key) == 204  # remembered again
        new_key = Ed25519PrivateKey.generate()
        srv.storage.enroll("dev-1", new_key.public_key().public_bytes_raw(), replace=True)
        body = json.dumps({"device_id": "dev-1", "records": scanlog.records()[2:]}).encode()
        stolen = requests.post(srv.url + f"{API}/push", data=body, headers=_signed_push(device_key, "dev-1", body),
                               timeout=5)
        assert stolen.status_code == 401 and stolen.json()["error"] == "unauthorized"
        assert srv.storage.acked_seq("dev-1") == 2
        # the new key works from the next request on (the refusal made the process forget the old one)
        fresh = requests.post(srv.url + f"{API}/push", data=body, headers=_signed_push(new_key, "dev-1", body),
                              timeout=5)
        assert fresh.status_code == 200 and fresh.json()["acked_seq"] == 4
    finally:
        srv.stop()


def test_remembered_keys_stay_bounded():
    from sync.server.guard import DeviceKeys
    keys = DeviceKeys(ttl_s=5.0)
    for i in range(30_000):
        keys.put(f"dev-{i}", b"k", now=i * 0.001)
    assert len(keys) < 30_000 and keys.get("dev-29999", now=30.0) == b"k"
    assert keys.get("dev-0", now=30.0) is None  # older than the time kept
    assert DeviceKeys(ttl_s=0).get("dev-0", now=0.0) is None


# -- the admin side is not part of the device API -------------------------------------------------

def test_device_only_deployment_exposes_no_admin_or_schema(db_url, server_x25519, publisher_key):
    srv = _server(db_url, server_x25519, publisher_key, serve="device")
    try:
        for path in ("/", "/login", "/openapi.json", "/docs", "/admin/api/fleet", "/admin/api/audit"):
            assert requests.get(srv.url + path, timeout=5).status_code == 404, path
        assert requests.get(srv.url + f"{API}/fleet", timeout=5).status_code == 401  # not a device endpoint either
        assert requests.get(srv.url + f"{API}/health", timeout=5).status_code == 200
    finally:
        srv.stop()


def test_combined_deployment_needs_a_login(server):
    assert requests.get(server.url + "/openapi.json", timeout=5).status_code == 404
    assert requests.get(server.url + f"{API}/fleet", timeout=5).status_code in (401, 404)
    page = requests.get(server.url + "/", timeout=5, allow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    for path in ("/admin/api/fleet", "/admin/api/audit", "/admin/api/openapi.json"):
        assert requests.get(server.url + path, timeout=5).status_code == 401, path


def test_requests_that_only_name_a_device_do_not_spend_its_allowance(db_url, server_x25519, publisher_key, scanlog,
                                                                    device_key):
    """Device ids are not secret: forged signatures, and paths no device asks for, once counted
    against the named device's rate, so anyone could keep a checkpoint's pushes refused with 429."""
    srv = _server(db_url, server_x25519, publisher_key, replace(LIMITS, device_rate="4/minute"))
    try:
        client = make_client(srv.url, scanlog, device_key)
        client.enroll(token_for(db_url, "dev-1"))
        forger = Ed25519PrivateKey.generate()
        for _ in range(10):
            body = json.dumps({"device_id": "dev-1", "records": []}).encode()
            forged = requests.post(srv.url + f"{API}/push", data=body, headers=_signed_push(forger, "dev-1", body),
                                   timeout=5)
            assert forged.status_code == 401
            assert requests.get(srv.url + f"{API}/policy", headers={HEADER_DEVICE: "dev-1", HEADER_SIGNATURE: "AAAA"},
                                timeout=5).status_code == 401
            assert requests.get(srv.url + f"{API}/no-such-thing", headers={HEADER_DEVICE: "dev-1"},
                                timeout=5).status_code == 404
        statuses = [_policy_status(srv.url, device_key) for _ in range(6)]
        assert statuses[:4] == [204] * 4 and statuses[4:] == [429, 429], statuses  # its own requests still count
    finally:
        srv.stop()


def test_stalled_bodies_from_elsewhere_do_not_take_a_devices_slots(db_url, server_x25519, publisher_key, scanlog,
                                                                  device_key):
    """Requests in flight are counted per device and client address: an attacker holding stalled
    bodies under a device's id (from 127.0.0.2) leaves the device (127.0.0.1) its own slots."""
    srv = _server(db_url, server_x25519, publisher_key, replace(LIMITS, body_timeout_s=5.0, device_concurrency=2))
    held: list[socket.socket] = []
    try:
        client = make_client(srv.url, scanlog, device_key)
        client.enroll(token_for(db_url, "dev-1"))
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5, source_address=("127.0.0.2", 0))
            s.sendall(b"POST /v1/push HTTP/1.1\r\nHost: x\r\nX-Device-Id: dev-1\r\nX-Signature: AAAA\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
            held.append(s)
            time.sleep(0.2)
        held[2].settimeout(2.0)
        assert held[2].recv(4096).startswith(b"HTTP/1.1 429"), "a third of dev-1 at once from one address"
        append_samples(scanlog, 3)
        assert client.push() == 3  # the device, from its own address, is not held up
    finally:
        for s in held:
            s.close()
        srv.stop()


def test_an_address_naming_unknown_devices_is_limited_without_look_ups(db_url, server_x25519, publisher_key,
                                                                       scanlog, device_key):
    """Each request naming a device that is not enrolled costs a database look-up: an address that
    names too many gets 429 without one, while devices heard from lately and other addresses pass."""
    srv = _server(db_url, server_x25519, publisher_key, replace(LIMITS, unknown_senders_per_client="5/minute"))
    try:
        client = make_client(srv.url, scanlog, device_key)
        client.enroll(token_for(db_url, "dev-1"))
        assert _policy_status(srv.url, device_key) == 204  # its key is remembered from here on
        looked_up: list[str] = []
        real_look_up = srv.storage.active_device_key
        srv.storage.active_device_key = lambda device_id: looked_up.append(device_id) or real_look_up(device_id)

        def unknown(name: str, source: str = "127.0.0.1") -> bytes:
            return _raw(srv.port, f"GET {API}/policy HTTP/1.1\r\nHost: x\r\nX-Device-Id: {name}\r\n"
                        "X-Signature: AAAA\r\n\r\n".encode(), wait_s=3.0, source=source)

        answers = [unknown(f"ghost-{i}") for i in range(8)]
        assert all(a.startswith(b"HTTP/1.1 401") for a in answers[:5]), [a[:40] for a in answers]
        assert all(a.startswith(b"HTTP/1.1 429") and b"retry-after: " in a.lower() for a in answers[5:])
        assert looked_up == [f"ghost-{i}" for i in range(5)]  # the refused ones cost no look-up
        assert _policy_status(srv.url, device_key) == 204  # a device heard from lately is not held up
        assert unknown("ghost-x", source="127.0.0.2").startswith(b"HTTP/1.1 401")  # nor is another address
        assert looked_up[-1] == "ghost-x"
    finally:
        srv.stop()


def test_known_device_ids_cannot_pile_up_bodies(db_url, server_x25519, publisher_key, device_key):
    """Device ids are not secret: many big bodies at once under one id, or under several, stop at a
    per-device count and at a budget of body bytes being read (memory stays bounded)."""
    limits = replace(LIMITS, body_timeout_s=5.0, max_inflight_bytes=2 * 1024 * 1024, device_concurrency=2)
    srv = _server(db_url, server_x25519, publisher_key, limits)
    held: list[socket.socket] = []
    try:
        for device_id in ("dev-1", "dev-2", "dev-3"):
            _enroll(srv.url, device_id, token_for(db_url, device_id))

        def start(device_id: str, sent: int) -> socket.socket:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(b"POST /v1/push HTTP/1.1\r\nHost: x\r\nX-Device-Id: %s\r\nX-Signature: AAAA\r\n"
                      b"Content-Length: 1000000\r\n\r\n" % device_id.encode() + b" " * sent)
            held.append(s)
            return s

        def answer(s: socket.socket) -> bytes:
            s.settimeout(1.0)
            try:
                return s.recv(4096)
            except TimeoutError:
                return b""  # still being read: no answer yet

        first, second = start("dev-1", 900_000), start("dev-1", 10)
        time.sleep(0.3)
        third = start("dev-1", 10)
        assert answer(third).startswith(b"HTTP/1.1 429"), "a third request of dev-1 at once"
        assert answer(first) == b"" and answer(second) == b""
        big = start("dev-2", 900_000)
        time.sleep(0.3)
        over = start("dev-3", 900_000)  # 2.7 MB being read would pass the 2 MiB budget
        assert answer(big) == b""
        assert answer(over).startswith(b"HTTP/1.1 503"), "the body budget"
    finally:
        for s in held:
            s.close()
        srv.stop()


def test_admin_upload_needs_an_operator_before_its_body_is_read(server):
    head = (b"PUT /admin/api/published/trust HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
    answer = _raw(server.port, head, b"x" * 100, wait_s=3.0)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


# -- any device input: never a 500 ------------------------------------------------------------------

_ODD_VALUES = [None, True, 0, -1, 2**63, -(2**63) - 1, 10**400, 1.5, 1e308, "", "x" * 5000, "\x00", "é", "\u2028",
               [], {}, [1, [2, [3]]], {"a": {"b": None}}, "00" * 32, "zz" * 32, "NaN", "Infinity"]


def test_any_signed_push_body_gets_an_answer_not_a_500(db_url, server_x25519, publisher_key, device_key, scanlog):
    """Property: a signed push whose fields are replaced by hostile JSON values is answered 200, 409
    or 422, never 500, on both back-ends (the signature is right: only the server's checks remain)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    server = _server(db_url, server_x25519, publisher_key, replace(LIMITS, device_rate="10000/second"))
    make_client(server.url, scanlog, device_key).enroll(token_for(db_url, "dev-1"))
    append_samples(scanlog, 3)
    good = scanlog.records()
    fields = sorted(good[0])

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(index=st.integers(0, 2), field=st.sampled_from([*fields, "device_id", "extra"]),
           value=st.sampled_from(_ODD_VALUES), drop=st.booleans())
    def attack(index: int, field: str, value, drop: bool) -> None:
        records = [dict(r) for r in good]
        body_obj: dict = {"device_id": "dev-1", "records": records}
        if field == "device_id":
            body_obj["device_id"] = value
        elif drop and field in records[index]:
            del records[index][field]
        else:
            records[index][field] = value
        body = json.dumps(body_obj, allow_nan=True).encode()
        for name in ("NaN", "Infinity"):
            body = body.replace(f'"{name}"'.encode(), name.encode())
        resp = requests.post(server.url + f"{API}/push", data=body, timeout=10,
                             headers=_signed_push(device_key, "dev-1", body))
        assert resp.status_code in (200, 409, 422), (field, value, resp.status_code, resp.text[:300])

    try:
        attack()
    finally:
        server.stop()
