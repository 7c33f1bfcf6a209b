"""Real ``checkpoint server`` processes on loopback (scale-out tests, ``checkpoint bench server``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from sync.server.settings import ServerSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_server_data_dir(path: Path, db_url: str | None = None) -> ServerSettings:
    """A new server data directory with its keys, as an installation makes it first (one place to
    change if how a server is initialised changes)."""
    from sync.server.settings import init_data_dir
    return init_data_dir(Path(path), db_url=db_url)


def new_server_database(db_url: str) -> str:
    """Create the server's tables at ``db_url`` (what initialising a server does); return the URL."""
    from sync.server.storage import open_storage
    open_storage(db_url, create=True).close()
    return db_url


def raw_public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


class ServerProcess:
    """``checkpoint server`` in its own process: ``with ServerProcess(data_dir, db_url) as srv: srv.url``."""

    def __init__(self, data_dir: Path, db_url: str, *, port: int | None = None, options: tuple[str, ...] = (),
                 ready_path: str = "/v1/health"):
        """``options``: more ``checkpoint server`` options (``--serve admin``, ``--insecure-cookies``);
        ``ready_path`` answers 200 once the server serves (``/login`` for the admin side alone)."""
        self.ready_path = ready_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "edge.cli", "server", "--data-dir", str(data_dir), "--db", db_url,
               "--host", "127.0.0.1", "--port", str(self.port), *options]
        self.log = Path(data_dir).parent / f"server-{self.port}.log"
        self._log_fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log_fh, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + self.ready_path, timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server on {self.url} not ready: {self.log.read_text()[-2000:]}")

    def rss_mb(self) -> float:
        """Resident memory of the server process now (MiB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_fh.close()

    def __enter__(self) -> ServerProcess:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()
