"""``checkpoint bench server`` on a tiny fleet: real server processes, real HTTP, real databases;
every accepted record is stored exactly once and the CPU shares are reported."""

import pytest
from conftest import _pg_available

from edge.devtools.bench import server as bench


@pytest.mark.postgres
def test_bench_server_smoke_counts_every_accepted_record_once():
    if not _pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    figures = bench.run(quick=True, devices=12)
    for name in ("http_ingest_pg_per_s", "http_ingest_sqlite_per_s", "p99_ms_pg", "rss_mb", "rss_mb_under_attack"):
        assert isinstance(figures[name], float) and figures[name] > 0, name
    # drain (2 batches) + steady + attack rounds, 100 records each, all accepted, none lost or doubled
    assert figures["drain_errors_pg"] == figures["steady_errors_pg"] == figures["attack_errors_pg"] == 0
    assert figures["accepted_pg"] >= 12 * 100 * 4
    assert figures["exactly_once_pg"] is True and figures["exactly_once_sqlite"] is True
    assert figures["server_cpu_us_per_record_pg"] > 0 and figures["client_cpu_us_per_record_pg"] > 0
    assert figures["cpu_bound_pg_per_s"] > 0
    assert figures["pg_connection"] == "tcp"  # the default: loopback TCP, as the README's figures


def test_the_bench_database_sits_beside_the_one_named():
    """``$CHECKPOINT_BENCH_PG_URL`` may name the server by host and port or by its socket directory;
    the bench's own database is made on that same server."""
    assert bench._database_url("postgresql://postgres@127.0.0.1:5432/test", "b1") == \
        "postgresql://postgres@127.0.0.1:5432/b1"
    assert bench._database_url("postgresql://postgres@/test?host=/var/run/postgresql", "b1") == \
        "postgresql://postgres@/b1?host=/var/run/postgresql"
    assert bench._database_url("postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/test", "b1") == \
        "postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/b1"


def test_open_loop_latency_counts_from_when_the_batch_was_due():
    """A send the simulator made late (its own lag, or an earlier answer it waited for) counts whole."""
    import asyncio
    import time

    class Answering:
        port = 0

        async def send(self, request: bytes) -> tuple[int, bytes]:
            return 200, b'{"stored": 100}'

    latencies: list[float] = []
    due = time.perf_counter() - 0.2
    assert asyncio.run(bench._push(Answering(), b"", latencies, due)) == (100, 0)
    assert latencies[0] >= 200
    asyncio.run(bench._push(Answering(), b"", latencies))  # closed loop: from the send itself
    assert latencies[1] < 200
