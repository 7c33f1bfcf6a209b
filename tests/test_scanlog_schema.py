"""Scan-log schema versions: real files written by the scan log, migrated forward, refused when too new."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from conftest import append_samples

from edge.scan.scanlog import MIGRATIONS, SCHEMA, ScanLog, ScanLogError
from edge.scan.schema import Migration, migrate, user_version

LATEST = MIGRATIONS[-1].version


def open_log(path: Path, key) -> ScanLog:
    return ScanLog(path, device_id="dev-1", boot_id="boot-a", server_encryption_key=key.public_key())


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_version_1_file_with_records_is_migrated_and_keeps_them(tmp_path, server_x25519):
    path = tmp_path / "scanlog.sqlite"
    log = open_log(path, server_x25519)
    append_samples(log, 20)
    before = log.records()
    log.close()
    with raw(path) as db:  # make it exactly what version-1 software left: no index, user_version 1
        db.execute("DROP INDEX records_wall_time")
        db.execute("PRAGMA user_version = 1")
    log = open_log(path, server_x25519)
    try:
        assert log.schema_version == LATEST
        assert log.records() == before and log.verify_chain() == 20
        plan = log._db.execute("EXPLAIN QUERY PLAN DELETE FROM records WHERE wall_time < ?", ("x",)).fetchall()
        assert "records_wall_time" in str(plan)
        append_samples(log, 1, start=20)
        assert log.verify_chain() == 21
    finally:
        log.close()


def test_file_from_before_schema_versions_is_adopted(tmp_path, server_x25519):
    path = tmp_path / "scanlog.sqlite"
    with raw(path) as db:
        db.executescript(SCHEMA)  # what the scan log wrote before it had versions
        db.execute("INSERT INTO meta VALUES ('device_id', 'dev-1')")
    assert user_version(raw(path)) == 0
    log = open_log(path, server_x25519)
    assert log.schema_version == LATEST
    append_samples(log, 3)
    assert log.verify_chain() == 3
    log.close()


def test_newer_additive_file_is_used_by_older_software(tmp_path, server_x25519, caplog):
    path = tmp_path / "scanlog.sqlite"
    open_log(path, server_x25519).close()
    with raw(path) as db:  # a newer release added something and was then rolled back
        db.execute("CREATE TABLE later_feature (x)")
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    log = open_log(path, server_x25519)
    append_samples(log, 2)
    assert log.verify_chain() == 2 and "schema_newer" in caplog.text
    log.close()


def test_newer_incompatible_file_is_refused_and_kept(tmp_path, server_x25519):
    path = tmp_path / "scanlog.sqlite"
    log = open_log(path, server_x25519)
    append_samples(log, 2)
    log.close()
    with raw(path) as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
        db.execute("INSERT INTO meta VALUES ('schema_min_reader', ?)", (str(LATEST + 1),))
    with pytest.raises(ScanLogError, match="Install the newer release again"):
        open_log(path, server_x25519)
    assert user_version(raw(path)) == LATEST + 1
    assert raw(path).execute("SELECT COUNT(*) FROM records").fetchone()[0] == 2


def test_failed_migration_leaves_the_previous_version(tmp_path):
    path = tmp_path / "x.sqlite"
    steps = (Migration(1, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);", "base"),
             Migration(2, "CREATE TABLE half (x);\nINSERT INTO no_such_table VALUES (1);", "breaks midway"))
    db = raw(path)
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, steps, name="test")
    assert user_version(db) == 1
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    fixed = (steps[0], Migration(2, "CREATE TABLE half (x);", "fixed", additive=False))
    assert migrate(db, fixed, name="test") == 2
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_min_reader'").fetchone() == ("2",)


def test_concurrent_openers_migrate_once(tmp_path, server_x25519):
    path = tmp_path / "scanlog.sqlite"
    with raw(path) as db:  # a file the scan log wrote before versions: always in WAL mode
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
    errors, logs = [], []

    def opener() -> None:
        try:
            logs.append(open_log(path, server_x25519))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and {log.schema_version for log in logs} == {LATEST}
    for log in logs:
        log.close()
