"""``checkpoint sync``: sync the device's scan log and lists with the central server."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from edge.cli.common import reports_errors

log = logging.getLogger(__name__)


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="Device config (TOML).")
@click.option("--once", is_flag=True, help="Sync until nothing is left to send (with retries), then exit.")
@click.option("--enroll-token", envvar="CHECKPOINT_ENROLL_TOKEN", default=None,
              help="Enroll this device's key first, with its one-time token from the provisioning bundle.")
@click.option("--deadline", default=600.0, show_default=True, help="--once: give up after this many seconds.")
@reports_errors
def sync(config_path: Path, once: bool, enroll_token: str | None, deadline: float) -> None:
    """Push unsent scan records and fetch risk list, trust list, policy and server time."""
    from edge.config import load_config
    from edge.device.appliance import build_sync_only
    from edge.device.sync_client import SyncError

    config = load_config(config_path)
    if not config.sync.server_url:
        raise click.ClickException("sync.server_url is empty: this device is configured stand-alone")
    client = build_sync_only(config)
    try:
        if enroll_token:
            client.enroll(enroll_token)
        if once:
            result = client.sync_until_done(deadline_s=deadline)
            click.echo(f"synced: pushed={result.pushed} acked_seq={result.acked_seq} installed={result.installed}")
            return
    except SyncError as exc:
        raise click.ClickException(f"sync failed: {exc}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    client.start()
    stop.wait()
    client.stop()
