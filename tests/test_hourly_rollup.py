"""The hourly roll-up the fleet view reads: kept by ingest exactly once (re-pushed batches, two writers
storing the same records at once), equal to counting the records; schema step 6 fills it from the
records a step-5 database holds, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_server_migrations import (  # noqa: F401
    _FirstWriterCommitsMeanwhile,
    _store_as_an_old_server,
    device_log,
    empty_db_url,
    raw,
)
from test_sync_push import make_client

from edge.verdict import Decision, Reason, Verdict
from sync.server import migrations
from sync.server.app import create_app
from sync.server.fleet.store import FLEET_TOTAL, FLEET_TOTAL_ROWS, fleet_total_row
from sync.server.ingest import ingest
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.server.storage import open_storage
from sync.wire.sealed import HolderOpener


def counted_from_records(storage) -> dict[tuple, int]:
    rows = storage._all("SELECT device_id, substr(wall_time, 1, 13), decision, reason, COUNT(*) FROM records "
                        "GROUP BY 1, 2, 3, 4")
    out = {tuple(r[:4]): int(r[4]) for r in rows}
    for (_device, *key), n in list(out.items()):
        fleet = (FLEET_TOTAL, *key)
        out[fleet] = out.get(fleet, 0) + n
    return out


def rollup(storage) -> dict[tuple, int]:
    """The roll-up's rows, the fleet's shards added up under FLEET_TOTAL."""
    out: dict[tuple, int] = {}
    for device_id, *key, n in storage._all("SELECT device_id, hour, decision, reason, scans FROM hourly_activity"):
        row = (FLEET_TOTAL if device_id in FLEET_TOTAL_ROWS else device_id, *key)
        out[row] = out.get(row, 0) + int(n)
    return out


def test_repushed_and_overlapping_batches_are_counted_once(db_url, tmp_path, server_x25519):
    opener = HolderOpener(server_x25519)
    storage = open_storage(db_url)
    try:
        for name in ("dev-a", "dev-b"):
            storage.enroll(name, raw(Ed25519PrivateKey.generate()))
        a = device_log(tmp_path, "dev-a", server_x25519, datetime(2026, 3, 1, tzinfo=UTC), 40,
                       step=timedelta(minutes=13)).records()
        b = device_log(tmp_path, "dev-b", server_x25519, datetime(2026, 3, 1, 5, tzinfo=UTC), 9).records()
        ingest(storage, opener, "dev-a", a[:20])
        ingest(storage, opener, "dev-a", a[:20])      # the answer was lost: the same batch again
        ingest(storage, opener, "dev-a", a[10:30])    # overlapping
        ingest(storage, opener, "dev-b", b)
        ingest(storage, opener, "dev-a", a)            # everything again, with the rest
        got = rollup(storage)
        assert got == counted_from_records(storage)
        assert sum(n for (d, *_), n in got.items() if d == FLEET_TOTAL) == 49
        # each device adds to its own shard of the fleet's rows (no one row every batch waits for)
        shards = {r[0] for r in storage._all("SELECT DISTINCT device_id FROM hourly_activity WHERE device_id LIKE ?",
                                             ("*%",))}
        assert shards == {fleet_total_row("dev-a"), fleet_total_row("dev-b")}
        assert len({fleet_total_row(f"HN-CP-{i:03d}") for i in range(200)}) == len(FLEET_TOTAL_ROWS)
        # the queries the pages use: the fleet's hours, one device's hours, today's decisions per device
        since = datetime(2026, 3, 1, tzinfo=UTC)
        fleet = storage.hourly_counts(since)
        assert {r.device_id for r in fleet} == {FLEET_TOTAL} and sum(r.count for r in fleet) == 49
        assert sum(r.count for r in storage.hourly_counts(since, ["dev-b"])) == 9
        assert storage.hourly_counts(since, []) == []
        per_device = storage.decisions_since(datetime(2026, 3, 1, 5, tzinfo=UTC))
        assert sum(per_device["dev-b"].values()) == 9 and FLEET_TOTAL not in per_device
    finally:
        storage.close()


def test_the_same_records_stored_meanwhile_by_another_writer_are_not_counted_twice(db_url, tmp_path, server_x25519):
    """Two server processes store the same batch at once: the second's rows collide (PostgreSQL: the
    merge path; SQLite: seqs held when its transaction starts) and only the first counts them."""
    opener = HolderOpener(server_x25519)
    storage = open_storage(db_url)
    try:
        storage.enroll("dev-e", raw(Ed25519PrivateKey.generate()))
        records = device_log(tmp_path, "dev-e", server_x25519, datetime(2026, 3, 1, tzinfo=UTC), 12).records()
        racing = _FirstWriterCommitsMeanwhile(storage, db_url, opener, "dev-e", records[:8])
        result = ingest(racing, opener, "dev-e", records)
        assert (result.acked_seq, result.stored) == (12, 4)
        assert rollup(storage) == counted_from_records(storage)
        assert sum(n for (d, *_), n in rollup(storage).items() if d == "dev-e") == 12
    finally:
        storage.close()


def test_pushes_over_http_fill_the_rollup(tmp_path, scanlog, device_key, server_x25519):
    db_url = f"sqlite:///{tmp_path / 'server.sqlite'}"
    open_storage(db_url, create=True).close()
    settings = ServerSettings(db_url=db_url, encryption_key=server_x25519)
    with ServerThread(create_app(settings)) as srv:
        store = srv._server.config.app.state.storage
        store.enroll(scanlog.device_id, raw(device_key))
        now = datetime.now(UTC)
        for i in range(15):
            verdict = Verdict(Decision.REFUSE, Reason.RISK_F1) if i % 5 == 0 else Verdict(Decision.PASS, Reason.OK)
            scanlog.append(verdict, wall_time=now, monotonic=float(i), clock_trusted=True, policy_version=1,
                           risk_version=1)
        assert make_client(srv.url, scanlog, device_key).push() == 15
        decisions = store.decisions_since(now - timedelta(hours=1))[scanlog.device_id]
        assert dict(decisions) == {"PASS": 12, "REFUSE": 3}
        assert rollup(store) == counted_from_records(store)


def test_step_6_fills_the_rollup_from_a_step_5_database(empty_db_url, tmp_path, server_x25519, monkeypatch):  # noqa: F811
    """A database a step-5 server filled (its ingest kept no roll-up) is upgraded: the roll-up counts
    every record it holds, and ingest keeps it right from then on."""
    db_url = empty_db_url
    opener = HolderOpener(server_x25519)
    step5 = [m for m in migrations.MIGRATIONS if m.version <= 5]
    assert step5[-1].version == 5
    with monkeypatch.context() as old_server:
        old_server.setattr(migrations, "MIGRATIONS", tuple(step5))
        old_server.setattr(migrations, "LATEST", 5)
        storage = open_storage(db_url, create=True)
        try:
            assert storage.schema_version() == 5
            storage.enroll("dev-f", raw(Ed25519PrivateKey.generate()))
            log = device_log(tmp_path, "dev-f", server_x25519, datetime(2026, 2, 27, tzinfo=UTC), 30)
            _store_as_an_old_server(storage, opener, "dev-f", log.records()[:20])  # no roll-up then
            storage._exec("UPDATE devices SET acked_seq=20, records=20 WHERE device_id='dev-f'")
        finally:
            storage.close()
    storage = open_storage(db_url)  # the upgrade happens here
    try:
        assert storage.schema_version() == migrations.LATEST >= 6
        assert sum(n for (d, *_), n in rollup(storage).items() if d == "dev-f") == 20
        assert rollup(storage) == counted_from_records(storage)
        ingest(storage, opener, "dev-f", log.records())
        assert rollup(storage) == counted_from_records(storage)
        assert sum(n for (d, *_), n in rollup(storage).items() if d == FLEET_TOTAL) == 30
    finally:
        storage.close()


@pytest.mark.parametrize("reason", [Reason.RISK_F0, Reason.TEST_TOO_OLD])
def test_refusals_are_counted_by_reason(tmp_path, server_x25519, reason):
    opener = HolderOpener(server_x25519)
    storage = open_storage(f"sqlite:///{tmp_path / 'server.sqlite'}", create=True)
    try:
        storage.enroll("dev-g", raw(Ed25519PrivateKey.generate()))
        from edge.scan.scanlog import ScanLog
        log = ScanLog(tmp_path / "g.sqlite", device_id="dev-g", boot_id="b", server_encryption_key=server_x25519
                      .public_key())
        at = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
        log.append_many([(Verdict(Decision.REFUSE, reason), at, float(i), True, 1, 1) for i in range(4)])
        ingest(storage, opener, "dev-g", log.records())
        assert rollup(storage)[("dev-g", "2026-03-01T08", "REFUSE", reason.value)] == 4
    finally:
        storage.close()
