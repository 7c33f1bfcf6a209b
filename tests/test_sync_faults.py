"""Fault scenarios: after each one and recovery, the server holds exactly the device's records."""

import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import append_samples, token_for
from faultproxy import Fault, FaultProxy
from test_sync_push import assert_server_matches, make_client

from edge.scan.scanlog import ScanLog
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings, init_data_dir
from sync.server.storage import open_storage
from sync.wire.keyfiles import save_private_key, save_public_key


@pytest.fixture
def proxied(db_url, server_x25519, publisher_key):
    settings = ServerSettings(db_url=db_url, encryption_key=server_x25519, publisher_key=publisher_key)
    with ServerThread(create_app(settings)) as srv, FaultProxy("127.0.0.1", srv.port) as proxy:
        proxy.storage = srv._server.config.app.state.storage
        proxy.token = token_for(db_url, "dev-1")
        yield proxy


FAULTS = {
    "drop_after_commit": Fault("drop_response", match="POST /v1/push", skip=1),
    "reset": Fault("reset", match="POST /v1/push", skip=2),
    "drop_request": Fault("drop_request", match="POST /v1/push"),
    "delay_past_timeout": Fault("delay", match="POST /v1/push", skip=1, seconds=1.5),
    "http_500": Fault("status", match="POST /v1/push", skip=1, status=500),
    "http_503_retry_after": Fault("status", match="POST /v1/push", skip=1, status=503, retry_after="1"),
    "truncated_body": Fault("truncate", match="POST /v1/push", skip=2),
    "download_truncated": Fault("truncate", match="GET /v1/time"),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_single_fault_then_recovery(name, proxied, scanlog, device_key, publisher_key):
    client = make_client(proxied.url, scanlog, device_key, batch_size=10, backoff_max_s=2.0,
                         publisher_keys=[publisher_key.public_key()])
    client.timeout_s = 1.0
    client.enroll(proxied.token)
    append_samples(scanlog, 45)
    f = FAULTS[name]
    proxied.add(Fault(f.action, f.match, f.skip, f.seconds, f.status, f.retry_after))
    delays: list[float] = []
    client.sync_until_done(deadline_s=30, sleep=delays.append)
    assert proxied.pending() == 0 and len(proxied.applied) == 1
    assert delays, "the fault must have caused one retry"
    if name == "http_503_retry_after":
        assert delays == [1.0]
    assert_server_matches(proxied.storage, scanlog)


def test_many_random_faults(proxied, scanlog, device_key, publisher_key):
    rng = random.Random(7)
    client = make_client(proxied.url, scanlog, device_key, batch_size=8, backoff_max_s=0.05,
                         publisher_keys=[publisher_key.public_key()])
    client.timeout_s = 1.0
    client.enroll(proxied.token)
    kinds = [Fault("drop_response"), Fault("reset"), Fault("truncate"), Fault("status", status=503, retry_after="0"),
             Fault("status", status=500), Fault("drop_request"), Fault("delay", seconds=0.05)]
    for round_ in range(4):
        append_samples(scanlog, 30, start=round_ * 30)
        for _ in range(6):
            k = rng.choice(kinds)
            proxied.add(Fault(k.action, match=rng.choice(["POST /v1/push", "GET", ""]), skip=rng.randint(0, 3),
                              seconds=k.seconds, status=k.status, retry_after=k.retry_after))
        client.sync_until_done(deadline_s=30, sleep=lambda _s: None)
    assert len(proxied.applied) >= 12
    assert_server_matches(proxied.storage, scanlog)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _device_config(tmp_path, server_url, server_x25519, device_key, batch_size=50):
    data = tmp_path / "device"
    save_private_key(data / "keys/device_ed25519.pem", device_key)
    save_public_key(data / "keys/server_x25519.pub.pem", server_x25519.public_key())
    cfg = tmp_path / "device.toml"
    cfg.write_text(f'[device]\nid = "dev-1"\ndata_dir = "{data}"\n'
                   f'[sync]\nserver_url = "{server_url}"\nbatch_size = {batch_size}\ntimeout_s = 5\n'
                   f'backoff_max_s = 0.5\n')
    return cfg, data


def test_kill_9_device_during_upload(tmp_path, db_url, server_x25519, publisher_key, device_key):
    settings = ServerSettings(db_url=db_url, encryption_key=server_x25519, publisher_key=publisher_key)
    with ServerThread(create_app(settings)) as srv, FaultProxy("127.0.0.1", srv.port) as proxy:
        storage = srv._server.config.app.state.storage
        cfg, data = _device_config(tmp_path, proxy.url, server_x25519, device_key, batch_size=20)
        log = ScanLog(data / "scanlog.sqlite", device_id="dev-1", boot_id="b",
                      server_encryption_key=server_x25519.public_key())
        append_samples(log, 400)
        for _ in range(40):  # slow every push down so the kill lands mid-upload
            proxy.add(Fault("delay", match="POST /v1/push", seconds=0.05))
        env = {**os.environ, "CHECKPOINT_ENROLL_TOKEN": token_for(db_url, "dev-1")}
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "sync", "--config", str(cfg), "--once"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while storage.acked_seq("dev-1") < 100 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        held = storage.acked_seq("dev-1")
        assert 0 < held < 400, f"kill did not land mid-upload (held={held})"
        assert log.acked_seq <= held
        make_client(proxy.url, log, device_key, batch_size=50).sync_until_done(deadline_s=30)
        assert_server_matches(storage, log)
        log.close()


def test_server_killed_and_restarted_mid_sync(tmp_path, server_x25519, device_key):
    from sync.wire.keyfiles import save_private_key as save
    server_dir = tmp_path / "server"
    save(server_dir / "keys/server_x25519.pem", server_x25519)
    init_data_dir(server_dir)  # keeps the key above, makes the rest
    token = token_for(f"sqlite:///{server_dir / 'server.sqlite'}", "dev-1")
    port = _free_port()
    cmd = [sys.executable, "-m", "edge.cli", "server", "--data-dir", str(server_dir), "--port", str(port)]

    def start():
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return proc
            time.sleep(0.05)
        proc.kill()
        raise RuntimeError("server did not start")

    proc = start()
    log = ScanLog(tmp_path / "dev.sqlite", device_id="dev-1", boot_id="b",
                  server_encryption_key=server_x25519.public_key())
    try:
        client = make_client(f"http://127.0.0.1:{port}", log, device_key, batch_size=25, backoff_max_s=0.2)
        client.enroll(token)
        append_samples(log, 3000)
        client.interval_s = 0.05
        client.start()
        deadline = time.monotonic() + 30
        while log.acked_seq < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()
        proc.wait(10)
        assert 0 < log.acked_seq < 3000, "kill did not land mid-sync"
        append_samples(log, 50, start=3000)  # scans continue while the server is down
        time.sleep(0.3)
        proc = start()
        deadline = time.monotonic() + 60
        while log.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        client.stop()
    finally:
        proc.kill()
        proc.wait(10)
    storage = open_storage(f"sqlite:///{server_dir / 'server.sqlite'}")
    assert_server_matches(storage, log)
    storage.close()
    log.close()
