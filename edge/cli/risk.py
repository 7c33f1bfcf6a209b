"""``checkpoint risk``: publish lists (central side), apply updates and show status (device)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from edge.cli.common import ISO_TIME, reports_errors
from edge.config import load_config
from edge.lists.risk_store import RiskStore
from edge.lists.version_floor import VersionFloor
from sync.server.publish.risk import RiskPublisher
from sync.server.publish.risk_inputs import read_changes
from sync.wire.identifiers import IdentifierKey
from sync.wire.keyfiles import load_ed25519_private, load_ed25519_public
from sync.wire.risk.types import Coverage, RiskUpdateError


@click.group()
def risk() -> None:
    """Risk list (F0 / F1 / revoked): publish, apply updates, show status."""


@risk.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Publisher directory (authoritative set and history).")
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Publisher Ed25519 private key (PEM).")
@click.option("--at", "published_at", type=ISO_TIME, default=None,
              help="Publication time, ISO-8601 (default now; without a zone: UTC).")
@click.option("--id-key", "id_key_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Identifier key (the central server's keys/holder_id.key) that turns 'id' rows into the "
                   "keyed values passes carry. Repeat during a rotation: the current key first, then the "
                   "older ones whose passes are still valid.")
@click.option("--covers", "covers", multiple=True, metavar="FORMAT:ISSUER",
              help="What the list covers from this version on (repeat: CP1:*, HC1:VN, ...); default: as "
                   "before. Passes the list does not cover get CHECK on the devices.")
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@reports_errors
def publish(directory: Path, key_file: Path, published_at: datetime | None, id_key_files: tuple[Path, ...],
            covers: tuple[str, ...], input_file: Path) -> None:
    """Publish the changes in INPUT_FILE (.csv, .jsonl or .json) as the next version.

    Rows name a citizen ('id', published only as its keyed value), the certificate ids of the
    EU DCCs issued to them ('uci'), or a ready-made 'key'. The file is read as a stream and
    checked whole first: a bad row is reported by its line number and nothing is published.
    """
    key = load_ed25519_private(key_file)
    id_keys = [IdentifierKey.load(path) for path in id_key_files]
    try:
        coverage = Coverage.parse(list(covers)) if covers else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--covers") from None
    with click.progressbar(length=max(1, input_file.stat().st_size), label="reading", file=sys.stderr) as bar:
        def progress(done: int) -> None:
            bar.update(done - bar.pos)

        changes = read_changes(input_file, progress, id_keys=id_keys)
    publisher = RiskPublisher(directory, key)
    version = publisher.publish(changes, published_at, coverage)
    click.echo(f"published version {version}: {len(changes):,} changes, {publisher.entries:,} entries, "
               f"covers {' '.join(publisher.coverage.as_list())}")


@reports_errors
def _open_device_store(config_file: Path) -> RiskStore:
    config = load_config(config_file)
    keys = [load_ed25519_public(config.resolve(config.keys.publisher_public_key))]
    return RiskStore.open(config.resolve(config.risk.path), keys,
                          VersionFloor(config.resolve(config.lists.versions_path)))


@risk.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.argument("blobs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def apply(config_file: Path, blobs: tuple[Path, ...]) -> None:
    """Apply signed snapshot/delta files in order; a rejected file leaves the list as it was."""
    store = _open_device_store(config_file)
    failed = 0
    for blob in blobs:
        try:
            version = store.apply(blob.read_bytes())
            click.echo(f"{blob}: applied, now version {version}")
        except (RiskUpdateError, OSError) as exc:
            failed += 1
            click.echo(f"{blob}: rejected: {exc} (list stays at version {store.version})", err=True)
    if store.needs_snapshot:
        click.echo("a full snapshot is needed (chain or digest mismatch, or no list yet)", err=True)
    if failed:
        sys.exit(1)


@risk.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(config_file: Path, as_json: bool) -> None:
    """Show version, publication time, entries and bytes on disk of the device's list."""
    info = _open_device_store(config_file).status().as_dict()
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
        return
    for name, value in info.items():
        click.echo(f"{name:>15}: {value}")
