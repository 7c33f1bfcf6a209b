"""``checkpoint issue``: sign one CP1 pass, write its QR text and a PNG."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

from edge.cli.common import ISO_DATE, ISO_TIME, reports_errors
from edge.passes.credential import PassKind, Recovery, TestResult, Vaccination
from edge.passes.issuer import IssuerKey
from sync.wire.identifiers import IdentifierKey, holder_hash

CP1_KIND_NAMES = [k.value for k in PassKind if not k.value.startswith("dcc_")]


@click.command()
@click.option("--key", "key_path", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--kind", type=click.Choice(CP1_KIND_NAMES), required=True)
@click.option("--holder-id", help="Citizen ID; only its keyed value goes into the pass (needs --id-key).")
@click.option("--id-key", "id_key_path", type=click.Path(path_type=Path, dir_okay=False),
              help="The identifier key (issuing authority and central server only) for --holder-id.")
@click.option("--holder-hash", "holder_hex", help="The 16-byte holder hash as hex (instead of --holder-id).")
@click.option("--days", type=float, default=30, show_default=True, help="Valid for this many days.")
@click.option("--issued-at", type=ISO_TIME, help="Issue time (ISO-8601; default now).")
@click.option("--zone", "zones", multiple=True, help="Allowed zone id (repeat; '*' = every zone).")
@click.option("--doses", type=int, help="Vaccine doses received.")
@click.option("--series-doses", type=int, default=2, show_default=True, help="Doses the series needs.")
@click.option("--last-dose", type=ISO_DATE, help="Date of the last dose (YYYY-MM-DD).")
@click.option("--test-at", type=ISO_TIME, help="Time the test sample was taken (ISO-8601).")
@click.option("--test-positive", is_flag=True, help="The test was positive.")
@click.option("--recovered-on", type=ISO_DATE, help="First positive test date of a recovery (YYYY-MM-DD).")
@click.option("--recovery-until", type=ISO_DATE, help="Recovery valid until (YYYY-MM-DD).")
@click.option("--pass-id", help="Pass id (default: random).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Writes OUT.txt and OUT.png.")
@reports_errors
def issue(key_path: Path, kind: str, holder_id: str | None, id_key_path: Path | None, holder_hex: str | None,
          days: float,
          issued_at: datetime | None, zones: tuple[str, ...], doses: int | None, series_doses: int,
          last_dose: date | None, test_at: datetime | None, test_positive: bool, recovered_on: date | None,
          recovery_until: date | None, pass_id: str | None, out: Path) -> None:
    """Sign one CP1 pass; write its QR text and a PNG, and print the text."""
    from edge.devtools.qr import write_png
    from edge.passes.cp1 import issue_cp1

    if bool(holder_id) == bool(holder_hex):
        raise click.UsageError("give exactly one of --holder-id and --holder-hash")
    if holder_id and id_key_path is None:
        raise click.UsageError("--holder-id needs --id-key: a citizen id goes into a pass only as its keyed value")
    holder = (holder_hash(holder_id, IdentifierKey.load(id_key_path)) if holder_id and id_key_path
              else bytes.fromhex(holder_hex or ""))
    key = IssuerKey.load(key_path)
    start = issued_at or datetime.now(UTC)
    vaccination = Vaccination(doses, series_doses, last_dose) if doses is not None else None
    test = TestResult(test_at, not test_positive) if test_at else None
    recovery = (Recovery(recovered_on, recovered_on, recovery_until)
                if recovered_on or recovery_until else None)
    text = issue_cp1(key, kind, holder, issued_at=start, expires_at=start + timedelta(days=days),
                     zones=zones, vaccination=vaccination, test=test, recovery=recovery, pass_id=pass_id)
    txt = out.with_name(out.name + ".txt")
    txt.parent.mkdir(parents=True, exist_ok=True)
    txt.write_text(text + "\n", encoding="ascii")
    write_png(text, out.with_name(out.name + ".png"))
    click.echo(text)
