"""``checkpoint provision``: write provisioning bundles for devices, by the hundred."""

from __future__ import annotations

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
@click.option("--checkpoint", "checkpoint_name", default="", help="Checkpoint name (default: the device id).")
@click.option("--enroll-token", envvar="CHECKPOINT_ENROLL_TOKEN", default=None,
              help="The fleet's provisioning token (env CHECKPOINT_ENROLL_TOKEN); the server must run with it.")
@click.option("--etc-dir", type=click.Path(path_type=Path), default=Path("/etc/checkpoint"), show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("/var/lib/checkpoint"), show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="One sub-folder per device is written here.")
def provision(server_data: Path, server_url: str, prefix: str, start: int, count: int, checkpoint_name: str,
              enroll_token: str | None, etc_dir: Path, data_dir: Path, out_dir: Path) -> None:
    """Write provisioning bundles for COUNT devices (copy each onto its SD card's boot partition)."""
    try:
        keys = ServerKeys.from_server_data(server_data)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"server keys unusable: {exc}") from None
    if not enroll_token:
        click.echo("warning: no --enroll-token: enroll each device with 'checkpoint server enroll'", err=True)
    ids = [f"{prefix}{n:03d}" for n in range(start, start + count)]
    existing = [i for i in ids if (out_dir / i).exists()]
    if existing:
        raise click.ClickException(f"{len(existing)} bundle(s) exist already (first: {out_dir / existing[0]}); "
                                   "choose another --start or --out")
    with click.progressbar(ids, label="writing bundles", file=sys.stderr) as bar:
        for device_id in bar:
            config = device_config(device_id, checkpoint=checkpoint_name or device_id, server_url=server_url,
                                   etc_dir=etc_dir, data_dir=data_dir)
            write_bundle(out_dir / device_id, config, keys, enroll_token)
    click.echo(f"wrote {count} bundle(s) to {out_dir}: copy each folder to /boot/firmware/checkpoint/ "
               "on its SD card")
