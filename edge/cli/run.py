"""``checkpoint run --config FILE``: build the daemon from the config and run it until stopped."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from edge.cli.common import reports_errors

log = logging.getLogger(__name__)

#: Under systemd a start-up fault stays on the lamps this long before the process exits (and is
#: restarted): shorter than the unit's TimeoutStartSec, long enough for staff to see the pattern.
SERVICE_FAULT_HOLD_S = 60.0


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("/etc/checkpoint/config.toml"), show_default=True, help="Device config (TOML).")
@click.option("--fault-hold", type=click.FloatRange(min=0), default=None,
              help=f"On a start-up failure keep the fault on the lamps this many seconds before exiting "
                   f"(default {SERVICE_FAULT_HOLD_S:g} under systemd, 0 by hand).")
@reports_errors
def run(config_path: Path, fault_hold: float | None) -> None:
    """Run the checkpoint daemon (systemd Type=notify; exits non-zero when the camera is gone for good).

    Every start-up failure is one line saying what to do, and shows on the lamps where they work.
    """
    from edge.config import load_config
    from edge.device.startup import open_light, start_appliance

    config = load_config(config_path)
    hold = fault_hold if fault_hold is not None else (SERVICE_FAULT_HOLD_S if os.environ.get("NOTIFY_SOCKET") else 0.0)
    light = open_light(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    appliance = start_appliance(config, light=light, hold_s=hold, stop=stop)
    daemon = appliance.daemon
    daemon.install_signal_handlers()
    # the staff screen is its own process (checkpoint screen): it must outlive a hung daemon
    try:
        code = appliance.run()
    finally:
        appliance.close()
    sys.exit(code)
