"""The shipped nginx configuration in front of two server instances, run by a real nginx on
loopback: TLS for devices, the device side serving only the device API, bodies over the limit
refused before a server sees them, the admin side apart, plain HTTP only redirecting."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
import requests
from conftest import append_samples
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_server_metrics import scrape
from test_sync_push import make_client

from edge.devtools.server_procs import free_port, new_server_database, raw_public_key
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.wire.protocol import API

SITE = Path(__file__).resolve().parents[1] / "sync" / "server" / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(NGINX is None and not os.environ.get("CI"), reason="nginx is not installed")


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "fullchain.pem", tmp / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def site_for_test(upstreams: list[int], ports: dict[str, int], cert: Path, key: Path) -> str:
    """The shipped file with this machine's addresses: loopback ports, this test's certificate."""
    text = SITE.read_text()
    text = re.sub(r"^\s*listen \[::\].*\n", "", text, flags=re.M)  # no IPv6 assumed here
    text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{ports['device']} ssl;")
    text = text.replace("listen 8443 ssl;", f"listen 127.0.0.1:{ports['admin']} ssl;")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{ports['http']};")
    text = text.replace("/etc/checkpoint-server/tls/fullchain.pem", str(cert))
    text = text.replace("/etc/checkpoint-server/tls/privkey.pem", str(key))
    assert "127.0.0.1:8081" in text and "127.0.0.1:8082" in text
    text = text.replace("127.0.0.1:8081", f"127.0.0.1:{upstreams[0]}").replace("127.0.0.1:8082",
                                                                               f"127.0.0.1:{upstreams[1]}")
    return text


def nginx_conf(tmp: Path, site: Path) -> Path:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"  {kind}_temp_path {tmp / kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(f"{user}worker_processes 1;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} warn;\n"
                    f"events {{ worker_connections 512; }}\nhttp {{\n  access_log off;\n{temp}\n"
                    f"  include {site};\n}}\n")
    return conf


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@pytest.fixture
def proxied(tmp_path, server_x25519):
    """Two server instances on one SQLite database behind nginx; yields (ports, cert, servers)."""
    assert NGINX is not None, "nginx must be installed where CI runs (scripts/bootstrap.sh --dev)"
    db_url = new_server_database(f"sqlite:///{tmp_path / 'server.sqlite'}")
    settings = ServerSettings(db_url=db_url, encryption_key=server_x25519)
    with ServerThread(create_app(settings)) as a, ServerThread(create_app(settings)) as b:
        cert, key = self_signed(tmp_path)
        ports = {"device": free_port(), "admin": free_port(), "http": free_port()}
        site = tmp_path / "checkpoint.conf"
        site.write_text(site_for_test([a.port, b.port], ports, cert, key))
        conf = nginx_conf(tmp_path, site)
        check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stderr  # the shipped configuration is valid for Debian's nginx
        proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
                                stderr=subprocess.PIPE)
        try:
            for port in ports.values():
                wait_port(port)
            yield ports, cert, [a, b]
        finally:
            proc.terminate()
            proc.wait(10)


def test_devices_sync_over_tls_through_the_proxy(proxied, scanlog, device_key):
    ports, cert, servers = proxied
    session = requests.Session()
    session.trust_env = False  # this test's certificate, not a CA bundle from the environment
    session.verify = str(cert)
    servers[0]._server.config.app.state.storage.enroll("dev-1", raw_public_key(device_key))
    client = make_client(f"https://127.0.0.1:{ports['device']}", scanlog, device_key)
    client.transport.session.trust_env = False  # the device's own (deadline-bounded) session, this certificate
    client.transport.session.verify = str(cert)
    append_samples(scanlog, 40)
    assert client.push() == 40
    stored = sum(scrape(s.url)[("checkpoint_ingest_records_total", ())] for s in servers)
    assert stored == 40
    # both instances served requests: the tier is stateless, any instance answers any device
    for _ in range(6):
        assert session.get(f"https://127.0.0.1:{ports['device']}{API}/health", timeout=5).ok
    health = [scrape(s.url).get(("checkpoint_http_requests_total", (("route", f"{API}/health"),
                                                                    ("status", "200"))), 0) for s in servers]
    assert all(n > 0 for n in health)


def test_device_side_serves_only_the_device_api(proxied):
    ports, cert, _servers = proxied
    base = f"https://127.0.0.1:{ports['device']}"
    for path in ("/", "/metrics", "/openapi.json", f"{API}/fleet"):
        assert requests.get(base + path, verify=str(cert), timeout=5).status_code == 404, path
    admin = f"https://127.0.0.1:{ports['admin']}"  # the admin side, from an allowed address
    assert requests.get(admin + "/metrics", verify=str(cert), timeout=5).status_code == 200
    assert requests.get(admin + "/", verify=str(cert), timeout=5).status_code == 200
    plain = requests.get(f"http://127.0.0.1:{ports['http']}{API}/health", timeout=5, allow_redirects=False)
    assert plain.status_code == 301 and plain.headers["location"].startswith("https://")


def test_a_body_over_the_limit_never_reaches_a_server(proxied):
    ports, cert, servers = proxied
    before = [scrape(s.url) for s in servers]
    big = b"0" * (17 * 1024 * 1024)
    resp = requests.post(f"https://127.0.0.1:{ports['device']}{API}/push", data=big, verify=str(cert), timeout=30,
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    after = [scrape(s.url) for s in servers]
    push_requests = [sum(v for (name, labels), v in m.items() if name == "checkpoint_http_requests_total"
                         and ("route", f"{API}/push") in labels) for m in (*before, *after)]
    assert push_requests[:2] == push_requests[2:]  # neither instance counted a push
