"""``checkpoint server``: run the central server, or enroll a device key as an administrator."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)


@click.group(invoke_without_command=True)
@click.option("--db", "db_url", default=None,
              help="sqlite:///path or postgresql://... (default: DATA_DIR/server.sqlite)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("server-data"), show_default=True,
              help="Keys (created on first run), published/{trust,policy}.cpenv and risk/.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--enroll-token", envvar="CHECKPOINT_ENROLL_TOKEN", default=None,
              help="Provisioning token devices may enroll with (env CHECKPOINT_ENROLL_TOKEN); none = admin only.")
@click.pass_context
def server(ctx: click.Context, db_url: str | None, data_dir: Path, host: str, port: int,
           enroll_token: str | None) -> None:
    """Run the central server (ingest, downloads, fleet dashboard at /)."""
    from sync.server.settings import ServerSettings
    settings = ServerSettings.from_data_dir(data_dir, db_url=db_url, enroll_token=enroll_token)
    ctx.obj = settings
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from sync.server.app import create_app
    click.echo(f"checkpoint server on http://{host}:{port}/ db={settings.db_url.split('?')[0]} "
               f"device key to provision: {data_dir / 'keys/server_x25519.pub.pem'}", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)


@server.command("enroll")
@click.option("--device-id", required=True)
@click.option("--public-key", "key_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="The device's Ed25519 public key (PEM).")
@click.option("--replace", is_flag=True, help="Replace a different key already enrolled (re-provisioned device).")
@click.pass_obj
def enroll(settings, device_id: str, key_path: Path, replace: bool) -> None:
    """Enroll a device's public key directly in the server database (administrator path)."""
    from sync.server.storage import open_storage
    from sync.wire.keyfiles import load_ed25519_public
    raw = load_ed25519_public(key_path).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    storage = open_storage(settings.db_url)
    try:
        if not storage.enroll(device_id, raw, replace=replace):
            raise click.ClickException(f"device {device_id} has another key enrolled; use --replace if intended")
    finally:
        storage.close()
    click.echo(f"enrolled {device_id}")
