"""``checkpoint provision``: write provisioning bundles, by the hundred, from the fleet's checkpoints file.

Each bundle carries its device's own one-time enrollment token, made here in the server's
database (bound to the device id, expiring, single use): a token copied off one SD card enrolls
no other device, and cannot enroll this one twice. Every input is checked before the first
bundle or token is written.
"""

from __future__ import annotations

import getpass
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from edge.cli.common import reports_errors
from edge.device.bundle import ServerKeys, device_config, write_bundle
from sync.server.registry import Checkpoint, load_checkpoints_csv


@dataclass(frozen=True)
class Planned:
    """One bundle to write: the device, its checkpoint, and where it goes."""

    device_id: str
    checkpoint: Checkpoint | None
    folder: Path


def _plan_from_csv(path: Path, out_dir: Path) -> list[Planned]:
    return [Planned(device_id, c, out_dir / device_id)
            for c in load_checkpoints_csv(path) for device_id in c.device_ids]


def _plan_from_prefix(prefix: str, start: int, count: int, out_dir: Path) -> list[Planned]:
    return [Planned(f"{prefix}{n:03d}", None, out_dir / f"{prefix}{n:03d}") for n in range(start, start + count)]


def _groups(planned: Planned, groups: tuple[str, ...]) -> dict | None:
    """The device's checkpoint groups (policies may name them): the given ones and its checkpoint's zone."""
    zone = [planned.checkpoint.zone] if planned.checkpoint and planned.checkpoint.zone else []
    named = list(dict.fromkeys([*groups, *zone]))
    return {"device": {"groups": named}} if named else None


@click.command()
@click.option("--server-data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The central server's data dir (its keys/*.pub.pem are pinned on the devices).")
@click.option("--server-url", required=True, help="Base URL the devices sync with (a checkpoint row may override).")
@click.option("--checkpoints", "checkpoints_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The fleet's checkpoints.csv: one bundle per device of every checkpoint (columns "
                   "checkpoint_id, name, province; optional district, zone, latitude, longitude, policy, "
                   "devices, server_url).")
@click.option("--prefix", default="CP-", show_default=True, help="Without --checkpoints: ids are PREFIX + number.")
@click.option("--start", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--count", default=1, show_default=True, type=click.IntRange(min=1, max=100_000))
@click.option("--checkpoint", "checkpoint_id", default="",
              help="Without --checkpoints: the checkpoint id of these devices (default: each device's id).")
@click.option("--group", "groups", multiple=True,
              help="Checkpoint group the devices belong to (repeat); a checkpoints file adds each row's zone.")
@click.option("--db", "db_url", default=None,
              help="The server's database if not SERVER_DATA/server.sqlite (the tokens are stored there).")
@click.option("--token-ttl-days", default=30.0, show_default=True, type=click.FloatRange(min=0.01, max=365),
              help="Each device must enroll within this time (else: 'checkpoint server token DEVICE_ID').")
@click.option("--etc-dir", type=click.Path(path_type=Path), default=Path("/etc/checkpoint"), show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("/var/lib/checkpoint"), show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="One sub-folder per device is written here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (devices and their checkpoints).")
@reports_errors
def provision(server_data: Path, server_url: str, checkpoints_csv: Path | None, prefix: str, start: int, count: int,
              checkpoint_id: str, groups: tuple[str, ...], db_url: str | None, token_ttl_days: float, etc_dir: Path,
              data_dir: Path, out_dir: Path, as_json: bool) -> None:
    """Write a provisioning bundle per device (copy each onto its SD card's boot partition).

    A bad row of the checkpoints file is reported by line and column and nothing is written.
    """
    from sync.server.enrollment import issue_token
    from sync.server.settings import ServerSettings
    from sync.server.storage import open_storage
    from sync.wire.errors import CheckpointError
    from sync.wire.protocol import DEVICE_ID_PATTERN

    try:
        keys = ServerKeys.from_server_data(server_data)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"server keys unusable: {exc}") from None
    plan = (_plan_from_csv(checkpoints_csv, out_dir) if checkpoints_csv
            else _plan_from_prefix(prefix, start, count, out_dir))
    bad = [p.device_id for p in plan if not re.fullmatch(DEVICE_ID_PATTERN, p.device_id)]
    if bad:
        raise click.ClickException(f"device id {bad[0]!r}: use letters, digits, '.', '_' or '-' in --prefix")
    existing = [p.folder for p in plan if p.folder.exists()]
    if existing:
        raise click.ClickException(f"{len(existing)} bundle(s) exist already (first: {existing[0]}); "
                                   "choose another --out (or --start)")
    configs = [device_config(
        p.device_id, checkpoint=p.checkpoint.checkpoint_id if p.checkpoint else (checkpoint_id or p.device_id),
        checkpoint_name=p.checkpoint.name if p.checkpoint else "",
        server_url=(p.checkpoint.server_url if p.checkpoint and p.checkpoint.server_url else server_url),
        etc_dir=etc_dir, data_dir=data_dir, overrides=_groups(p, groups)) for p in plan]  # all checked first
    try:
        storage = open_storage(ServerSettings.from_data_dir(server_data, db_url=db_url).db_url)
    except CheckpointError as exc:
        raise click.ClickException(f"cannot store the enrollment tokens: {exc}") from None
    ttl_s = int(token_ttl_days * 86400)
    try:
        with click.progressbar(list(zip(plan, configs, strict=True)), label="writing bundles",
                               file=sys.stderr) as bar:
            for planned, config in bar:
                write_bundle(planned.folder, config, keys, issue_token(storage, planned.device_id, ttl_s=ttl_s))
        storage.audit(f"cli:{getpass.getuser()}", "provision", f"{plan[0].device_id}..{plan[-1].device_id}", "ok",
                      f"{len(plan)} bundles, tokens valid {token_ttl_days} days", "cli")
    finally:
        storage.close()
    if as_json:
        click.echo(json.dumps({"out": str(out_dir), "bundles": [
            {"device_id": p.device_id, "checkpoint_id": p.checkpoint.checkpoint_id if p.checkpoint else None,
             "name": p.checkpoint.name if p.checkpoint else None, "folder": str(p.folder)} for p in plan]},
            ensure_ascii=False))
        return
    click.echo(f"wrote {len(plan)} bundle(s) to {out_dir}: copy each folder to /boot/firmware/checkpoint/ "
               "on its SD card")
