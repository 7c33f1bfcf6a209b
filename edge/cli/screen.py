"""``checkpoint screen --config FILE``: serve the staff screen page for a kiosk browser.

Its own process (and systemd unit) on purpose: it reads the status file the daemon writes, so a
crashed, hung or stopped daemon turns the screen grey instead of freezing it on the last verdict.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from edge.cli.common import reports_errors

log = logging.getLogger(__name__)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("/etc/checkpoint/config.toml"), show_default=True, help="Device config (TOML).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port on 127.0.0.1 (default status.staff_screen_port, else 8088).")
@reports_errors
def screen(config_path: Path, port: int | None) -> None:
    """Serve the full-screen staff page on loopback until SIGTERM."""
    from edge.config import load_config
    from edge.device.staff_screen import ScreenSettings, StaffScreen
    from edge.device.status import StatusFile

    config = load_config(config_path)
    port = port if port is not None else (config.status.staff_screen_port or 8088)
    server = StaffScreen(StatusFile(config.resolve(config.status.path)), ScreenSettings.from_config(config),
                         port=port)
    server.start()
    click.echo(f"staff screen on {server.url} (status file {config.resolve(config.status.path)})", err=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop()
    log.info("event=staff_screen_stopped")
