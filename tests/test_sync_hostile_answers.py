"""Huge, endless and trickling answers: ``checkpoint sync`` (a real process) against a hostile HTTP
server on loopback stays within a few MB of memory and gives up each request at its deadline."""

from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from conftest import sample_verdict
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.scan.scanlog import ScanLog
from sync.wire.keyfiles import save_private_key, save_public_key

MIB = 1024 * 1024
HUGE = 400 * MIB
ZEROS = bytes(MIB)


def _send_huge(wfile, *, chunked: bool) -> None:
    sent = 0
    while sent < HUGE:
        if chunked:
            wfile.write(b"%x\r\n" % len(ZEROS) + ZEROS + b"\r\n")
        else:
            wfile.write(ZEROS)
        sent += len(ZEROS)


class Hostile(socketserver.StreamRequestHandler):
    """Answers each request as ``server.mode`` says (downloads other than the attacked one: 204)."""

    def handle(self) -> None:
        try:
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                length = 0
                while (header := self.rfile.readline()) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.rfile.read(length)
                self.server.requests.append(line.decode().strip())
                mode = self.server.mode
                target = self.server.target
                if target not in line.decode():
                    self.wfile.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                    continue
                if mode == "huge_declared":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % HUGE)
                    _send_huge(self.wfile, chunked=False)
                elif mode == "huge_endless_chunked":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    _send_huge(self.wfile, chunked=True)
                elif mode == "huge_error_body":
                    self.wfile.write(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n")
                    _send_huge(self.wfile, chunked=True)
                elif mode == "trickle":
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + bytes(100):
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(3)
                return
        except OSError:
            return


class HostileServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str, target: str):
        super().__init__(("127.0.0.1", 0), Hostile)
        self.mode, self.target, self.requests = mode, target, []


@pytest.fixture
def device_dir(tmp_path, server_x25519, publisher_key):
    data = tmp_path / "device"
    save_private_key(data / "keys/device_ed25519.pem", Ed25519PrivateKey.generate())
    save_public_key(data / "keys/server_x25519.pub.pem", server_x25519.public_key())
    save_public_key(data / "keys/publisher_ed25519.pub.pem", publisher_key.public_key())
    return data


def _run_sync(tmp_path, data, url: str, *, records: int, deadline: float = 6.0) -> tuple[int, float, float, str]:
    """``checkpoint sync --once`` as its own process: (exit code, seconds, peak RSS in MB, stderr)."""
    log = ScanLog(data / "scanlog.sqlite", device_id="dev-1", boot_id="b",
                  server_encryption_key=_server_key(data))
    for i in range(records):
        log.append(sample_verdict(i), wall_time=datetime.now(UTC), monotonic=float(i), clock_trusted=True)
    log.close()
    cfg = tmp_path / "device.toml"
    cfg.write_text(f'[device]\nid = "dev-1"\ndata_dir = "{data}"\n'
                   f'[sync]\nserver_url = "{url}"\ntimeout_s = 5\nrequest_deadline_s = 2\nbackoff_max_s = 0.5\n')
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "sync", "--config", str(cfg), "--once",
                             "--deadline", str(deadline)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killer = threading.Timer(60, proc.kill)  # a client without a total deadline would hang here
    killer.start()
    stderr = proc.stderr.read().decode()
    _pid, status, usage = os.wait4(proc.pid, 0)
    killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - start, usage.ru_maxrss / 1024, stderr


def _server_key(data):
    from sync.wire.keyfiles import load_x25519_public
    return load_x25519_public(data / "keys/server_x25519.pub.pem")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ATTACKS = {
    "push_answer_400MiB_declared": ("huge_declared", "POST /v1/push", 5),
    "push_error_body_400MiB": ("huge_error_body", "POST /v1/push", 5),
    "risk_answer_endless": ("huge_endless_chunked", "GET /v1/risk", 0),
    "trust_answer_400MiB_declared": ("huge_declared", "GET /v1/trust", 0),
    "push_answer_trickles": ("trickle", "POST /v1/push", 5),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_hostile_answer_costs_little_memory_and_time(name, tmp_path, device_dir):
    mode, target, records = ATTACKS[name]
    baseline_dir = tmp_path / "baseline"
    baseline_dir.mkdir()
    code, _, base_rss, _ = _run_sync(baseline_dir, device_dir, f"http://127.0.0.1:{_closed_port()}",
                                     records=records, deadline=1)
    assert code != 0
    server = HostileServer(mode, target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, seconds, rss, stderr = _run_sync(tmp_path, device_dir, f"http://127.0.0.1:{server.server_address[1]}",
                                               records=0)
    finally:
        server.shutdown()
        server.server_close()
    assert code != 0 and "sync failed" in stderr
    assert any(target in r for r in server.requests), server.requests
    assert rss - base_rss < 40, f"peak RSS {rss:.0f} MB against {base_rss:.0f} MB without a server"
    assert seconds < 6 + 2 + 10, f"took {seconds:.1f} s: a request outlived its deadline"
    if mode == "trickle":
        assert "no complete answer within 2 s" in stderr
    elif mode != "huge_error_body":
        assert "limit" in stderr or "no complete answer within 2 s" in stderr, stderr
