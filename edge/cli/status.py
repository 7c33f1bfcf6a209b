"""``checkpoint status``: what the daemon is doing, from the status file it writes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge.cli.common import reports_errors
from edge.device.status import DEFAULT_CONFIG, STALE_AFTER_S, StatusFile, format_status


def status_path(config_path: Path | None) -> Path:
    """Where the config puts the status file."""
    from edge.config import load_config

    config = load_config(config_path or DEFAULT_CONFIG)
    return config.resolve(config.status.path)


@click.command("status")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Device config (default {DEFAULT_CONFIG}).")
@click.option("--json", "as_json", is_flag=True, help="Print the raw status JSON.")
@reports_errors
def status_command(config_path: Path | None, as_json: bool) -> None:
    """What the daemon is doing: last frame age, verdicts, faults, risk list, clock, unsynced records.

    Exit 0 when the status is fresh, 1 when there is none, 2 when it is stale (daemon down?).
    """

    path = status_path(config_path)
    status = StatusFile(path)
    try:
        snapshot, age = status.read(), status.age_s()
    except FileNotFoundError:
        click.echo(f"no status at {path}: the daemon has not run yet (systemctl status checkpoint)", err=True)
        raise SystemExit(1) from None
    except ValueError as exc:
        click.echo(f"status file {path} is not a status snapshot ({exc}): wait a second and retry", err=True)
        raise SystemExit(1) from None
    if as_json:
        click.echo(json.dumps({**snapshot.to_json(), "status_file_age_s": round(age, 3)}, ensure_ascii=False,
                              sort_keys=True))
    else:
        click.echo(format_status(snapshot, age))
    if age > STALE_AFTER_S:
        raise SystemExit(2)
