"""Schema migrations keep every record across an upgrade from the schema before migrations (v1,
as released), on SQLite and PostgreSQL; PostgreSQL's records end up in monthly partitions, and
retention drops whole months while ingest goes on."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from click.testing import CliRunner
from conftest import PG_DSN, _pg_available
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from test_sync_push import make_client

from edge.cli import main
from edge.devtools.server_procs import new_server_database
from edge.scan.scanlog import ScanLog
from edge.verdict import Decision, Reason, Verdict
from sync.server import migrations, partitions
from sync.server.app import create_app
from sync.server.ingest import IngestError, _checked_rows, _Counts, ingest
from sync.server.migrations import LATEST, POSTGRES_V1, POSTGRES_V2, SQLITE_V1, SchemaError, _sqlite_v2
from sync.server.registry import Registry, parse_checkpoints
from sync.server.runner import ServerThread
from sync.server.security_store import security_schema
from sync.server.settings import ServerSettings
from sync.server.storage import RECORD_COLUMNS, RecordConflict, open_storage
from sync.server.store_pg import split_schema
from sync.server.trace import near_sql, trace, trace_json
from sync.wire.sealed import HolderOpener


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request, tmp_path):
    """A database URL where nothing exists yet: a new SQLite path, or a PostgreSQL schema not yet made."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.sqlite'}"
        return
    if not _pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{PG_DSN}?schema={schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def device_log(tmp_path, name: str, server_x25519, start: datetime, n: int, step=timedelta(hours=7)) -> ScanLog:
    """A real device scan log with ``n`` records, wall times from ``start`` every ``step``."""
    log = ScanLog(tmp_path / f"{name}.sqlite", device_id=name, boot_id="boot-1",
                  server_encryption_key=server_x25519.public_key())
    entries = []
    for i in range(n):
        verdict = Verdict(Decision.PASS, Reason.OK, format="CP1", kind="resident",
                          holder_hash=i.to_bytes(16, "big")) if i % 3 else Verdict(Decision.CHECK, Reason.NOT_A_PASS)
        entries.append((verdict, start + i * step, float(i), True, 1, 2))
    log.append_many(entries)
    return log


#: the records columns of the released schema (before chain epochs)
V1_COLUMNS = tuple(c for c in RECORD_COLUMNS if c != "epoch")


class V1Database:
    """A database in the released schema before migrations, filled the way that server stored rows."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            self.db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self.db.executescript(SQLITE_V1)
            self.mark = "?"
        else:
            conninfo, schema = split_schema(url)
            self.db = psycopg.connect(conninfo, autocommit=True)
            self.db.execute(f'CREATE SCHEMA "{schema}"')
            self.db.execute(f'SET search_path TO "{schema}"')
            self.db.execute(POSTGRES_V1)
            self.mark = "%s"

    def add_device(self, log: ScanLog, key: Ed25519PrivateKey, opener: HolderOpener) -> None:
        """Enroll the device and store all its records, acked, as the v1 server's ingest did."""
        recs = log.records()
        rows = [row[:1] + row[2:] for row in _checked_rows(opener, log.device_id, 0, recs, {}, _Counts())]
        marks = ", ".join([self.mark] * len(V1_COLUMNS))
        cur = self.db.cursor()
        cur.execute(f"INSERT INTO devices (device_id, public_key, enrolled_at, last_seen, acked_seq, records) "
                    f"VALUES ({', '.join([self.mark] * 6)})",
                    (log.device_id, raw(key), "2026-01-01T00:00:00+00:00", "2026-03-02T00:00:00+00:00",
                     len(rows), len(rows)))
        cur.executemany(f"INSERT INTO records ({', '.join(V1_COLUMNS)}) VALUES ({marks})", rows)

    def close(self) -> None:
        self.db.close()


def test_upgrade_from_the_schema_before_migrations_keeps_every_record(empty_db_url, tmp_path, server_x25519):
    db_url = empty_db_url
    opener = HolderOpener(server_x25519)
    keys = {"dev-a": Ed25519PrivateKey.generate(), "dev-b": Ed25519PrivateKey.generate()}
    logs = {"dev-a": device_log(tmp_path, "dev-a", server_x25519, datetime(2026, 3, 1, tzinfo=UTC), 30),
            "dev-b": device_log(tmp_path, "dev-b", server_x25519, datetime(2025, 7, 30, tzinfo=UTC), 12)}
    old = V1Database(db_url)
    for name, log in logs.items():
        old.add_device(log, keys[name], opener)
    before = {name: open_storage_records_v1(old, name) for name in logs}
    old.close()

    storage = open_storage(db_url)  # the upgrade happens here
    try:
        assert storage.schema == LATEST == storage.schema_version()
        for name in logs:
            after = storage.records(name)
            assert after == before[name] and len(after) == len(logs[name].records())
            assert storage.acked_seq(name) == len(after)
        if db_url.startswith("postgresql"):
            where = {r[0]: r[1] for r in storage._all(
                "SELECT tableoid::regclass::text, COUNT(*) FROM records GROUP BY 1")}
            # dev-a: Mar 1..10 2026; dev-b: Jul 30 .. Aug 2 2025 -> three monthly partitions, none in default
            assert where == {"records_p2026_03": 30, "records_p2025_07": 7, "records_p2025_08": 5}
    finally:
        storage.close()

    # the upgraded server goes on ingesting the same devices over HTTP: new records stored once
    settings = ServerSettings(db_url=db_url, encryption_key=server_x25519)
    with ServerThread(create_app(settings)) as srv:
        log = logs["dev-a"]
        log.acknowledge(30)  # what the v1 server answered when it stored them
        client = make_client(srv.url, log, keys["dev-a"])
        for i in range(5):
            log.append(Verdict(Decision.REFUSE, Reason.RISK_F1, format="CP1", kind="resident",
                               holder_hash=b"\x07" * 16), wall_time=datetime.now(UTC), monotonic=100.0 + i,
                       clock_trusted=True, policy_version=1, risk_version=2)
        client.push()
        held = srv._server.config.app.state.storage.records("dev-a")
        assert [r["seq"] for r in held] == list(range(1, 36))
        assert [r["hash"].hex() for r in held] == [r["hash"] for r in log.records()]

    reopened = open_storage(db_url)  # idempotent: nothing pending, nothing applied twice
    try:
        assert [v for (v,) in reopened._all("SELECT version FROM schema_migrations ORDER BY version")] == \
            list(range(1, LATEST + 1))
        assert len(reopened.records("dev-b")) == 12
    finally:
        reopened.close()


def test_a_database_a_chain_epoch_server_upgraded_in_place_is_adopted(empty_db_url, tmp_path, server_x25519):
    """The server before migrations but after chain epochs upgraded its database in place (epoch columns,
    ``epochs``, ``lost_records``, security tables) without ``schema_migrations``: adopted, the steps it
    already has change nothing, and its records are kept."""
    opener = HolderOpener(server_x25519)
    key = Ed25519PrivateKey.generate()
    log = device_log(tmp_path, "dev-e", server_x25519, datetime(2026, 3, 1, tzinfo=UTC), 9)
    old = V1Database(empty_db_url)
    old.add_device(log, key, opener)
    before = open_storage_records_v1(old, "dev-e")
    if isinstance(old.db, sqlite3.Connection):
        _sqlite_v2(old.db)
        old.db.executescript(security_schema("sqlite"))
    else:
        old.db.execute(POSTGRES_V2)
        old.db.execute(security_schema("postgresql"))
    old.db.execute("INSERT INTO epochs (device_id, epoch, base_seq, started_at) VALUES ('dev-x', 1, 3, 'then')")
    old.close()

    storage = open_storage(empty_db_url)
    try:
        assert storage.schema == LATEST == storage.schema_version()
        assert storage.records("dev-e") == before
        assert storage._all("SELECT device_id, epoch, base_seq FROM epochs") == [("dev-x", 1, 3)]
        log.append(Verdict(Decision.CHECK, Reason.NOT_A_PASS), wall_time=datetime(2026, 3, 9, tzinfo=UTC),
                   monotonic=100.0, clock_trusted=True)
        assert ingest(storage, opener, "dev-e", log.records(9)).acked_seq == 10
    finally:
        storage.close()


def open_storage_records_v1(old: V1Database, device_id: str) -> list[dict]:
    """Records as the v1 server's ``SQLStorage.records`` returned them, in the first chain epoch."""
    cur = old.db.cursor()
    cur.execute(f"SELECT {', '.join(V1_COLUMNS)} FROM records WHERE device_id={old.mark} ORDER BY seq",
                (device_id,))
    out = []
    for row in cur.fetchall():
        rec = {**dict(zip(V1_COLUMNS, row, strict=True)), "epoch": 0}
        for k in ("holder_hash", "holder_enc", "prev_hash", "hash"):
            if rec[k] is not None:
                rec[k] = bytes(rec[k])
        rec["clock_trusted"] = int(rec["clock_trusted"])
        out.append(rec)
    return out


def test_a_database_newer_than_the_server_is_refused(db_url):
    storage = open_storage(db_url)
    storage._exec("INSERT INTO schema_migrations VALUES (?, ?, ?)", (LATEST + 1, "from the future", "2030-01-01"))
    storage.close()
    with pytest.raises(SchemaError, match=f"version {LATEST + 1} is newer than this server"):
        open_storage(db_url)


def test_an_empty_database_is_refused_unless_creating(empty_db_url):
    db_url = empty_db_url
    from sync.server.migrations import migrate_postgres, migrate_sqlite
    if db_url.startswith("sqlite:///"):
        db = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        migrate = migrate_sqlite
    else:
        conninfo, schema = split_schema(db_url)
        db = psycopg.connect(conninfo, autocommit=True)
        db.execute(f'CREATE SCHEMA "{schema}"')
        db.execute(f'SET search_path TO "{schema}"')
        migrate = migrate_postgres
    try:
        with pytest.raises(SchemaError, match="server init"):
            migrate(db, "the test database", create=False)
        assert migrate(db, "the test database", create=True) == LATEST
        assert migrate(db, "the test database", create=False) == LATEST  # made: now it opens
    finally:
        db.close()


def test_two_servers_starting_together_migrate_once(tmp_path):
    """N processes on one PostgreSQL start at once: the advisory lock applies each step once."""
    if not _pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    import threading
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = f"{PG_DSN}?schema={schema}"
    opened, errors = [], []

    new_server_database(url)  # initialised once; then N processes start on it together

    def start():
        try:
            opened.append(open_storage(url))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    try:
        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and len(opened) == 4
        assert [v for (v,) in opened[0]._all("SELECT version FROM schema_migrations ORDER BY version")] == \
            list(range(1, LATEST + 1))
    finally:
        for s in opened:
            s.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_different_record_stored_meanwhile_is_a_conflict_not_a_second_copy(db_url, tmp_path, server_x25519):
    """Two writers with different records for the same seqs (another wall time, so on PostgreSQL another
    partition key): the second, whose pre-check ran before the first committed, is refused whole; through
    ingest it is checked again against what the first stored and filed under a new chain epoch."""
    opener = HolderOpener(server_x25519)
    storage = open_storage(db_url)
    try:
        key = Ed25519PrivateKey.generate()
        storage.enroll("dev-c", raw(key))
        first = device_log(tmp_path, "dev-c", server_x25519, datetime(2026, 3, 1, tzinfo=UTC), 5)
        (tmp_path / "other").mkdir()
        second = device_log(tmp_path / "other", "dev-c", server_x25519, datetime(2026, 4, 1, tzinfo=UTC), 5)
        ingest(storage, opener, "dev-c", first.records())
        # the second writer checked ``held`` before the first committed: it saw nothing stored
        rows = _checked_rows(opener, "dev-c", 0, second.records(), {}, _Counts())
        with pytest.raises(RecordConflict):
            storage.insert("dev-c", rows, "2026-04-01T00:00:00+00:00", span=(1, 5), epoch=0)
        assert [r["hash"].hex() for r in storage.records("dev-c")] == [r["hash"] for r in first.records()]
        assert storage.device_state("dev-c").epoch == 0
    finally:
        storage.close()


class _FirstWriterCommitsMeanwhile:
    """The real storage, except that another connection stores ``records`` right after this one's
    ingest read what is held, before its insert (the race of two server processes)."""

    def __init__(self, storage, db_url: str, opener: HolderOpener, device_id: str, records: list[dict]):
        self._storage, self._db_url, self._opener = storage, db_url, opener
        self._device_id, self._records = device_id, records

    def __getattr__(self, name: str):
        return getattr(self._storage, name)

    def insert(self, *args, **kwargs):
        if self._records:
            other = open_storage(self._db_url)
            try:
                ingest(other, self._opener, self._device_id, self._records)
            finally:
                other.close()
            self._records = []
        return self._storage.insert(*args, **kwargs)


def test_a_different_record_stored_meanwhile_forks_the_chain_through_ingest(db_url, tmp_path, server_x25519):
    """The race through ``ingest``: the batch is refused inside the transaction, checked again against
    the record the other writer stored, and filed under a new epoch; neither version is lost or doubled."""
    opener = HolderOpener(server_x25519)
    storage = open_storage(db_url)
    try:
        storage.enroll("dev-d", raw(Ed25519PrivateKey.generate()))
        first = device_log(tmp_path, "dev-d", server_x25519, datetime(2026, 3, 1, tzinfo=UTC), 5)
        (tmp_path / "other").mkdir()
        second = device_log(tmp_path / "other", "dev-d", server_x25519, datetime(2026, 4, 1, tzinfo=UTC), 5)
        racing = _FirstWriterCommitsMeanwhile(storage, db_url, opener, "dev-d", first.records())
        result = ingest(racing, opener, "dev-d", second.records())
        assert (result.epoch, result.acked_seq, result.stored) == (1, 5, 5)
        assert [r["hash"].hex() for r in storage.records("dev-d", epoch=0)] == [r["hash"] for r in first.records()]
        assert [r["hash"].hex() for r in storage.chain_records("dev-d")] == [r["hash"] for r in second.records()]
        assert [f.base_seq for f in next(d for d in storage.fleet() if d.device_id == "dev-d").forks] == [0]
    finally:
        storage.close()


def test_the_same_records_stored_meanwhile_are_merged_not_doubled(db_url, tmp_path, server_x25519):
    """The race with identical records (a device's retry reaching the other server process): the
    straight COPY collides, the transaction is rolled back and the rows are merged; stored once."""
    opener = HolderOpener(server_x25519)
    storage = open_storage(db_url)
    try:
        storage.enroll("dev-e", raw(Ed25519PrivateKey.generate()))
        log = device_log(tmp_path, "dev-e", server_x25519, datetime(2026, 3, 1, tzinfo=UTC), 8)
        racing = _FirstWriterCommitsMeanwhile(storage, db_url, opener, "dev-e", log.records()[:5])
        result = ingest(racing, opener, "dev-e", log.records())
        assert (result.epoch, result.acked_seq, result.stored, result.duplicates) == (0, 8, 3, 5)
        assert result.acked_hash == log.records()[-1]["hash"]
        assert [r["hash"].hex() for r in storage.records("dev-e")] == [r["hash"] for r in log.records()]
        assert storage.count_records() == 8 and storage.fleet()[0].records == 8
    finally:
        storage.close()


@pytest.mark.postgres
def test_retention_drops_whole_old_months_and_ingest_goes_on(tmp_path, server_x25519, monkeypatch):
    if not _pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = f"{PG_DSN}?schema={schema}"
    opener = HolderOpener(server_x25519)
    now = datetime.now(UTC)
    try:
        storage = open_storage(new_server_database(url))
        key = Ed25519PrivateKey.generate()
        storage.enroll("dev-r", raw(key))
        # 14 months of records, one every ~10 days, plus a clock far in the past (default partition)
        log = device_log(tmp_path, "dev-r", server_x25519, now - timedelta(days=420), 43, step=timedelta(days=10))
        ingest(storage, opener, "dev-r", log.records())
        storage._exec("INSERT INTO records SELECT device_id, epoch, 100, '2019-01-01T00:00:00+00:00', monotonic, "
                      "boot_id, clock_trusted, format, kind, holder_hash, holder_enc, decision, reason, "
                      "policy_version, risk_version, prev_hash, hash, '2019-01-01T00:00:00+00:00' FROM records "
                      "WHERE seq = 1")
        in_default = storage._all("SELECT COUNT(*) FROM records_default")[0][0]
        storage.close()
        last_month = datetime(now.year - (now.month == 1), (now.month - 2) % 12 + 1, 1, tzinfo=UTC)
        older = sum(1 for r in log.records() if datetime.fromisoformat(r["wall_time"]) < last_month)
        assert in_default == older + 1  # months without a partition yet: a long-offline device's backlog

        storage = open_storage(url)  # start-up makes those months' partitions and moves the rows there
        where = dict(storage._all("SELECT tableoid::regclass::text, COUNT(*) FROM records GROUP BY 1"))
        storage.close()
        assert where["records_default"] == 1 and len(where) >= 14  # only the 2019 clock stays in default

        monkeypatch.setenv("COLUMNS", "200")
        result = CliRunner().invoke(main, ["server", "retention", "--db", url, "--keep-days", "180", "--dry-run"])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(main, ["server", "retention", "--db", url, "--keep-days", "180"])
        assert result.exit_code == 0, result.output
        assert "dropped" in result.output

        storage = open_storage(url)
        cutoff = now - timedelta(days=180)
        kept_from = datetime(cutoff.year, cutoff.month, 1, tzinfo=UTC)
        held = storage.records("dev-r")
        walls = [datetime.fromisoformat(r["wall_time"]) for r in held]
        assert walls and min(walls) >= kept_from  # nothing older than the cutoff's month
        expected = [r for r in log.records() if datetime.fromisoformat(r["wall_time"]) >= kept_from]
        assert [r["hash"].hex() for r in held] == [r["hash"] for r in expected]  # every newer record kept
        assert storage.acked_seq("dev-r") == 43  # the device is not asked to send the dropped ones again
        # ingest goes on: the next record chains on a kept one and lands in this month's partition
        log.append(Verdict(Decision.CHECK, Reason.NOT_A_PASS), wall_time=now, monotonic=1e6, clock_trusted=True)
        result_push = ingest(storage, opener, "dev-r", log.records(44))
        assert result_push.stored == 1 and result_push.acked_seq == 44
        storage.close()
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _index_names(db_url: str) -> set[str]:
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as db:
            return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='records' "
                                              "AND sql IS NOT NULL")}
    conninfo, schema = split_schema(db_url)
    with psycopg.connect(conninfo) as db:
        return {r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname=%s AND tablename='records' "
                                         "AND indexname <> 'records_pkey'", (schema,))}


