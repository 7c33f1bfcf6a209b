"""``checkpoint keys``: make a CP1 issuer signing key."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from edge.cli.common import ISO_TIME, reports_errors
from edge.passes.issuer import CP1_ALGORITHMS, IssuerKey


@click.command()
@click.option("--issuer", required=True, help="Issuer name carried in every pass (e.g. HN-POLICE).")
@click.option("--alg", "algorithm", type=click.Choice(CP1_ALGORITHMS), default="EdDSA", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Key file to write.")
@click.option("--not-before", type=ISO_TIME, help="Start of validity (ISO-8601; default now).")
@click.option("--valid-days", type=float, default=730, show_default=True, help="Length of validity.")
@reports_errors
def keys(issuer: str, algorithm: str, out: Path, not_before: datetime | None, valid_days: float) -> None:
    """Make a CP1 issuer signing key (rotate by making a new one; old keys verify until their end)."""
    if out.exists():
        raise click.ClickException(f"{out} exists: refusing to overwrite an issuer key")
    key = IssuerKey.generate(issuer, algorithm, not_before=not_before, valid_days=valid_days)
    key.save(out)
    click.echo(f"kid={key.kid.hex()} issuer={key.issuer} alg={key.algorithm} "
               f"not_before={key.not_before.isoformat()} not_after={key.not_after.isoformat()} file={out}")
