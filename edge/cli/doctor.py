"""``checkpoint doctor``: check camera, lamps, clock, lists, disk, keys, enrollment and server once."""

from __future__ import annotations

from pathlib import Path

import click

from edge.cli.common import reports_errors


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("/etc/checkpoint/config.toml"), show_default=True, help="Device config (TOML).")
@click.option("--only", "only", multiple=True, help="Run only this check (repeatable): camera, lamps, clock, "
                                                     "lists, disk, keys, enrollment, server.")
@reports_errors
def doctor(config_path: Path, only: tuple[str, ...]) -> None:
    """A pass/fail table of the whole device with what to do for each failure; exit 1 when one failed.

    While the daemon runs it holds the camera and the lamps: those two checks then read its status.
    """
    from edge.config import load_config
    from edge.device.doctor import CHECKS, format_table, run_checks

    unknown = sorted(set(only) - set(CHECKS))
    if unknown:
        raise click.BadParameter(f"unknown check {', '.join(unknown)}: use {', '.join(CHECKS)}", param_hint="--only")
    config = load_config(config_path)
    results = run_checks(config, list(only) or None)
    click.echo(format_table(results))
    if any(r.failed for r in results):
        raise SystemExit(1)
