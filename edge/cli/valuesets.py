"""``checkpoint valuesets``: seal the EU value sets as a signed list the devices install by sync."""

from __future__ import annotations

from pathlib import Path

import click

from edge.cli.common import publisher_public_key_option, reports_errors
from sync.wire.fsutil import write_atomic
from sync.wire.keyfiles import load_ed25519_private, load_ed25519_public


@click.group()
def valuesets() -> None:
    """EU value sets: which vaccine, test-device and country codes a DCC may use."""


@valuesets.command("seal")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--publisher-key", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Publisher Ed25519 private key (PEM) that signs the list.")
@click.option("--version", "version", type=int, required=True,
              help="List version: higher than the one the devices hold (they never install an older one).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Where to write the list (the server serves <data_dir>/published/valuesets.cpenv).")
@reports_errors
def seal(sources: tuple[Path, ...], publisher_key: Path, version: int, out: Path) -> None:
    """Sign the EU value-set files in SOURCES (files or folders of the EU's JSON, one set each)."""
    from edge.passes.valuesets import ValueSets, ValueSetsError

    if version < 1:
        raise ValueSetsError("--version must be 1 or more (0 names the sets shipped with the software)")
    files = sorted(p for source in sources for p in ([source] if source.is_file() else source.glob("*.json")))
    sets = ValueSets.from_eu_files(files, version)
    write_atomic(out, sets.sign_envelope(load_ed25519_private(publisher_key)))
    sizes = " ".join(f"{name}={len(codes)}" for name, codes in sorted(sets.sets.items()))
    click.echo(f"valuesets version={version} {sizes} file={out}")


@valuesets.command("show")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@publisher_public_key_option
@reports_errors
def show(path: Path, publisher_public_key: Path) -> None:
    """Verify a value-set list and print its sets' sizes."""
    from edge.passes.valuesets import ValueSets, ValueSetsError

    if not path.exists():
        raise ValueSetsError(f"{path}: no such list")
    sets = ValueSets.from_envelope(path.read_bytes(), [load_ed25519_public(publisher_public_key)])
    click.echo(f"version={sets.version} issued_at={sets.issued_at}")
    for name, codes in sorted(sets.sets.items()):
        click.echo(f"  {name}: {len(codes)} codes")