def _contact_window_plan(db_url: str, devices: list[str], start: str, end: str) -> str:
    """The plan of one contact window, as the trace asks it; on PostgreSQL after a VACUUM (the
    visibility map) and with the cheaper-looking sequential scans of a tiny table turned off."""
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as db:
            return " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + near_sql(len(devices), False),
                                                     (*devices, start, end, 10)))
    conninfo, schema = split_schema(db_url)
    with psycopg.connect(conninfo, autocommit=True) as db:
        db.execute(f'SET search_path TO "{schema}"')
        db.execute("VACUUM (ANALYZE) records")
        db.execute("SET enable_seqscan = off")
        db.execute("SET enable_bitmapscan = off")
        sql = "EXPLAIN (COSTS OFF) " + near_sql(len(devices), True).replace("?", "%s")
        return " ".join(r[0] for r in db.execute(sql, (*devices, start, end, start, end, 10)))


def _store_as_an_old_server(storage, opener: HolderOpener, device_id: str, records: list[dict]) -> None:
    """The checked rows of ``records`` written as a server of an older schema stored them (today's
    ingest also keeps columns of later steps)."""
    columns = (*RECORD_COLUMNS, "scanned_at") if storage.partitioned_records else RECORD_COLUMNS
    sql = f"INSERT INTO records ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    for row in _checked_rows(opener, device_id, 0, records, {}, _Counts()):
        storage._exec(sql, (*row, partitions.scan_time(row[3])) if storage.partitioned_records else row)


