"""``checkpoint config check FILE``: validate a device config before it goes onto a card."""

from __future__ import annotations

from pathlib import Path

import click

from edge.cli.common import reports_errors


@click.group("config")
def config_group() -> None:
    """Check device configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@reports_errors
def check(file: Path) -> None:
    """Validate FILE: every unknown key is named (with the nearest known one), every bad value explained.

    Exit 0 and a one-line summary when it is valid, 1 with the list of problems otherwise.
    """
    from edge.config import load_config

    config = load_config(file)
    server = config.sync.server_url or "none (stand-alone)"
    click.echo(f"{file}: ok: device {config.device.id}, camera {config.camera.source}, lamps "
               f"{config.light.backend}, server {server}, data in {config.device.data_dir}")
