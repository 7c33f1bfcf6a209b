"""``checkpoint run --config FILE``: build the daemon from the config and run it until stopped."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from edge.cli.common import reports_errors

log = logging.getLogger(__name__)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("/etc/checkpoint/config.toml"), show_default=True, help="Device config (TOML).")
@reports_errors
def run(config_path: Path) -> None:
    """Run the checkpoint daemon (systemd Type=notify; exits non-zero when the camera is gone for good)."""
    from edge.config import load_config

    config = load_config(config_path)
    from edge.device.appliance import build_appliance

    appliance = build_appliance(config)
    daemon = appliance.daemon
    daemon.install_signal_handlers()
    screen = None
    if config.status.staff_screen_port:
        from edge.device.staff_screen import StaffScreen

        screen = StaffScreen(daemon.snapshot, port=config.status.staff_screen_port,
                             language=config.status.language)
        try:
            screen.start()
        except OSError as exc:
            log.error("event=staff_screen_failed port=%d error=%r action=check the port; scanning goes on",
                      config.status.staff_screen_port, exc)
            screen = None
    try:
        code = appliance.run()
    finally:
        if screen is not None:
            screen.stop()
        appliance.close()
    sys.exit(code)
