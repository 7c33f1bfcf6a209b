"""Backup and restore of a central server: its data directory (keys, published lists, risk list)
and its database, in one tar file readable by the owner only.

The database part is a consistent copy taken while the server runs: SQLite's online backup API,
or ``pg_dump --format=custom`` (one snapshot). The keys matter as much as the records: without
the X25519 key no sealed holder hash opens again, and without the publisher key every device
would have to be re-provisioned with a new root of trust.

Restore writes into an empty data directory and an empty database only (never over a live
server), then the server's schema migrations bring an older backup up to date when it starts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sync.server.filemodes import PRIVATE_DIR, PRIVATE_FILE, private_dir, secure_sqlite_file
from sync.server.storage import StorageError
from sync.wire.errors import CheckpointError
from sync.wire.fsutil import fsync_dir

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "db/server.sqlite"
PG_MEMBER = "db/server.pgdump"
#: what of the data directory goes into a backup (the SQLite database goes in separately)
DATA_PARTS = ("keys", "published", "risk")


class BackupError(CheckpointError):
    """A backup could not be written, or an archive cannot be restored here."""


@dataclass(frozen=True)
class BackupInfo:
    engine: str
    created_at: str
    schema: str | None
    files: int


def _sqlite_path(db_url: str) -> Path | None:
    return Path(db_url.removeprefix("sqlite:///")) if db_url.startswith("sqlite:///") else None


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client tools (Debian: postgresql-client)")
    return found


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=6 * 3600)
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {result.stderr.strip()[:500]}")


def backup(data_dir: Path, db_url: str, out: Path) -> BackupInfo:
    """Write ``out`` (a new file, mode 0600): the data directory's keys and lists, and the database."""
    from sync.server.store_pg import split_schema
    data_dir, out = Path(data_dir), Path(out)
    if not (data_dir / "keys").is_dir():
        raise BackupError(f"{data_dir} is not a server data directory (no keys/): check --data-dir")
    if out.exists():
        raise BackupError(f"{out} exists: choose a new file name (a backup never overwrites one)")
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=out.parent) as stage_name:
        stage = Path(stage_name)
        schema = None
        sqlite_path = _sqlite_path(db_url)
        if sqlite_path is not None:
            if not sqlite_path.exists():
                raise BackupError(f"database {sqlite_path} does not exist: check --db")
            engine, member = "sqlite", SQLITE_MEMBER
            (stage / "db").mkdir()
            source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
            target = sqlite3.connect(stage / SQLITE_MEMBER)
            try:
                source.backup(target)  # consistent while the server writes
            finally:
                target.close()
                source.close()
        elif db_url.startswith(("postgresql://", "postgres://")):
            engine, member = "postgresql", PG_MEMBER
            conninfo, schema = split_schema(db_url)
            (stage / "db").mkdir()
            cmd = [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                   f"--file={stage / PG_MEMBER}"]
            if schema:
                cmd.append(f"--schema={schema}")
            _run([*cmd, f"--dbname={conninfo}"], "pg_dump")
        else:
            raise StorageError(f"unsupported database URL {db_url!r}")
        info = BackupInfo(engine=engine, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                          schema=schema, files=0)
        tmp = out.with_name(f".{out.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        count = 0
        try:
            with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w") as tar:
                for part in DATA_PARTS:
                    if (data_dir / part).exists():
                        tar.add(data_dir / part, arcname=f"data/{part}",
                                filter=lambda t: None if t.name.endswith(".tmp") else t)
                        count += sum(1 for p in (data_dir / part).rglob("*") if p.is_file())
                tar.add(stage / member, arcname=member)
                manifest = json.dumps({"format": FORMAT, "engine": engine, "created_at": info.created_at,
                                       "schema": schema, "db": member}, indent=1).encode()
                (stage / MANIFEST).write_bytes(manifest)
                tar.add(stage / MANIFEST, arcname=MANIFEST)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, out)
            fsync_dir(out.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    log.info("event=server_backup_written path=%s engine=%s files=%d", out, engine, count)
    return BackupInfo(engine, info.created_at, schema, count)


def _read_manifest(tar: tarfile.TarFile, archive: Path) -> dict:
    try:
        member = tar.extractfile(MANIFEST)
        manifest = json.loads(member.read()) if member else None
    except (KeyError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} is not a checkpoint server backup (format {FORMAT})")
    return manifest


def restore(archive: Path, data_dir: Path, db_url: str) -> BackupInfo:
    """Restore ``archive`` into an empty (or new) ``data_dir`` and an empty database at ``db_url``."""
    from sync.server.store_pg import split_schema
    archive, data_dir = Path(archive), Path(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty: restore into a new directory (never over a server's data)")
    try:
        tar = tarfile.open(archive, mode="r")  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"cannot read {archive}: {exc}") from None
    with tar, tempfile.TemporaryDirectory(prefix=".restore-") as stage_name:
        manifest = _read_manifest(tar, archive)
        engine = manifest["engine"]
        stage = Path(stage_name)
        tar.extractall(stage, filter="data")  # no absolute paths, no "..", no devices or links out
        sqlite_path = _sqlite_path(db_url)
        if engine == "sqlite":
            if sqlite_path is None:
                raise BackupError("this backup holds an SQLite database: restore it with --db sqlite:///PATH")
            if sqlite_path.exists():
                raise BackupError(f"{sqlite_path} exists: restore into a new database file")
            private_dir(data_dir)
            secure_sqlite_file(sqlite_path)
            source = sqlite3.connect(stage / SQLITE_MEMBER)
            target = sqlite3.connect(sqlite_path)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
        elif engine == "postgresql":
            if not db_url.startswith(("postgresql://", "postgres://")):
                raise BackupError("this backup holds a PostgreSQL dump: restore it with --db postgresql://...")
            conninfo, schema = split_schema(db_url)
            if schema != manifest.get("schema"):
                raise BackupError(f"the dump is of schema {manifest.get('schema') or 'public'}: restore it into "
                                  f"a database where that schema is free (--db ...?schema={manifest.get('schema')})")
            _refuse_used_database(conninfo, schema)
            private_dir(data_dir)
            _run([_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--single-transaction",
                  "--exit-on-error", f"--dbname={conninfo}", str(stage / PG_MEMBER)], "pg_restore")
        else:
            raise BackupError(f"{archive}: unknown database engine {engine!r}")
        private_dir(data_dir)
        count = 0
        for part in DATA_PARTS:
            source_dir = stage / "data" / part
            if source_dir.exists():
                shutil.copytree(source_dir, data_dir / part)
                count += sum(1 for p in source_dir.rglob("*") if p.is_file())
        for path in data_dir.rglob("*"):  # a new directory: owner-only throughout
            path.chmod(PRIVATE_DIR if path.is_dir() else PRIVATE_FILE)
    log.info("event=server_restored archive=%s engine=%s created_at=%s action=start the server; devices "
             "resend what they logged after this backup", archive, engine, manifest.get("created_at"))
    return BackupInfo(engine, manifest.get("created_at", ""), manifest.get("schema"), count)


def _refuse_used_database(conninfo: str, schema: str | None) -> None:
    """Restore only where the server's tables do not exist yet."""
    import psycopg
    name = schema or "public"
    try:
        with psycopg.connect(conninfo, connect_timeout=10) as db:
            found = db.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                               "AND table_name IN ('records', 'devices')", (name,)).fetchone()
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to PostgreSQL to restore: {exc}") from None
    if found:
        raise BackupError(f"schema {name} already holds a server's tables: restore into an empty database")
