"""Scale out: two real server processes share one PostgreSQL and ingest the same device's batches
at the same time (each batch sent to both at once, batches out of order): every record is stored
exactly once, nothing lost, nothing doubled, and both processes started together on a new schema."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests
from conftest import PG_DSN, _pg_available
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families
from test_server_migrations import device_log

from edge.devtools.server_procs import ServerProcess, new_server_data_dir, raw_public_key
from sync.server.storage import open_storage
from sync.wire.keyfiles import load_x25519_private
from sync.wire.protocol import API, HEADER_DEVICE, HEADER_SIGNATURE, b64, request_signing_bytes

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url():
    if not _pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{PG_DSN}?schema={schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def counter(url: str, name: str) -> float:
    text = requests.get(url + "/metrics", timeout=5).text
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name)


def test_two_processes_ingest_one_device_concurrently_nothing_lost_or_doubled(pg_url, tmp_path):
    data = tmp_path / "server-data"
    new_server_data_dir(data, db_url=pg_url)  # keys both processes share (same data directory)
    servers = [ServerProcess(data, pg_url), ServerProcess(data, pg_url)]
    try:
        for srv in servers:  # started together on a schema that does not exist yet
            srv.wait_ready()
        server_key = load_x25519_private(data / "keys/server_x25519.pem")
        log = device_log(tmp_path, "dev-scale", server_key, datetime.now(UTC), 600, step=timedelta(seconds=3))
        key = Ed25519PrivateKey.generate()
        storage = open_storage(pg_url)  # the administrator's enrollment path
        storage.enroll("dev-scale", raw_public_key(key))
        storage.close()
        records = log.records()
        batches = [records[i:i + 40] for i in range(0, len(records), 40)]
        random.Random(7).shuffle(batches)  # out of order too: gaps that later batches fill
        path = f"{API}/push"
        answers: list[dict] = []
        lock = threading.Lock()

        def push(url: str, body: bytes, signature: str, barrier: threading.Barrier) -> None:
            barrier.wait(10)
            for _attempt in range(50):  # as a device does: "busy, retry" (429/503) is retried
                resp = requests.post(url + path, data=body, timeout=30,
                                     headers={HEADER_DEVICE: "dev-scale", HEADER_SIGNATURE: signature})
                if resp.status_code not in (429, 503):
                    break
                time.sleep(0.05)
            assert resp.status_code == 200, resp.text
            with lock:
                answers.append(resp.json())

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = []
            for batch in batches:
                body = json.dumps({"device_id": "dev-scale", "records": batch}).encode()
                signature = b64(key.sign(request_signing_bytes("POST", path, body)))
                barrier = threading.Barrier(2)  # the same batch reaches both processes at the same moment
                futures += [pool.submit(push, srv.url, body, signature, barrier) for srv in servers]
            for f in futures:
                f.result(60)

        assert len(answers) == 2 * len(batches)
        assert sum(a["stored"] for a in answers) == 600  # each record stored by exactly one process
        assert sum(a["stored"] + a["duplicates"] for a in answers) == 1200
        storage = open_storage(pg_url)
        try:
            held = storage.records("dev-scale")
            assert [r["seq"] for r in held] == list(range(1, 601))  # nothing lost, nothing twice
            assert [r["hash"].hex() for r in held] == [r["hash"] for r in records]
            assert storage.acked_seq("dev-scale") == 600
            assert storage._all("SELECT COUNT(*) FROM records")[0][0] == 600
        finally:
            storage.close()
        # the processes' own counters add up to the same: scrape each one and sum
        assert sum(counter(s.url, "checkpoint_ingest_records_total") for s in servers) == 600
        assert all(counter(s.url, "checkpoint_ingest_batches_total") == len(batches) for s in servers)
    finally:
        for srv in servers:
            srv.stop()
