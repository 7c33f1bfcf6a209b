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
@click.option("--json", "as_json", is_flag=True, help="The whole result as JSON (the tracer's export).")
@reports_errors
def trace(data_dir: Path, db_url: str | None, citizen_id: str | None, uci: str | None, since: datetime,
          until: datetime | None, window_min: int, as_json: bool) -> None:
    """Visits of a holder and the candidate contacts (ranked by closeness in time)."""
    from sync.server.registry import Registry
    from sync.server.settings import ServerSettings
    from sync.server.storage import open_storage
    from sync.server.trace import trace as run_trace
    from sync.server.trace import trace_json, traced_holder

    settings = ServerSettings.from_data_dir(data_dir, db_url=db_url)
    holder = traced_holder(citizen_id=citizen_id, uci=uci, key=settings.identifier_key)
    storage = open_storage(settings.db_url)
    try:
        result = run_trace(storage, Registry.load(settings.data_dir), holder, since, until or datetime.now(UTC),
                           timedelta(minutes=window_min))
        storage.audit(f"cli:{getpass.getuser()}", "trace", holder.hex(), "ok",
                      f"{since.isoformat()}..{(until or datetime.now(UTC)).isoformat()} ±{window_min} min: "
                      f"{len(result.visits)} visits, {len(result.contacts)} contacts", "cli")
    finally:
        storage.close()
    if as_json:
        click.echo(json.dumps(trace_json(result), ensure_ascii=False))
        return
    click.echo(f"holder {holder.hex()}: {len(result.visits)} visit(s), {len(result.contacts)} candidate contact(s)")
    for visit in result.visits:
        click.echo(f"  visit  {visit.at.isoformat(timespec='minutes')}  {visit.checkpoint_id:<16} {visit.decision}")
    for contact in result.contacts[:50]:
        where = ", ".join(f"{c}×{n}" for c, n in contact.checkpoints.items())
        click.echo(f"  contact {contact.holder.hex()}  closest {contact.closest_s / 60:5.1f} min  "
                   f"{contact.times}×  {where}")
