"""``checkpoint provision``: write provisioning bundles for devices, by the hundred.

Each bundle carries its device's own one-time enrollment token, made here in the server's
database (bound to the device id, expiring, single use): a token copied off one SD card enrolls
no other device, and cannot enroll this one twice.
"""

from __future__ import annotations

import getpass
import re
import sys
from pathlib import Path

import click

from edge.device.bundle import ServerKeys, device_config, write_bundle


@click.command()
@click.option("--server-data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The central server's data dir (its keys/*.pub.pem are pinned on the devices).")
@click.option("--server-url", required=True, help="Base URL the devices sync with.")
@click.option("--prefix", default="CP-", show_default=True, help="Device ids are PREFIX + a 3-digit number.")
@click.option("--start", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--count", default=1, show_default=True, type=click.IntRange(min=1, max=100_000))
@click.option("--checkpoint", "checkpoint_name", default="",
              help="Checkpoint id (letters, digits, . _ -; default: the device id); policies name it.")
@click.option("--group", "groups", multiple=True,
              help="Checkpoint group the devices belong to (repeat), e.g. their zone; policies may name it.")
@click.option("--db", "db_url", default=None,
              help="The server's database if not SERVER_DATA/server.sqlite (the tokens are stored there).")
@click.option("--token-ttl-days", default=30.0, show_default=True, type=click.FloatRange(min=0.01, max=365),
              help="Each device must enroll within this time (else: 'checkpoint server token DEVICE_ID').")
@click.option("--etc-dir", type=click.Path(path_type=Path), default=Path("/etc/checkpoint"), show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("/var/lib/checkpoint"), show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="One sub-folder per device is written here.")
def provision(server_data: Path, server_url: str, prefix: str, start: int, count: int, checkpoint_name: str,
              groups: tuple[str, ...], db_url: str | None, token_ttl_days: float, etc_dir: Path, data_dir: Path,
              out_dir: Path) -> None:
    """Write provisioning bundles for COUNT devices (copy each onto its SD card's boot partition)."""
    from sync.server.enrollment import issue_token
    from sync.server.settings import ServerSettings
    from sync.server.storage import open_storage
    from sync.wire.errors import CheckpointError
    from sync.wire.protocol import DEVICE_ID_PATTERN
    try:
        keys = ServerKeys.from_server_data(server_data)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"server keys unusable: {exc}") from None
    ids = [f"{prefix}{n:03d}" for n in range(start, start + count)]
    bad = [i for i in ids if not re.fullmatch(DEVICE_ID_PATTERN, i)]
    if bad:
        raise click.ClickException(f"device id {bad[0]!r}: use letters, digits, '.', '_' or '-' in --prefix")
    existing = [i for i in ids if (out_dir / i).exists()]
    if existing:
        raise click.ClickException(f"{len(existing)} bundle(s) exist already (first: {out_dir / existing[0]}); "
                                   "choose another --start or --out")
    try:
        storage = open_storage(ServerSettings.from_data_dir(server_data, db_url=db_url).db_url)
    except CheckpointError as exc:
        raise click.ClickException(f"cannot store the enrollment tokens: {exc}") from None
    ttl_s = int(token_ttl_days * 86400)
    try:
        with click.progressbar(ids, label="writing bundles", file=sys.stderr) as bar:
            for device_id in bar:
                config = device_config(device_id, checkpoint=checkpoint_name or device_id, server_url=server_url,
                                       etc_dir=etc_dir, data_dir=data_dir,
                                       overrides={"device": {"groups": list(groups)}} if groups else None)
                write_bundle(out_dir / device_id, config, keys, issue_token(storage, device_id, ttl_s=ttl_s))
        storage.audit(f"cli:{getpass.getuser()}", "provision", f"{ids[0]}..{ids[-1]}", "ok",
                      f"{count} bundles, tokens valid {token_ttl_days} days", "cli")
    finally:
        storage.close()
    click.echo(f"wrote {count} bundle(s) to {out_dir}: copy each folder to /boot/firmware/checkpoint/ "
               "on its SD card")
