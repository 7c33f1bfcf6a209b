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
    # the staff screen is its own process (checkpoint screen): it must outlive a hung daemon
    try:
        code = appliance.run()
    finally:
        appliance.close()
    sys.exit(code)
