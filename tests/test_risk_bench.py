"""``checkpoint bench risk`` runs end to end on a small list and reports every promised figure."""

from __future__ import annotations

import json

from click.testing import CliRunner

from edge.cli import main
from edge.devtools.bench.risk import run

REQUIRED = {"entries", "bytes_per_entry", "lookup_p99_us", "delta_apply_s", "delta_written_bytes",
            "delta_wire_bytes", "build_s", "snapshot_wire_bytes", "lookup_hit_median_us",
            "lookup_miss_median_us", "lookup_hit_p99_us", "lookup_miss_p99_us", "open_check_median_s",
            "open_check_after_deltas_median_s"}


def test_bench_figures_are_plausible() -> None:
    figures = run(quick=True, entries=20_000, deltas=2)
    assert set(figures) >= REQUIRED
    assert figures["entries"] == 20_000
    assert 19 <= figures["bytes_per_entry"] <= 20  # 19-byte records plus a small index
    assert 160_000 <= figures["delta_wire_bytes"] <= 200_000  # 10k keys are 160 kB raw
    assert figures["delta_written_bytes"] >= 0 and figures["delta_file_bytes"] >= 10_000 * 19
    assert figures["snapshot_wire_bytes"] >= 20_000 * 16
    assert 0 < figures["open_check_median_s"] <= figures["open_check_max_s"]


def test_bench_cli_json() -> None:
    result = CliRunner().invoke(main, ["bench", "risk", "--quick", "--entries", "5000", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1])["entries"] == 5000


def test_publish_bench_runs_the_real_command_and_measures_it() -> None:
    figures = run(publish_rows=20_000)
    assert figures["publish_rows"] == 20_000 and figures["publish_s"] > 0
    assert 30 < figures["publish_peak_rss_mb"] < 2000  # the publisher process's own peak, from the kernel
