"""The server survives a lost PostgreSQL connection (backend killed, as by a database restart).

The shared PostgreSQL server is never restarted here: the server's own backend is ended with
``pg_terminate_backend`` from another connection, which is what the server sees on a restart.
"""

import contextlib
import uuid

import pytest
import requests
from conftest import PG_DSN, _pg_available, append_samples, token_for
from test_sync_push import assert_server_matches, make_client

from edge.device.sync_client import SyncError
from sync.server.app import create_app
from sync.server.ingest import ingest
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.server.storage import open_storage
from sync.server.store_pg import PostgresStorage
from sync.wire.protocol import API, HEADER_DEVICE
from sync.wire.sealed import HolderOpener

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url():
    if not _pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    import psycopg
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = f"{PG_DSN}?schema={schema}"
    open_storage(url, create=True).close()
    yield url
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def terminate(storage: PostgresStorage) -> set[int]:
    """End the backends of all the storage's open connections (what a database restart does); their pids."""
    import psycopg
    pids = set(storage.backend_pids())
    assert pids
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for pid in pids:
            assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    return pids


def test_next_push_after_backend_killed_succeeds(pg_url, server_x25519, scanlog, device_key):
    settings = ServerSettings(db_url=pg_url, encryption_key=server_x25519)
    with ServerThread(create_app(settings)) as srv:
        storage = srv._server.config.app.state.storage
        client = make_client(srv.url, scanlog, device_key, backoff_max_s=0.01)
        client.enroll(token_for(pg_url))
        append_samples(scanlog, 10)
        assert client.push() == 10
        for round_ in range(2):  # twice: the replacement connection is itself replaceable
            old = terminate(storage)
            append_samples(scanlog, 10, start=10 * (round_ + 1))
            # the very next request works: no 5xx, no retry by the client, no server restart
            assert client.push() == 10
            assert set(storage.backend_pids()).isdisjoint(old)
        assert_server_matches(storage, scanlog)


@contextlib.contextmanager
def database_down(storage: PostgresStorage):
    """The database unreachable (backends ended, nothing listening where the storage reconnects)
    for the block; back afterwards."""
    good = storage._conninfo
    storage._conninfo = "postgresql://postgres@127.0.0.1:9/test"
    terminate(storage)
    try:
        yield
    finally:
        storage._conninfo = good


def test_database_down_answers_503_then_recovers(pg_url, server_x25519, scanlog, device_key, caplog):
    settings = ServerSettings(db_url=pg_url, encryption_key=server_x25519)
    with ServerThread(create_app(settings)) as srv:
        storage = srv._server.config.app.state.storage
        client = make_client(srv.url, scanlog, device_key)
        client.enroll(token_for(pg_url))
        append_samples(scanlog, 5)
        with database_down(storage):  # the guard's key look-up finds it gone
            resp = requests.post(srv.url + f"{API}/push", data=b"{}", headers={HEADER_DEVICE: "dev-1"}, timeout=30)
            assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
            assert resp.json()["error"] == "storage_unavailable"
            # generic to the client: no host, port, database or driver message (those go to the log)
            for secret in ("127.0.0.1", ":9", "5432", "postgres", "connect", "test"):
                assert secret not in resp.text, resp.text
        assert client.push() == 5  # the key is remembered now
        assert_server_matches(storage, scanlog)
        append_samples(scanlog, 4, start=5)
        with database_down(storage):  # so the push itself is the first to find the database gone
            with pytest.raises(SyncError) as err:
                client.push()
            assert err.value.status == 503 and "storage_unavailable" in str(err.value)
            assert "127.0.0.1:9" not in str(err.value) and scanlog.pending() == 4
            assert "event=server_storage_error" in caplog.text and "sync.server.push" in caplog.text
        assert client.push() == 4
        assert_server_matches(storage, scanlog)


class KillDuringCopy:
    """Storage wrapper that ends the PostgreSQL backend while a batch is being streamed into COPY."""

    def __init__(self, inner: PostgresStorage, after_rows: int):
        self.inner, self.after_rows, self.killed = inner, after_rows, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def insert(self, device_id, rows, seen_at, *, span, **chain):
        def rows_then_kill():
            for i, row in enumerate(rows):
                if i == self.after_rows and not self.killed:
                    self.killed = True
                    terminate(self.inner)
                yield row
        return self.inner.insert(device_id, rows_then_kill(), seen_at, span=span, **chain)


def test_backend_killed_mid_copy_batch_is_stored_whole(pg_url, server_x25519, scanlog):
    from sync.wire.protocol import WireRecord
    storage = PostgresStorage(pg_url)
    try:
        storage.enroll("dev-1", bytes(32))
        append_samples(scanlog, 3000)
        recs = [WireRecord.model_validate(r) for r in scanlog.records()]
        killer = KillDuringCopy(storage, after_rows=2500)
        result = ingest(killer, HolderOpener(server_x25519), "dev-1", recs)
        assert killer.killed
        assert result.acked_seq == 3000 and result.stored == 3000 and result.duplicates == 0
        assert_server_matches(storage, scanlog)
        assert storage.fleet()[0].records == 3000
    finally:
        storage.close()
