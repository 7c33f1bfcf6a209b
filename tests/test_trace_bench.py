"""``checkpoint bench trace`` on a tiny database: the real migrations, COPY, the real trace code, dropped after."""

import json

import psycopg
import pytest
from click.testing import CliRunner
from conftest import PG_DSN, _pg_available

from edge.cli import main

pytestmark = pytest.mark.postgres


def test_bench_trace_loads_every_record_traces_through_pruned_partitions_and_drops_its_database():
    if not _pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    run = CliRunner().invoke(main, ["bench", "trace", "--records", "30000", "--checkpoints", "20", "--days", "3",
                                    "--queries", "6", "--json"])
    assert run.exit_code == 0, run.output
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["trace_records_stored"] == figures["trace_records"] == 30000
    assert figures["trace_queries"] == 6 and 0 < figures["trace_p50_ms"] <= figures["trace_p99_ms"]
    assert figures["trace_visits_median"] >= 1 and figures["trace_contacts_max"] >= 1  # holders scanned, met
    # the scan-time bounds prune the partitions: only the months with records are read, never the default
    assert "records_p" in figures["trace_visits_plan"] and "records_default" not in figures["trace_visits_plan"]
    assert "records_default" not in figures["trace_contacts_plan"]
    assert figures["trace_index_by_holder_mb"] > 0 and figures["trace_1e9_heap_gb"] > 0
    # the indexes dropped for the COPY were rebuilt as the migrations define them, and after the
    # VACUUM both trace queries are read from the covering indexes alone
    assert figures["trace_schema_same_as_migrations"] and figures["trace_load_index_build_s"] > 0
    assert "Index Only Scan" in figures["trace_visits_plan"] and "Index Scan" not in figures["trace_visits_plan"]
    assert "Index Only Scan" in figures["trace_contacts_plan"] and "Index Scan" not in figures["trace_contacts_plan"]
    with psycopg.connect(PG_DSN) as db:
        left = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (figures["trace_database"],)).fetchone()
    assert left is None
