"""``checkpoint release publish``: sign a payload's wheels as the next software release for the devices."""

from __future__ import annotations

from pathlib import Path

import click

from edge.cli.common import reports_errors


@click.group()
def release() -> None:
    """Publish software releases (the devices stage, install and health-check them themselves)."""


@release.command("publish")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The central server's data dir (its publisher key signs the release).")
@click.option("--payload", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="A payload from firmware_config/build-payload.sh (its target and wheels).")
@reports_errors
def publish(data_dir: Path, payload: Path) -> None:
    """Publish PAYLOAD's wheels as the next release for its OS target."""
    from sync.server.publish.software import publish_release
    from sync.server.settings import ServerSettings

    settings = ServerSettings.from_data_dir(data_dir)
    assert settings.publisher_key is not None
    target = (payload / "target").read_text(encoding="utf-8").strip()
    wheels = sorted((payload / "wheels").glob("*.whl"))
    own = [w for w in wheels if w.name.startswith("checkpoint_appliance-")]
    if len(own) != 1:
        raise click.ClickException(f"{payload}/wheels must hold exactly one checkpoint_appliance wheel")
    version = own[0].name.split("-")[1]
    sequence = publish_release(data_dir, settings.publisher_key, wheels, target=target, version=version,
                               requirement=f"checkpoint-appliance=={version}")
    click.echo(f"published release {version} for {target} as sequence {sequence} ({len(wheels)} wheels)")
