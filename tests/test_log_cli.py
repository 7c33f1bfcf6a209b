"""``checkpoint log``: what the real scan log wrote, read back without the daemon."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner
from conftest import append_samples

from edge.cli import main


def test_show_and_export_read_the_real_scan_log(scanlog):
    append_samples(scanlog, 6)
    scanlog.acknowledge(4)
    path = str(scanlog.path)

    shown = CliRunner().invoke(main, ["log", "show", path])
    assert shown.exit_code == 0, shown.output
    assert "device:   dev-1" in shown.output and "records:  6 (seq 1..6)" in shown.output
    assert "acked:    up to seq 4" in shown.output and "pending 2" in shown.output
    assert "REFUSE risk_f1" in shown.output

    lines = CliRunner().invoke(main, ["log", "export", path, "--since", "3"]).output.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["seq"] for r in rows] == [3, 4, 5, 6]
    assert all("holder_enc" not in r for r in rows)  # sealed identifiers never leave the log
    assert rows[0]["has_holder"] == 0 and rows[1]["has_holder"] == 1  # sample 2 is not a pass, 3 is
    assert rows[1]["prev_hash"] == rows[0]["hash"]

    as_csv = list(csv.DictReader(io.StringIO(CliRunner().invoke(main, ["log", "export", path, "--format", "csv"])
                                             .output)))
    assert len(as_csv) == 6 and as_csv[5]["reason"] == rows[3]["reason"]


def test_missing_or_foreign_file_is_a_clear_error(tmp_path):
    missing = CliRunner().invoke(main, ["log", "show", str(tmp_path / "nope.sqlite")])
    assert missing.exit_code == 1 and "no scan log at" in missing.output
    assert not (tmp_path / "nope.sqlite").exists()  # read-only: nothing created
    other = tmp_path / "other.sqlite"
    import sqlite3
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    foreign = CliRunner().invoke(main, ["log", "show", str(other)])
    assert foreign.exit_code == 1 and "is not a scan log" in foreign.output
