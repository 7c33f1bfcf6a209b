"""Owner-only modes on real files: the data directory 0700, keys and the SQLite database (with its
-wal and -shm while the server runs) 0600, under the usual umask 022; an old install is tightened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import append_samples
from test_sync_push import make_client

from edge.devtools.server_procs import new_server_data_dir, new_server_database, raw_public_key
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.server.storage import open_storage


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_server_data_is_owner_only(tmp_path, umask_022, scanlog, device_key):
    data = tmp_path / "server-data"
    settings = new_server_data_dir(data)
    with ServerThread(create_app(settings)) as srv:
        srv._server.config.app.state.storage.enroll("dev-1", raw_public_key(device_key))
        client = make_client(srv.url, scanlog, device_key)
        append_samples(scanlog, 5)
        client.push()
        files = sorted(p for p in data.rglob("*") if p.is_file())
        names = {p.relative_to(data).as_posix() for p in files}
        # the database is open and in WAL mode: its companions exist now
        assert {"server.sqlite", "server.sqlite-wal", "server.sqlite-shm",
                "keys/server_x25519.pem", "keys/publisher_ed25519.pem"} <= names
        assert {p.relative_to(data).as_posix(): oct(mode(p)) for p in files} == \
            {name: oct(0o600) for name in names}
    assert mode(data) == 0o700 and mode(data / "keys") == 0o700


def test_an_old_world_readable_install_is_tightened_at_start(tmp_path, umask_022):
    data = tmp_path / "server-data"
    new_server_data_dir(data)
    for path in [data, data / "keys"]:
        path.chmod(0o755)
    # the keys an install made before owner-only modes had (the holder-id key came later, and a
    # loose one is refused outright rather than tightened: see sync.wire.identifiers)
    for name in ("server_x25519.pem", "server_x25519.pub.pem", "publisher_ed25519.pem", "publisher_ed25519.pub.pem"):
        (data / "keys" / name).chmod(0o644)
    db = data / "server.sqlite"
    new_server_database(f"sqlite:///{db}")
    db.chmod(0o644)
    settings = ServerSettings.from_data_dir(data)  # what `checkpoint server` does first
    storage = open_storage(settings.db_url)
    storage.close()
    assert mode(data) == 0o700 and mode(data / "keys") == 0o700
    assert {mode(p) for p in (data / "keys").iterdir()} == {0o600}
    assert mode(db) == 0o600
