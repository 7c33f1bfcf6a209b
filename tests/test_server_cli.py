"""``checkpoint server``: nothing is created unless asked, and the administration commands.

The last two tests run the real ``checkpoint server`` process and attack it over loopback:
stalled sockets under a low descriptor limit, and hostile 512 MiB bodies while RSS is watched.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from conftest import append_samples
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_sync_push import make_client

from edge.cli import main
from edge.device.sync_client import SyncError
from edge.scan.scanlog import ScanLog
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings, default_db_url
from sync.server.storage import open_storage
from sync.wire.keyfiles import load_x25519_private, save_public_key


def _run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def test_help_and_typos_create_nothing(tmp_path: Path):
    """'server enroll --help' and a mistyped --data-dir once made a new publisher key and database."""
    os.chdir(tmp_path)
    assert _run("server", "enroll", "--help").exit_code == 0
    assert _run("server", "--data-dir", str(tmp_path / "serevr-data"), "token", "--help").exit_code == 0
    save_public_key(tmp_path / "dev.pub.pem", Ed25519PrivateKey.generate().public_key())
    typo = _run("server", "--data-dir", str(tmp_path / "serevr-data"), "enroll", "--device-id", "d",
                "--public-key", str(tmp_path / "dev.pub.pem"))
    assert typo.exit_code != 0 and "no server data directory" in typo.output and "server init" in typo.output
    assert "enrolled" not in typo.output
    for command in (["token", "dev-1"], ["revoke", "dev-1", "--reason", "x"], ["user", "list"], ["audit"], []):
        result = _run("server", "--data-dir", str(tmp_path / "serevr-data"), *command)
        assert result.exit_code != 0 and "server init" in result.output, (command, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.pub.pem"], "nothing else may appear"


def test_a_foreign_directory_or_missing_database_is_refused(tmp_path: Path):
    (tmp_path / "photos").mkdir()
    result = _run("server", "--data-dir", str(tmp_path / "photos"), "token", "dev-1")
    assert result.exit_code != 0 and "not a server data directory" in result.output
    assert list((tmp_path / "photos").iterdir()) == []
    assert _run("server", "--data-dir", str(tmp_path / "srv"), "init").exit_code == 0
    (tmp_path / "srv/server.sqlite").unlink()
    result = _run("server", "--data-dir", str(tmp_path / "srv"), "token", "dev-1")
    assert result.exit_code != 0 and "no server database" in result.output
    assert not (tmp_path / "srv/server.sqlite").exists()


def test_a_rate_that_allows_nothing_or_cannot_be_read_is_refused(tmp_path: Path):
    for rate, says in (("0/minute", "at least one request"), ("lots", "couldn't parse")):
        result = _run("server", "--data-dir", str(tmp_path), "--unknown-senders", rate)
        assert result.exit_code == 2 and "--unknown-senders" in result.output and says in result.output, result.output


def test_init_makes_private_keys_and_database_once(tmp_path: Path):
    data = tmp_path / "srv"
    first = _run("server", "--data-dir", str(data), "init")
    assert first.exit_code == 0, first.output
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("server_x25519.pem", "publisher_ed25519.pem"):
        assert stat.S_IMODE((data / "keys" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "server.sqlite").stat().st_mode) == 0o600
    key = (data / "keys/publisher_ed25519.pem").read_bytes()
    assert _run("server", "--data-dir", str(data), "init").exit_code == 0
    assert (data / "keys/publisher_ed25519.pem").read_bytes() == key, "init never replaces a root of trust"
    open_storage(default_db_url(data)).close()


def test_token_revoke_readmit_and_audit_commands(tmp_path: Path, device_key):
    data = tmp_path / "srv"
    assert _run("server", "--data-dir", str(data), "init").exit_code == 0
    token = _run("server", "--data-dir", str(data), "token", "HN-CP-001").output.strip()
    assert len(token) >= 32
    settings = ServerSettings.from_data_dir(data)
    log = ScanLog(tmp_path / "dev.sqlite", device_id="HN-CP-001", boot_id="b",
                  server_encryption_key=load_x25519_private(data / "keys/server_x25519.pem").public_key())
    with ServerThread(create_app(settings)) as srv:
        client = make_client(srv.url, log, device_key)
        client.enroll(token)
        append_samples(log, 4)
        assert client.push() == 4
        revoke = _run("server", "--data-dir", str(data), "revoke", "HN-CP-001", "--reason", "card stolen")
        assert revoke.exit_code == 0 and "revoked HN-CP-001" in revoke.output
        append_samples(log, 2, start=4)
        with pytest.raises(SyncError) as err:
            client.push()
        assert err.value.status == 401
        # the card was re-provisioned with a new key: a token for the new key, the old one still refused
        readmit = _run("server", "--data-dir", str(data), "readmit", "HN-CP-001", "--new-token")
        assert readmit.exit_code == 0, readmit.output
        assert "stays revoked until a new key enrolls" in readmit.stderr
        token = readmit.stdout.strip().splitlines()[-1]
        with pytest.raises(SyncError) as err:
            client.push()  # the stolen card's key, between the new token and its use
        assert err.value.status == 401
        with pytest.raises(SyncError) as err:
            client.enroll(token)  # the token does not bring the revoked key back either
        assert err.value.status == 401
        fresh = make_client(srv.url, log, Ed25519PrivateKey.generate())
        fresh.enroll(token)
        assert fresh.push() == 2
        append_samples(log, 1, start=6)
        with pytest.raises(SyncError) as err:
            client.push()
        assert err.value.status == 401
        # back in service with the same key after a mistaken revocation
        assert _run("server", "--data-dir", str(data), "revoke", "HN-CP-001", "--reason", "mistake").exit_code == 0
        assert _run("server", "--data-dir", str(data), "readmit", "HN-CP-001").output.strip() == "re-admitted HN-CP-001"
        assert fresh.push() == 1
    log.close()
    trail = _run("server", "--data-dir", str(data), "audit", "--limit", "20").output
    for action in ("issue_token", "revoke", "readmit", "enroll"):
        assert f"\t{action}\t" in trail, trail
    assert "enrolled a new key; revocation lifted" in trail, trail


def test_user_commands(tmp_path: Path):
    data = tmp_path / "srv"
    assert _run("server", "--data-dir", str(data), "init").exit_code == 0
    weak = _run("server", "--data-dir", str(data), "user", "add", "ana", "--role", "viewer",
                env={"CHECKPOINT_PASSWORD": "short"})
    assert weak.exit_code != 0 and "at least 12" in weak.output
    ok = _run("server", "--data-dir", str(data), "user", "add", "ana", "--role", "operator",
              env={"CHECKPOINT_PASSWORD": "a long enough passphrase"})
    assert ok.exit_code == 0, ok.output
    storage = open_storage(default_db_url(data))
    try:
        stored = storage.user("ana")
        assert stored.password_hash.startswith("$argon2id$") and "passphrase" not in stored.password_hash
    finally:
        storage.close()
    assert "ana\toperator\tenabled" in _run("server", "--data-dir", str(data), "user", "list").output
    assert _run("server", "--data-dir", str(data), "user", "disable", "ana").exit_code == 0
    assert "ana\toperator\tdisabled" in _run("server", "--data-dir", str(data), "user", "list").output


# -- the real server process ---------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(data: Path, *extra: str, nofile: int | None = None) -> tuple[subprocess.Popen, int]:
    port = _free_port()

    def limit_descriptors():
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "server", "--data-dir", str(data), "--port",
                             str(port), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=limit_descriptors)
    for _ in range(300):
        try:
            if requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).ok:
                return proc, port
        except requests.RequestException:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def test_stalled_sockets_do_not_lock_devices_out(tmp_path: Path, device_key, db_url):
    """More stalled connections than the process has descriptors: the deadlines free them."""
    data = tmp_path / "srv"
    assert _run("server", "--data-dir", str(data), "--db", db_url, "init").exit_code == 0
    token = _run("server", "--data-dir", str(data), "--db", db_url, "token", "dev-1").output.strip()
    proc, port = _start_server(data, "--db", db_url, "--header-timeout", "1", "--body-timeout", "1", nofile=128)
    stalled: list[socket.socket] = []
    log = ScanLog(tmp_path / "dev.sqlite", device_id="dev-1", boot_id="b",
                  server_encryption_key=load_x25519_private(data / "keys/server_x25519.pem").public_key())
    try:
        client = make_client(f"http://127.0.0.1:{port}", log, device_key)
        client.enroll(token)
        for i in range(200):  # half stall in their headers, half in their body
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            stalled.append(s)
            time.sleep(0.002)
            with contextlib.suppress(OSError):
                s.send(b"POST /v1/push HTTP/1.1\r\nHost: x\r\n" if i % 2 else
                       b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        append_samples(log, 5)
        client.timeout_s = 3
        deadline = time.monotonic() + 20
        while True:  # a device retries as it always does; it must get through within a few deadlines
            try:
                assert client.push() == 5
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        for s in stalled:
            s.close()
        proc.kill()
        proc.wait(10)
        log.close()


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_hostile_bodies_do_not_grow_the_server(tmp_path: Path, db_url):
    """Four unauthenticated 512 MiB bodies at once (declared and chunked): memory stays flat."""
    data = tmp_path / "srv"
    assert _run("server", "--data-dir", str(data), "--db", db_url, "init").exit_code == 0
    proc, port = _start_server(data, "--db", db_url)
    try:
        before = _rss_peak_kib(proc.pid)
        offered: list[int] = []

        def attack(chunked: bool) -> None:
            head = b"POST /v1/push HTTP/1.1\r\nHost: x\r\nX-Device-Id: dev-1\r\n"
            head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: 536870912\r\n\r\n"
            block = b" " * (1 << 20)
            piece = (b"%x\r\n" % len(block) + block + b"\r\n") if chunked else block
            sent = 0
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(head)
                    while sent < 128 * (1 << 20):  # up to 128 MiB each (the old server read them all)
                        s.sendall(piece)
                        sent += len(block)
            except OSError:
                pass
            offered.append(sent)

        threads = [threading.Thread(target=attack, args=(i % 2 == 0,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        grown_mib = (_rss_peak_kib(proc.pid) - before) / 1024
        assert grown_mib < 32, f"server peak RSS grew {grown_mib:.0f} MiB under hostile bodies"
        assert max(offered) < 64 * (1 << 20), f"the server kept reading: {offered}"
        assert requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).ok
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("key_cache", ["0", "30"])
def test_key_cache_bounds_how_long_a_revoked_device_still_downloads(tmp_path: Path, device_key, db_url, key_cache):
    """``--key-cache``: a process remembers device keys that long; with 0 a revocation by another
    process (the CLI) refuses the device's very next download, as it always refuses its pushes."""
    from sync.wire.protocol import API, HEADER_DEVICE, HEADER_SIGNATURE, b64, request_signing_bytes
    data = tmp_path / "srv"
    assert _run("server", "--data-dir", str(data), "--db", db_url, "init").exit_code == 0
    token = _run("server", "--data-dir", str(data), "--db", db_url, "token", "dev-1").output.strip()
    proc, port = _start_server(data, "--db", db_url, "--key-cache", key_cache)
    log = ScanLog(tmp_path / "dev.sqlite", device_id="dev-1", boot_id="b",
                  server_encryption_key=load_x25519_private(data / "keys/server_x25519.pem").public_key())
    url = f"http://127.0.0.1:{port}"

    def policy() -> int:
        signature = b64(device_key.sign(request_signing_bytes("GET", f"{API}/policy", b"")))
        return requests.get(url + f"{API}/policy", headers={HEADER_DEVICE: "dev-1", HEADER_SIGNATURE: signature},
                            timeout=5).status_code
    try:
        client = make_client(url, log, device_key)
        client.enroll(token)
        assert policy() == 204  # nothing published; the key is looked up (and remembered unless 0)
        revoke = _run("server", "--data-dir", str(data), "--db", db_url, "revoke", "dev-1", "--reason", "stolen")
        assert revoke.exit_code == 0, revoke.output
        assert policy() == (401 if key_cache == "0" else 204)
        append_samples(log, 2)
        with pytest.raises(SyncError) as err:
            client.push()  # refused whatever the process remembers
        assert err.value.status == 401
        assert policy() == 401  # that refusal made it forget the key
    finally:
        proc.kill()
        proc.wait(10)
        log.close()
