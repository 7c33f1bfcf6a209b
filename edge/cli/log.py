"""``checkpoint log``: look into a device's scan log without the daemon (read-only).

Built on sqlite-utils (the device's scan log is a plain SQLite file): ``show`` summarises it,
``export`` writes its records as CSV or JSON lines for an operator or an investigator. Holder
identifiers stay sealed to the central server: the export carries no ``holder_enc`` column, only
whether a record had a holder.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from edge.cli.common import reports_errors

try:
    import sqlite_utils
except ImportError:  # a tools extra: a lean device install does not carry it
    sqlite_utils = None

#: exported columns: everything but the sealed holder identifier (and the raw chain bytes as hex)
EXPORT_SQL = """
SELECT seq, wall_time, monotonic, boot_id, clock_trusted, format, kind, holder_enc IS NOT NULL AS has_holder,
       decision, reason, policy_version, risk_version, hex(prev_hash) AS prev_hash, hex(hash) AS hash
FROM records WHERE seq >= :since ORDER BY seq
"""


def _open_read_only(path: Path) -> sqlite_utils.Database:
    if sqlite_utils is None:
        raise click.ClickException("checkpoint log needs sqlite-utils: pip install 'checkpoint-appliance[tools]'")
    if not path.is_file():
        raise click.ClickException(f"no scan log at {path}: check --log (device default: scanlog.path in the config)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # never takes the writer's lock, never creates
    db = sqlite_utils.Database(conn)
    if "records" not in db.table_names():
        raise click.ClickException(f"{path} is not a scan log (no records table)")
    return db


@click.group()
def log() -> None:
    """Read a device's scan log (read-only; safe while the daemon runs)."""


@log.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@reports_errors
def show(path: Path) -> None:
    """Counts, sequence range, acknowledged and pending records, decisions by reason."""
    db = _open_read_only(path)
    first, last, count = next(db.query("SELECT MIN(seq) AS a, MAX(seq) AS b, COUNT(*) AS n FROM records")).values()
    acked = next(db.query("SELECT acked_seq, acked_at FROM sync_state"), {"acked_seq": 0, "acked_at": None})
    device = next(db.query("SELECT value FROM meta WHERE key = 'device_id'"), {"value": "?"})["value"]
    click.echo(f"device:   {device}")
    click.echo(f"records:  {count:,} (seq {first or 0}..{last or 0})")
    click.echo(f"acked:    up to seq {acked['acked_seq']} (at {acked['acked_at'] or 'never'}); "
               f"pending {max(0, (last or 0) - acked['acked_seq']):,}")
    for row in db.query("SELECT decision, reason, COUNT(*) AS n FROM records GROUP BY 1, 2 ORDER BY 3 DESC"):
        click.echo(f"  {row['decision']:<6} {row['reason']:<24} {row['n']:,}")


@log.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="jsonl", show_default=True)
@click.option("--since", type=click.IntRange(min=0), default=0, help="First sequence number to export.")
@reports_errors
def export(path: Path, fmt: str, since: int) -> None:
    """Write the records (no holder identifiers) to standard output, oldest first."""
    db = _open_read_only(path)
    rows: Iterator[dict] = iter(db.query(EXPORT_SQL, {"since": since}))
    if fmt == "jsonl":
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    first = next(rows, None)
    if first is None:
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(first))
    writer.writeheader()
    writer.writerow(first)
    writer.writerows(rows)