def test_step_7_covering_trace_indexes_from_a_step_6_database(empty_db_url, tmp_path, server_x25519, monkeypatch):
    """A database a step-6 server filled is upgraded: step 5's trace indexes are replaced by the
    covering ones (not kept beside them), a trace answers the same as before, and a contact window
    is read from the index alone."""
    step6 = tuple(m for m in migrations.MIGRATIONS if m.version <= 6)
    assert step6[-1].version == 6
    log = device_log(tmp_path, "HN-T-1", server_x25519, datetime(2026, 3, 1, tzinfo=UTC), 30, step=timedelta(hours=1))
    registry = Registry(parse_checkpoints("checkpoint_id,name,province,devices\nHN-T,Chốt T,Hà Nội,1\n"))
    holder, since = (1).to_bytes(16, "big"), datetime(2026, 3, 1, tzinfo=UTC)
    window = timedelta(hours=3, minutes=30)
    with monkeypatch.context() as old_server:
        old_server.setattr(migrations, "MIGRATIONS", step6)
        old_server.setattr(migrations, "LATEST", 6)
        storage = open_storage(empty_db_url, create=True)
        try:
            assert storage.schema_version() == 6
            storage.enroll("HN-T-1", raw(Ed25519PrivateKey.generate()))
            _store_as_an_old_server(storage, HolderOpener(server_x25519), "HN-T-1", log.records())
            before = trace_json(trace(storage, registry, holder, since, since + timedelta(days=3), window))
        finally:
            storage.close()
    assert {"records_by_holder", "records_by_device_time"} <= _index_names(empty_db_url)
    storage = open_storage(empty_db_url)  # the upgrade happens here
    try:
        assert storage.schema_version() == LATEST >= 7
        after = trace_json(trace(storage, registry, holder, since, since + timedelta(days=3), window))
    finally:
        storage.close()
    # holder 1 scanned at 01:00; within ± 3.5 h: holders 2 and 4 (every third scan has no holder)
    assert after == before and len(before["visits"]) == 1
    assert [c["holder"] for c in before["contacts"]] == [(2).to_bytes(16, "big").hex(), (4).to_bytes(16, "big").hex()]
    names = _index_names(empty_db_url)
    assert {"records_by_holder_cover", "records_by_device_time_cover"} <= names
    assert not names & {"records_by_holder", "records_by_device_time"}
    plan = _contact_window_plan(empty_db_url, ["HN-T-1"], "2026-03-01T00:00:00+00:00", "2026-03-01T06:00:00+00:00")
    assert ("COVERING INDEX records_by_device_time_cover" in plan if empty_db_url.startswith("sqlite")
            else "Index Only Scan" in plan and "Index Cond: ((device_id = " in plan), plan


