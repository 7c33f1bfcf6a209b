"""``checkpoint trace``: a tracer's query on the central server's host, audited like the API's.

Where and when a holder (citizen id, keyed here with the server's identifier key, or a DCC
certificate id) was scanned in a period, and who was scanned at the same checkpoint within ± the
window: ranked candidate contacts, keyed values only.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from edge.cli.common import ISO_TIME, reports_errors
from sync.wire.fsutil import write_atomic


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("server-data"),
              show_default=True, help="The central server's data directory (identifier key, registry).")
@click.option("--db", "db_url", default=None, help="The server's database if not DATA_DIR/server.sqlite.")
@click.option("--citizen-id", default=None, help="The person's citizen id (never stored: keyed, then looked up).")
@click.option("--uci", default=None, help="Or an EU DCC certificate identifier.")
@click.option("--since", type=ISO_TIME, required=True, help="Start of the period (ISO-8601).")
@click.option("--until", type=ISO_TIME, default=None, help="End of the period (default now).")
@click.option("--window-min", type=click.IntRange(1, 720), default=30, show_default=True,
              help="Contacts: scanned at the same checkpoint within this many minutes.")
@click.option("--json", "as_json", is_flag=True, help="Export: the whole result as JSON on standard output.")
@click.option("--csv", "csv_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Export: the visits and contacts as CSV to this file ('-': standard output).")
@reports_errors
def trace(data_dir: Path, db_url: str | None, citizen_id: str | None, uci: str | None, since: datetime,
          until: datetime | None, window_min: int, as_json: bool, csv_file: Path | None) -> None:
    """Visits of a holder and the candidate contacts (ranked by closeness in time).

    Results leave the server only as an export (--json, --csv), audited as trace_export.
    """
    from sync.server.registry import Registry
    from sync.server.settings import ServerSettings
    from sync.server.storage import open_storage
    from sync.server.trace import trace as run_trace
    from sync.server.trace import trace_csv, trace_json, trace_summary, traced_holder

    settings = ServerSettings.from_data_dir(data_dir, db_url=db_url)
    holder = traced_holder(citizen_id=citizen_id, uci=uci, key=settings.identifier_key)
    if as_json and csv_file is not None:
        raise click.UsageError("export as --json or as --csv FILE, not both")
    exporting = as_json or csv_file is not None
    storage = open_storage(settings.db_url)
    try:
        result = run_trace(storage, Registry.load(settings.data_dir), holder, since, until or datetime.now(UTC),
                           timedelta(minutes=window_min))
        storage.audit(f"cli:{getpass.getuser()}", "trace_export" if exporting else "trace", holder.hex(), "ok",
                      trace_summary(result, window_min) + (f" as {'JSON' if as_json else 'CSV'}" if exporting else ""),
                      "cli")
    finally:
        storage.close()
    if as_json:
        click.echo(json.dumps(trace_json(result), ensure_ascii=False))
        return
    if csv_file is not None:
        if str(csv_file) == "-":
            click.echo(trace_csv(result), nl=False)
        else:
            write_atomic(csv_file, trace_csv(result).encode(), mode=0o600)  # identifiers: owner only
            click.echo(f"wrote {csv_file}: {len(result.visits)} visit(s), {len(result.contacts)} contact(s)")
        return
    click.echo(f"holder {holder.hex()}: {len(result.visits)} visit(s), {len(result.contacts)} candidate contact(s)")
    for visit in result.visits:
        click.echo(f"  visit  {visit.at.isoformat(timespec='minutes')}  {visit.checkpoint_id:<16} {visit.decision}")
    for contact in result.contacts[:50]:
        where = ", ".join(f"{c}×{n}" for c, n in contact.checkpoints.items())
        click.echo(f"  contact {contact.holder.hex()}  closest {contact.closest_s / 60:5.1f} min  "
                   f"{contact.times}×  {where}")
