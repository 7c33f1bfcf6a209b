"""``checkpoint device-key``: create the device's own signing key (first boot does) and show its public half."""

from __future__ import annotations

from pathlib import Path

import click

from edge.cli.common import reports_errors


@click.command("device-key")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("/etc/checkpoint/config.toml"), show_default=True, help="Device config (TOML).")
@click.option("--public-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the public key (PEM) here, for 'checkpoint server enroll --public-key'.")
@reports_errors
def device_key(config_path: Path, public_out: Path | None) -> None:
    """Create the device key at keys.device_key if it is missing (never overwrite it); print its public key.

    Works offline: the key is made on the device and never leaves it; the daemon enrolls it with the
    provisioning token when the server is reachable.
    """
    from edge.config import load_config
    from sync.wire.keyfiles import load_or_create_ed25519, public_pem, save_public_key

    config = load_config(config_path)
    path = config.resolve(config.keys.device_key)
    existed = path.exists()
    key = load_or_create_ed25519(path)
    if public_out is not None:
        save_public_key(public_out, key.public_key())
    click.echo(f"device {config.device.id}: key {'kept' if existed else 'created'} at {path}", err=True)
    click.echo(public_pem(key.public_key()).decode("ascii"), nl=False)