class _CountingRecordReads:
    """The real storage, counting the statements its reads and writes run against ``records``."""

    def __init__(self, storage):
        self.storage, self.record_queries = storage, 0
        self._all = storage._all
        storage._all = self._counting

    def _counting(self, sql: str, params: tuple = ()) -> list[tuple]:
        self.record_queries += " records " in f"{sql} "
        return self._all(sql, params)


def _head(storage, device_id: str) -> tuple:
    top, digest = storage._all("SELECT top_seq, acked_hash FROM devices WHERE device_id=?", (device_id,))[0]
    return top, bytes(digest).hex() if digest is not None else None


def test_step_8_chain_head_on_the_device_row(empty_db_url, tmp_path, server_x25519, monkeypatch):
    """A step-7 database is upgraded with the chain head unknown; the next push reads the records and
    sets it; from then on a push that extends the chain reads no record, is still checked against
    the held record before it (a broken link is refused), and a gap, a resend and a fork go the
    general way and keep the head right."""
    opener = HolderOpener(server_x25519)
    log = device_log(tmp_path, "dev-h", server_x25519, datetime(2026, 3, 1, tzinfo=UTC), 40, step=timedelta(hours=1))
    recs = log.records()
    step7 = tuple(m for m in migrations.MIGRATIONS if m.version <= 7)
    with monkeypatch.context() as old_server:
        old_server.setattr(migrations, "MIGRATIONS", step7)
        old_server.setattr(migrations, "LATEST", 7)
        storage = open_storage(empty_db_url, create=True)
        try:
            storage.enroll("dev-h", raw(Ed25519PrivateKey.generate()))
            _store_as_an_old_server(storage, opener, "dev-h", recs[:5])
            storage._exec("UPDATE devices SET acked_seq=5, records=5 WHERE device_id='dev-h'")
        finally:
            storage.close()
    storage = open_storage(empty_db_url)  # step 8 here
    try:
        assert storage.schema_version() == LATEST >= 8
        assert _head(storage, "dev-h") == (None, None)
        reads = _CountingRecordReads(storage)
        assert ingest(storage, opener, "dev-h", recs[5:10]).acked_seq == 10  # the general way: reads records
        assert reads.record_queries > 0
        assert _head(storage, "dev-h") == (10, recs[9]["hash"])

        reads.record_queries = 0
        result = ingest(storage, opener, "dev-h", recs[10:15])
        assert (result.acked_seq, result.stored, result.acked_hash) == (15, 5, recs[14]["hash"])
        assert reads.record_queries == 0 and _head(storage, "dev-h") == (15, recs[14]["hash"])

        forged = [dict(r) for r in recs[15:17]]
        forged[0]["prev_hash"] = "00" * 32  # does not follow the held seq 15
        with pytest.raises(IngestError, match="does not follow the stored record"):
            ingest(storage, opener, "dev-h", forged)

        assert ingest(storage, opener, "dev-h", recs[20:25]).acked_seq == 15  # held beyond a gap
        assert _head(storage, "dev-h") == (25, recs[14]["hash"])
        assert ingest(storage, opener, "dev-h", recs[15:20]).acked_seq == 25  # the gap filled
        assert _head(storage, "dev-h") == (25, recs[24]["hash"])
        again = ingest(storage, opener, "dev-h", recs[20:25])  # a resend: duplicates, nothing stored
        assert (again.stored, again.duplicates, again.acked_seq) == (0, 5, 25)

        storage.start_epoch("dev-h", after=0, base_seq=25)  # a fork: the head is not known any more
        assert _head(storage, "dev-h") == (None, None)
        assert ingest(storage, opener, "dev-h", recs[25:30]).acked_seq == 30
        assert _head(storage, "dev-h") == (30, recs[29]["hash"])
        assert storage.count_records() == 30 and len(storage.chain_records("dev-h")) == 30
    finally:
        storage.close()
