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
