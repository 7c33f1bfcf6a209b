"""``checkpoint bench sync`` helpers on tiny inputs: they run the real ingest path and its checks."""

import json

import pytest
from conftest import PG_DSN, _pg_available

from edge.devtools.bench import sync as bench
from sync.server.ingest import IngestError


def bodies_of(tmp_path, key, n: int, per: int) -> list[bytes]:
    log = bench._log(tmp_path / "src.sqlite", key, synchronous="NORMAL")
    bench.fill_backlog(log, n)
    out = [json.dumps({"device_id": "bench-1", "records": log.records(s, per)}).encode()
           for s in range(1, n + 1, per)]
    log.close()
    return out


def test_bench_ingest_stores_everything_and_reports_cpu(tmp_path, server_x25519):
    bodies = bodies_of(tmp_path, server_x25519, 60, 25)
    rate, cpu_us = bench.bench_ingest(f"sqlite:///{tmp_path / 'srv.sqlite'}", server_x25519, bodies, 60)
    assert rate > 0 and cpu_us > 0
    with pytest.raises(RuntimeError, match="did not store every record"):
        bench.bench_ingest(f"sqlite:///{tmp_path / 'srv2.sqlite'}", server_x25519, bodies[:1], 60)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_bench_ingest_keeps_every_check(tmp_path, server_x25519, backend):
    """A record altered in the benchmark's input is refused: the figure is not measured without checks."""
    if backend == "postgres" and not _pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    bodies = bodies_of(tmp_path, server_x25519, 30, 30)
    batch = json.loads(bodies[0])
    batch["records"][7]["decision"] = "PASS" if batch["records"][7]["decision"] != "PASS" else "REFUSE"
    bad = [json.dumps(batch).encode()]
    with pytest.raises(IngestError, match="record_altered"):
        if backend == "sqlite":
            bench.bench_ingest(f"sqlite:///{tmp_path / 'srv.sqlite'}", server_x25519, bad, 30)
        else:
            assert bench.PG_URL == PG_DSN
            bench._pg_ingest(server_x25519, bad, 30)


def test_fdatasync_rate_is_measured_per_run(tmp_path):
    rates = bench.bench_fdatasync(tmp_path, 5, runs=3)
    assert len(rates) == 3 and all(r > 0 for r in rates)
    assert (tmp_path / "fsync-0.bin").stat().st_size == 5 * 4096


def test_bench_recovery_converges_after_a_restore(tmp_path, server_x25519):
    seconds = bench.bench_recovery(tmp_path, server_x25519, unsent=300, backup_age=120, batch_size=50)
    assert seconds > 0
    from sync.server.storage import open_storage
    storage = open_storage(f"sqlite:///{tmp_path / 'recovery-server.sqlite'}")
    try:
        assert [r["seq"] for r in storage.records("bench-1")] == list(range(1, 541))  # every record once
    finally:
        storage.close()
