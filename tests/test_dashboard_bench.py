"""``checkpoint bench dashboard`` at a tiny size: the real command fills PostgreSQL, a real server
process renders both pages to a logged-in viewer, and the roll-up it loads matches the records."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest
from click.testing import CliRunner
from conftest import PG_DSN, _pg_available

from edge.cli import main
from edge.devtools.bench import dashboard
from edge.devtools.server_procs import new_server_data_dir

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _needs_pg():
    if not _pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")


def test_bench_dashboard_quick_reports_render_times():
    result = CliRunner().invoke(main, ["bench", "dashboard", "--devices", "10", "--records", "3000", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["dashboard_devices"] == 10 and figures["dashboard_records"] == 3000
    for page in ("fleet", "checkpoint"):
        assert 0 < figures[f"{page}_p50_ms"] <= figures[f"{page}_p95_ms"]
    assert figures["dashboard_rollup_rows"] > 0


def test_the_loaded_fleet_is_consistent(tmp_path):
    schema = "t_bench_dash_fill"
    url = f"{PG_DSN}?schema={schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    try:
        new_server_data_dir(tmp_path / "data", url)
        ids = dashboard.fill(url, tmp_path / "data", 8, 2500, datetime.now(UTC))
        assert ids == ["HN-0001", "HN-0002", "HN-0003", "HN-0004"]
        with psycopg.connect(PG_DSN, autocommit=True) as db:
            db.execute(f'SET search_path TO "{schema}"')
            assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 2500
            # every device's seqs run 1..n in time order, and the roll-up counts each record once
            bad = db.execute("SELECT COUNT(*) FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY "
                             "wall_time) AS n FROM records) s WHERE seq <> n").fetchone()[0]
            assert bad == 0
            assert db.execute("SELECT SUM(scans) FROM hourly_activity WHERE device_id LIKE '*%'").fetchone()[0] == 2500
            assert db.execute("SELECT SUM(records) FROM devices").fetchone()[0] == 2500
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
