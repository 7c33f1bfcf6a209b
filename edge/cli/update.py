"""``checkpoint update apply``: install the staged release beside the running one (as root, by systemd)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import click

from edge.cli.common import reports_errors


def _daemon_healthy(config, started: float, timeout_s: float) -> bool:
    """The restarted daemon wrote a running status after ``started`` and keeps it fresh."""
    from edge.device.status import StatusFile

    status = StatusFile(config.resolve(config.status.path))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if status.path.stat().st_mtime > started + 5 and status.read().state == "running" \
                    and status.age_s() < 10:
                return True
        except (OSError, ValueError):
            pass
        time.sleep(2)
    return False


@click.group()
def update() -> None:
    """Software updates of this device."""


@update.command("apply")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("/etc/checkpoint/config.toml"), show_default=True, help="Device config (TOML).")
@click.option("--prefix", type=click.Path(file_okay=False, path_type=Path), default=Path("/opt/checkpoint"),
              show_default=True, help="Where releases are installed (PREFIX/releases/N, PREFIX/current).")
@click.option("--health-timeout", default=120.0, show_default=True, help="Seconds the new daemon has to run.")
@reports_errors
def apply(config_path: Path, prefix: Path, health_timeout: float) -> None:
    """Install the staged release, switch to it after a health check, switch back if the daemon fails."""
    from edge.config import load_config
    from edge.device.updates import Installer
    from sync.wire.keyfiles import load_ed25519_public

    config = load_config(config_path)
    installer = Installer(
        prefix=prefix, staging=config.resolve(config.update.staging), config_path=config_path,
        publisher_keys=[load_ed25519_public(config.resolve(config.keys.publisher_public_key))],
        restart=lambda: subprocess.run(["systemctl", "restart", "checkpoint.service"], check=False),
        healthy=lambda started: _daemon_healthy(config, started, health_timeout))
    outcome = installer.apply()
    click.echo(outcome)
    if outcome in ("refused", "rolled_back"):
        raise SystemExit(1)
