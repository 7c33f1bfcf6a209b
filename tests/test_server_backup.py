"""Backup of a running server and restore onto a new one, SQLite and PostgreSQL, through the
``checkpoint server backup|restore`` commands: the restored server holds what the backup held,
opens the holder hashes with the restored key, and ingests the device's later records."""

from __future__ import annotations

import stat
import tarfile
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from conftest import PG_DSN, _pg_available, append_samples
from test_sync_push import make_client

from edge.cli import main
from edge.devtools.server_procs import new_server_data_dir, raw_public_key
from edge.scan.scanlog import ScanLog
from sync.server.app import create_app
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.wire.keyfiles import load_x25519_public


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    """(source db URL, target db URL): SQLite files, or one schema in two new PostgreSQL databases."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'src' / 'server.sqlite'}", f"sqlite:///{tmp_path / 'dst' / 'server.sqlite'}"
        return
    if not _pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    names = [f"bk_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    schema = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_DSN.rsplit("/", 1)[0]
    yield f"{base}/{names[0]}?schema={schema}", f"{base}/{names[1]}?schema={schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result


def test_backup_of_a_running_server_restores_onto_a_new_one(engine, tmp_path, device_key):
    src_db, dst_db = engine
    src, dst = tmp_path / "src", tmp_path / "dst"
    settings = new_server_data_dir(src, db_url=src_db)
    scanlog = ScanLog(tmp_path / "device.sqlite", device_id="dev-1", boot_id="b",
                      server_encryption_key=load_x25519_public(src / "keys/server_x25519.pub.pem"))
    (src / "published").mkdir()
    (src / "published" / "policy.cpenv").write_bytes(b"signed policy bytes")
    archive = tmp_path / "backup.tar"
    with ServerThread(create_app(settings)) as srv:
        srv._server.config.app.state.storage.enroll("dev-1", raw_public_key(device_key))
        client = make_client(srv.url, scanlog, device_key)
        append_samples(scanlog, 40)
        client.push()
        result = run("server", "backup", "--data-dir", str(src), "--db", src_db, "--out", str(archive))
        assert result.exit_code == 0, result.output
        append_samples(scanlog, 10, start=40)  # after the backup: lost with the old server
        client.push()
        before = srv._server.config.app.state.storage.records("dev-1")[:40]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", "data/keys/server_x25519.pem", "data/published/policy.cpenv"} <= names
    again = run("server", "backup", "--data-dir", str(src), "--db", src_db, "--out", str(archive))
    assert again.exit_code != 0 and "exists" in again.output  # never overwrites a backup

    result = run("server", "restore", str(archive), "--data-dir", str(dst), "--db", dst_db)
    assert result.exit_code == 0, result.output
    assert (dst / "keys/server_x25519.pem").read_bytes() == (src / "keys/server_x25519.pem").read_bytes()
    assert (dst / "published/policy.cpenv").read_bytes() == b"signed policy bytes"
    assert stat.S_IMODE(dst.stat().st_mode) == 0o700
    # restoring over it again is refused: never over a server's data
    twice = run("server", "restore", str(archive), "--data-dir", str(tmp_path / "dst2"), "--db", dst_db)
    assert twice.exit_code != 0 and ("exists" in twice.output or "already holds" in twice.output)

    restored = ServerSettings.from_data_dir(dst, db_url=dst_db)
    with ServerThread(create_app(restored)) as srv:
        storage = srv._server.config.app.state.storage
        held = storage.records("dev-1")
        assert held == before  # the backup's records, holder hashes opened with the restored key
        assert all(r["holder_hash"] is not None for r in held if r["decision"] != "CHECK")
        assert storage.acked_seq("dev-1") == 40
        # the device logs on; its next push finds the server behind (41..50 were lost with the old one),
        # rewinds its acknowledgement and resends what its card still holds: nothing lost, nothing doubled
        append_samples(scanlog, 5, start=50)
        make_client(srv.url, scanlog, device_key).push()
        assert [r["seq"] for r in storage.records("dev-1")] == list(range(1, 56))
        assert [r["hash"].hex() for r in storage.records("dev-1")] == [r["hash"] for r in scanlog.records()]
        assert storage.acked_seq("dev-1") == scanlog.acked_seq == 55
        summary = storage.fleet()[0]
        assert (summary.epoch, summary.forks, summary.lost_for_good) == (0, (), 0)
        assert storage.ops_stats(online_since="", silent_before="").held_beyond_gap == 0

def test_restore_refuses_a_non_empty_data_dir_and_a_foreign_file(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "something").write_text("x")
    (tmp_path / "not-a-backup.tar").write_bytes(b"hello")
    result = run("server", "restore", str(tmp_path / "not-a-backup.tar"), "--data-dir", str(tmp_path / "busy"))
    assert result.exit_code == 1 and "not empty" in result.output
    result = run("server", "restore", str(tmp_path / "not-a-backup.tar"), "--data-dir", str(tmp_path / "new"))
    assert result.exit_code == 1 and "cannot read" in result.output
    assert not (tmp_path / "new").exists()
    result = run("server", "backup", "--data-dir", str(tmp_path / "busy"), "--out", str(tmp_path / "b.tar"))
    assert result.exit_code == 1 and "not a server data directory" in result.output
