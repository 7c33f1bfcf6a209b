"""``checkpoint keys`` (make a CP1 issuer key) and ``checkpoint issue`` (sign a pass: text + PNG)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

from edge.passes.credential import PassKind, Recovery, TestResult, Vaccination, holder_hash
from edge.passes.issuer import CP1_ALGORITHMS, IssuerKey, IssuerKeyError

CP1_KIND_NAMES = [k.value for k in PassKind if not k.value.startswith("dcc_")]


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None


@click.command()
@click.option("--issuer", required=True, help="Issuer name carried in every pass (e.g. HN-POLICE).")
@click.option("--alg", "algorithm", type=click.Choice(CP1_ALGORITHMS), default="EdDSA", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Key file to write.")
@click.option("--not-before", help="Start of validity (ISO-8601; default now).")
@click.option("--valid-days", type=float, default=730, show_default=True, help="Length of validity.")
def keys(issuer: str, algorithm: str, out: Path, not_before: str | None, valid_days: float) -> None:
    """Make a CP1 issuer signing key (rotate by making a new one; old keys verify until their end)."""
    if out.exists():
        raise click.ClickException(f"{out} exists: refusing to overwrite an issuer key")
    try:
        key = IssuerKey.generate(issuer, algorithm, not_before=_when(not_before), valid_days=valid_days)
    except IssuerKeyError as exc:
        raise click.ClickException(str(exc)) from None
    key.save(out)
    click.echo(f"kid={key.kid.hex()} issuer={key.issuer} alg={key.algorithm} "
               f"not_before={key.not_before.isoformat()} not_after={key.not_after.isoformat()} file={out}")


@click.command()
@click.option("--key", "key_path", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--kind", type=click.Choice(CP1_KIND_NAMES), required=True)
@click.option("--holder-id", help="Citizen ID; only its hash goes into the pass.")
@click.option("--holder-hash", "holder_hex", help="The 16-byte holder hash as hex (instead of --holder-id).")
@click.option("--days", type=float, default=30, show_default=True, help="Valid for this many days.")
@click.option("--issued-at", help="Issue time (ISO-8601; default now).")
@click.option("--zone", "zones", multiple=True, help="Allowed zone id (repeat; '*' = every zone).")
@click.option("--doses", type=int, help="Vaccine doses received.")
@click.option("--series-doses", type=int, default=2, show_default=True, help="Doses the series needs.")
@click.option("--last-dose", help="Date of the last dose (YYYY-MM-DD).")
@click.option("--test-at", help="Time the test sample was taken (ISO-8601).")
@click.option("--test-positive", is_flag=True, help="The test was positive.")
@click.option("--recovered-on", help="First positive test date of a recovery (YYYY-MM-DD).")
@click.option("--recovery-until", help="Recovery valid until (YYYY-MM-DD).")
@click.option("--pass-id", help="Pass id (default: random).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Writes OUT.txt and OUT.png.")
def issue(key_path: Path, kind: str, holder_id: str | None, holder_hex: str | None, days: float,
          issued_at: str | None, zones: tuple[str, ...], doses: int | None, series_doses: int,
          last_dose: str | None, test_at: str | None, test_positive: bool, recovered_on: str | None,
          recovery_until: str | None, pass_id: str | None, out: Path) -> None:
    """Sign one CP1 pass; write its QR text and a PNG, and print the text."""
    from edge.passes.cp1 import issue_cp1
    from edge.passes.qr import write_png

    if bool(holder_id) == bool(holder_hex):
        raise click.UsageError("give exactly one of --holder-id and --holder-hash")
    try:
        holder = holder_hash(holder_id) if holder_id else bytes.fromhex(holder_hex or "")
        key = IssuerKey.load(key_path)
    except (ValueError, IssuerKeyError) as exc:
        raise click.ClickException(str(exc)) from None
    start = _when(issued_at) or datetime.now(UTC)
    vaccination = Vaccination(doses, series_doses, _day(last_dose)) if doses is not None else None
    test = TestResult(_when(test_at), not test_positive) if test_at else None  # type: ignore[arg-type]
    recovery = (Recovery(_day(recovered_on), _day(recovered_on), _day(recovery_until))
                if recovered_on or recovery_until else None)
    try:
        text = issue_cp1(key, kind, holder, issued_at=start, expires_at=start + timedelta(days=days),
                         zones=zones, vaccination=vaccination, test=test, recovery=recovery, pass_id=pass_id)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    txt = out.with_name(out.name + ".txt")
    txt.parent.mkdir(parents=True, exist_ok=True)
    txt.write_text(text + "\n", encoding="ascii")
    write_png(text, out.with_name(out.name + ".png"))
    click.echo(text)
