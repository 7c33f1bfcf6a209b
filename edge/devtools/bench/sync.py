"""``checkpoint bench sync``: durable scan-log appends, backlog drain, server ingest (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.devtools.bench.report import median
from edge.scan.scanlog import ScanLog
from edge.verdict import Decision, Reason, Verdict
from sync.wire.identifiers import IdentifierKey, holder_hash
from sync.wire.sealed import HolderOpener

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


#: the bench's own identifier key (holder values only need to look like real ones)
_ID_KEY = IdentifierKey.generate()


def _verdict(i: int) -> Verdict:
    if i % 5 == 4:
        return Verdict(Decision.CHECK, Reason.NOT_A_PASS)
    return Verdict(Decision.PASS, Reason.OK, format="CP1", kind="resident", holder_hash=holder_hash(str(i), _ID_KEY))


def _log(path: Path, key: X25519PrivateKey, synchronous: str = "FULL") -> ScanLog:
    return ScanLog(path, device_id="bench-1", boot_id="bench", server_encryption_key=key.public_key(),
                   synchronous=synchronous)


def bench_appends(tmp: Path, key: X25519PrivateKey, n: int, runs: int = 5) -> list[float]:
    """Durable appends/s of each run (the device path: one commit, synchronous=FULL, per record)."""
    rates = []
    for r in range(runs):
        log = _log(tmp / f"appends-{r}.sqlite", key)
        start = time.perf_counter()
        for i in range(n):
            log.append(_verdict(i), wall_time=datetime.now(UTC), monotonic=time.monotonic(), clock_trusted=True,
                       policy_version=1, risk_version=1)
        rates.append(n / (time.perf_counter() - start))
        log.close()
    return rates


def bench_fdatasync(tmp: Path, n: int, runs: int = 5) -> list[float]:
    """Raw disk rate beside the appends figure: append 4 KiB to a file and fdatasync it (what one
    WAL commit costs at least; SQLite syncs with fdatasync on Linux), per second, for each run."""
    rates = []
    block = os.urandom(4096)
    for r in range(runs):
        fd = os.open(tmp / f"fsync-{r}.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            start = time.perf_counter()
            for _ in range(n):
                os.write(fd, block)
                os.fdatasync(fd)
            rates.append(n / (time.perf_counter() - start))
        finally:
            os.close(fd)
    return rates


def fill_backlog(log: ScanLog, n: int, chunk: int = 20_000) -> None:
    now = datetime.now(UTC)
    for start in range(0, n, chunk):
        log.append_many([(_verdict(i), now, float(i), True, 1, 1) for i in range(start, min(n, start + chunk))])


def bench_drain(tmp: Path, key: X25519PrivateKey, n: int, batch_size: int = 5000) -> tuple[float, float]:
    """(seconds to fill, seconds to drain) an ``n``-record backlog to a local SQLite server over HTTP."""
    from edge.device.sync_client import SyncClient
    from sync.server.app import create_app
    from sync.server.enrollment import issue_token
    from sync.server.runner import ServerThread
    from sync.server.settings import ServerSettings
    from sync.server.storage import open_storage
    log = _log(tmp / "backlog.sqlite", key)
    t0 = time.perf_counter()
    fill_backlog(log, n)
    fill_s = time.perf_counter() - t0
    device_key = Ed25519PrivateKey.generate()
    settings = ServerSettings(db_url=f"sqlite:///{tmp / 'server.sqlite'}", encryption_key=key)
    storage = open_storage(settings.db_url, create=True)
    token = issue_token(storage, log.device_id)
    with ServerThread(create_app(settings, storage)) as srv:
        client = SyncClient(srv.url, log, device_key, batch_size=batch_size, timeout_s=60)
        client.enroll(token)
        start = time.perf_counter()
        client.push()
        drain_s = time.perf_counter() - start
    if log.pending():
        raise RuntimeError(f"backlog not drained: {log.pending()} left")
    log.close()
    return fill_s, drain_s


def bench_recovery(tmp: Path, key: X25519PrivateKey, unsent: int, backup_age: int,
                   batch_size: int = 5000) -> float:
    """Seconds for a device with ``unsent`` records waiting to converge with a server whose
    database was just restored from a backup ``backup_age`` records old (it resends those too).

    The device has had ``2 * backup_age`` records acknowledged; the backup was taken halfway.
    """
    import shutil
    import sqlite3

    from edge.device.sync_client import SyncClient
    from sync.server.app import create_app
    from sync.server.enrollment import issue_token
    from sync.server.runner import ServerThread
    from sync.server.settings import ServerSettings
    from sync.server.storage import open_storage

    db_path = tmp / "recovery-server.sqlite"
    publisher = Ed25519PrivateKey.generate()
    settings = ServerSettings(db_url=f"sqlite:///{db_path}", encryption_key=key, publisher_key=publisher)
    storage = open_storage(settings.db_url, create=True)
    token = issue_token(storage, "bench-1")
    storage.close()
    log = _log(tmp / "recovery-device.sqlite", key, synchronous="NORMAL")
    device_key = Ed25519PrivateKey.generate()

    def client(url: str) -> SyncClient:
        return SyncClient(url, log, device_key, publisher_keys=[publisher.public_key()], batch_size=batch_size,
                          timeout_s=60)
    with ServerThread(create_app(settings)) as srv:
        client(srv.url).enroll(token)
        fill_backlog(log, backup_age)
        client(srv.url).push()
        src, dst = sqlite3.connect(db_path), sqlite3.connect(tmp / "recovery-backup.sqlite")
        src.backup(dst)
        src.close()
        dst.close()
        fill_backlog(log, backup_age)
        client(srv.url).push()
    fill_backlog(log, unsent)
    for extra in ("-wal", "-shm"):
        Path(f"{db_path}{extra}").unlink(missing_ok=True)
    shutil.copy(tmp / "recovery-backup.sqlite", db_path)
    with ServerThread(create_app(settings)) as srv:
        start = time.perf_counter()
        client(srv.url).sync_until_done(deadline_s=3600)
        seconds = time.perf_counter() - start
        storage = srv._server.config.app.state.storage
        if storage.acked_seq("bench-1") != log.head_seq or log.pending():
            raise RuntimeError("recovery benchmark did not converge")
    log.close()
    return seconds


def bench_ingest(db_url: str, key: X25519PrivateKey, bodies: list[bytes], n: int) -> tuple[float, float]:
    """(records/s wall clock, this process's CPU µs per record) through the server's push path minus
    HTTP: look up the device key, verify the request signature, parse and validate the JSON batch,
    check the chain, decrypt, store."""
    from sync.server.ingest import ingest_body, verify_signature
    from sync.server.storage import open_storage
    from sync.wire.protocol import API, request_signing_bytes
    device = Ed25519PrivateKey.generate()
    path = f"{API}/push"
    signed = [(device.sign(request_signing_bytes("POST", path, body)), body) for body in bodies]
    storage = open_storage(db_url, create=True)  # a scratch database of this benchmark
    try:
        storage.enroll("bench-1", device.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
        opener = HolderOpener(key)
        cpu_start, start = time.process_time(), time.perf_counter()
        for signature, body in signed:
            raw = storage.active_device_key("bench-1")
            if raw is None or not verify_signature(raw, signature, "POST", path, body):
                raise RuntimeError("ingest benchmark: signature refused")
            ingest_body(storage, opener, "bench-1", body)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if storage.acked_seq("bench-1") != n:
            raise RuntimeError("ingest benchmark did not store every record")
    finally:
        storage.close()
    return n / elapsed, cpu * 1e6 / n


def _pg_ingest(key: X25519PrivateKey, bodies: list[bytes], n: int) -> tuple[float, float] | None:
    try:
        import psycopg
        with psycopg.connect(PG_URL, connect_timeout=3):
            pass
    except Exception:
        return None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        return bench_ingest(f"{PG_URL}?schema={schema}", key, bodies, n)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run(quick: bool = False, **_opts) -> dict[str, float | int | str]:
    """Figures: appends_per_s (median of runs; disk_fdatasync_per_s beside it tells disk from code),
    backlog_1m_s (or the quick size, scaled), recovery_converge_s (after a server restore),
    ingest_sqlite_per_s, ingest_pg_per_s (medians of runs)."""
    key = X25519PrivateKey.generate()
    backlog = 50_000 if quick else 1_000_000
    recovery_unsent, recovery_backup_age = (10_000, 5_000) if quick else (100_000, 50_000)
    ingest_n = 50_000 if quick else 200_000
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as d:
        tmp = Path(d)
        appends = bench_appends(tmp, key, 300 if quick else 2000, runs=3 if quick else 5)
        fsyncs = bench_fdatasync(tmp, 300 if quick else 2000, runs=3 if quick else 5)
        fill_s, drain_s = bench_drain(tmp, key, backlog)
        recovery = []
        for r in range(1 if quick else 3):
            (tmp / f"recovery-{r}").mkdir()
            recovery.append(bench_recovery(tmp / f"recovery-{r}", key, recovery_unsent, recovery_backup_age))
        src = _log(tmp / "ingest-src.sqlite", key, synchronous="NORMAL")
        fill_backlog(src, ingest_n)
        bodies = []
        for start in range(1, ingest_n + 1, 5000):
            recs = src.records(start, 5000)
            bodies.append(json.dumps({"device_id": "bench-1", "records": recs}, separators=(",", ":")).encode())
        src.close()
        runs = 3
        sqlite_runs = [bench_ingest(f"sqlite:///{tmp / f'ingest-{r}.sqlite'}", key, bodies, ingest_n)
                       for r in range(runs)]
        pg_runs = [res for res in (_pg_ingest(key, bodies, ingest_n) for _ in range(runs)) if res is not None]
    ingest_sqlite, ingest_pg = [rate for rate, _ in sqlite_runs], [rate for rate, _ in pg_runs]
    figures: dict[str, float | int | str] = {
        "appends_per_s": round(median(appends), 1),
        "appends_runs": len(appends),
        "appends_min_per_s": round(min(appends), 1),
        "appends_max_per_s": round(max(appends), 1),
        "disk_fdatasync_per_s": round(median(fsyncs), 1),
        "appends_per_fdatasync": round(median(appends) / median(fsyncs), 3),
        "backlog_records": backlog,
        "backlog_fill_s": round(fill_s, 2),
        "backlog_drain_s": round(drain_s, 2),
        "backlog_1m_s": round(drain_s * 1_000_000 / backlog, 2),
        # a server database restored from a backup ``recovery_backup_age`` records old, while the
        # device has ``recovery_unsent`` records waiting: time until both agree again (SQLite server)
        "recovery_unsent_records": recovery_unsent,
        "recovery_backup_age_records": recovery_backup_age,
        "recovery_converge_s": round(median(recovery), 2),
        "recovery_runs": len(recovery),
        "ingest_records": ingest_n,
        "ingest_runs": runs,
        "ingest_sqlite_per_s": round(median(ingest_sqlite), 1),
        "ingest_sqlite_min_per_s": round(min(ingest_sqlite), 1),
        "ingest_sqlite_max_per_s": round(max(ingest_sqlite), 1),
        # CPU of this process alone (parse, checks, decryption, COPY formatting): tells code from a busy machine
        "ingest_sqlite_cpu_us_per_record": round(median([cpu for _, cpu in sqlite_runs]), 2),
        "ingest_pg_per_s": round(median(ingest_pg), 1) if ingest_pg else "unavailable",
        "ingest_pg_cpu_us_per_record": round(median([cpu for _, cpu in pg_runs]), 2) if pg_runs else "unavailable",
        "ingest_pg_min_per_s": round(min(ingest_pg), 1) if ingest_pg else "unavailable",
        "ingest_pg_max_per_s": round(max(ingest_pg), 1) if ingest_pg else "unavailable",
    }
    return figures
